// Job page: poll the job's API and move the progress bar; reload once the job has finished
// (the page then shows the result). Without JavaScript a <meta refresh> reloads the page.
(function () {
  "use strict";
  var box = document.getElementById("job-status");
  if (!box || box.dataset.finished === "1") return;
  var finished = ["succeeded", "failed", "cancelled"];
  function poll() {
    fetch(box.dataset.api, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (job) {
        if (!job) return setTimeout(poll, 5000);
        document.getElementById("job-state").textContent = job.status;
        document.getElementById("job-progress").value = job.percent;
        document.getElementById("job-percent").textContent = job.percent;
        document.getElementById("job-message").textContent = job.message;
        if (finished.indexOf(job.status) >= 0) return window.location.reload();
        setTimeout(poll, 1000);
      })
      .catch(function () { setTimeout(poll, 5000); });
  }
  setTimeout(poll, 1000);
})();
