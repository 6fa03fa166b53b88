/* Convert section: progressive enhancement only; the GET form works without this file. */
(function () {
  "use strict";

  // Copy buttons use the site-wide handler in static/js/site.js (data-copy, data-status).

  // A new target has its own pipelines: drop the old choice (the server picks the target's
  // default) and convert at once. A new pipeline converts at once too.
  document.querySelectorAll("form[data-convert-form]").forEach(function (form) {
    var target = form.querySelector("[data-convert-target]");
    var pipeline = form.querySelector("[data-convert-pipeline]");
    if (target) {
      target.addEventListener("change", function () {
        if (pipeline) { pipeline.disabled = true; }
        form.submit();
      });
    }
    if (pipeline) {
      pipeline.addEventListener("change", function () { form.submit(); });
    }
  });
})();
