/* Sigma Catalog: progressive enhancements only. Every page works without this file. */
(function () {
  "use strict";

  function announce(button, text) {
    var status = document.getElementById(button.getAttribute("data-status") || "");
    var original = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", original);
    button.textContent = text;
    if (status) { status.textContent = text; }
    window.setTimeout(function () { button.textContent = original; }, 2000);
  }

  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(area);
    return ok;
  }

  // Copy buttons: <button data-copy="element-id" hidden>; shown only when scripts run.
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var target = document.getElementById(button.getAttribute("data-copy"));
      if (!target) { return; }
      // Highlighted blocks: copy the code itself, not the markup's surrounding whitespace.
      var source = target.querySelector("code") || target;
      var text = source.textContent;
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(
          function () { announce(button, "Copied"); },
          function () { announce(button, fallbackCopy(text) ? "Copied" : "Copy failed"); }
        );
      } else {
        announce(button, fallbackCopy(text) ? "Copied" : "Copy failed");
      }
    });
  });

  // Selects that apply at once (sort, page size); their form still has a submit button.
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () {
      if (select.form) { select.form.submit(); }
    });
  });
})();
