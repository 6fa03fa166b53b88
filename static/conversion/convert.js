/* Convert section: progressive enhancement only; the GET form works without this file. */
(function () {
  "use strict";

  function say(button, text) {
    var status = document.getElementById("convert-copy-status");
    var label = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", label);
    button.textContent = text;
    if (status) { status.textContent = text; }
    window.setTimeout(function () { button.textContent = label; }, 2000);
  }

  function legacyCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "convert-offscreen";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(area);
    return ok;
  }

  // Copy buttons are rendered hidden and shown only when this script runs.
  document.querySelectorAll("button[data-convert-copy]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var source = document.getElementById(button.getAttribute("data-convert-copy"));
      if (!source) { return; }
      var text = source.textContent;
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(
          function () { say(button, "Copied"); },
          function () { say(button, legacyCopy(text) ? "Copied" : "Copy failed"); }
        );
      } else {
        say(button, legacyCopy(text) ? "Copied" : "Copy failed");
      }
    });
  });

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
