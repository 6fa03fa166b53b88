/* Workbench: progressive enhancements only; the form posts and renders without this file.
   - line numbers beside the editor (error lines marked) and "line N, column M" links;
   - live updates: the results fragment is fetched (debounced) as you type;
   - the share link: the draft, deflate-raw compressed and base64url encoded, in the URL
     fragment (#draft=...), which browsers never send to the server. */
(function () {
  "use strict";

  var form = document.getElementById("workbench-form");
  var editor = document.getElementById("workbench-rule");
  var results = document.getElementById("workbench-results");
  if (!form || !editor || !results) { return; }
  var status = document.getElementById("workbench-status");
  var DELAY = 600;
  var PREFIX = "#draft=";

  function say(text) { if (status) { status.textContent = text; } }

  // -- line numbers --------------------------------------------------------------------------
  var gutter = document.createElement("div");
  gutter.className = "workbench-gutter";
  gutter.setAttribute("aria-hidden", "true");
  editor.parentNode.insertBefore(gutter, editor);
  var shownLines = 0;

  function errorLines() {
    var lines = {};
    results.querySelectorAll(".workbench-problem[data-line]").forEach(function (item) {
      lines[item.getAttribute("data-line")] = true;
    });
    return lines;
  }

  function renderGutter(force) {
    var count = editor.value.split("\n").length;
    if (count === shownLines && !force) { return; }
    shownLines = count;
    var marked = errorLines();
    var fragment = document.createDocumentFragment();
    for (var i = 1; i <= count; i++) {
      var line = document.createElement("span");
      line.textContent = String(i);
      if (marked[String(i)]) { line.className = "is-error"; }
      fragment.appendChild(line);
      fragment.appendChild(document.createTextNode("\n"));
    }
    gutter.textContent = "";
    gutter.appendChild(fragment);
    gutter.scrollTop = editor.scrollTop;
  }

  editor.addEventListener("scroll", function () { gutter.scrollTop = editor.scrollTop; });

  // "Line 9, column 24" links put the cursor there.
  results.addEventListener("click", function (event) {
    var link = event.target.closest("[data-goto]");
    if (!link) { return; }
    event.preventDefault();
    var parts = link.getAttribute("data-goto").split(":");
    var lines = editor.value.split("\n");
    var line = Math.max(1, Math.min(parseInt(parts[0], 10) || 1, lines.length));
    var offset = 0;
    for (var i = 0; i < line - 1; i++) { offset += lines[i].length + 1; }
    offset += Math.max(0, Math.min((parseInt(parts[1], 10) || 1) - 1, lines[line - 1].length));
    editor.focus();
    editor.setSelectionRange(offset, offset);
    var height = editor.scrollHeight / Math.max(1, lines.length);
    editor.scrollTop = Math.max(0, (line - 5) * height);
  });

  // -- live updates ----------------------------------------------------------------------------
  var timer = null;
  var inflight = null;

  function analyse() {
    if (inflight) { inflight.abort(); }
    inflight = window.AbortController ? new AbortController() : null;
    var data = new FormData(form);
    data.set("live", "1");
    data.delete("action");
    var started = Date.now();
    say("Analysing…");
    fetch(form.getAttribute("data-fragment-url"), {
      method: "POST",
      body: data,
      credentials: "same-origin",
      signal: inflight ? inflight.signal : undefined
    }).then(function (response) {
      return response.text().then(function (html) {
        if (response.status === 429 || response.status === 503) {
          say("Busy: try again in a moment");
          return;
        }
        results.innerHTML = html;
        renderGutter(true);
        say("Updated in " + (Date.now() - started) + " ms");
      });
    }).catch(function (error) {
      if (error && error.name === "AbortError") { return; }
      say("Could not update: press Analyse");
    });
  }

  function schedule() {
    renderGutter(false);
    if (timer) { window.clearTimeout(timer); }
    timer = window.setTimeout(function () {
      analyse();
      keepInFragment();
    }, DELAY);
  }

  editor.addEventListener("input", schedule);
  var events = document.getElementById("workbench-events");
  if (events) { events.addEventListener("input", schedule); }
  form.querySelectorAll("input[type=checkbox], input[type=radio]").forEach(function (input) {
    input.addEventListener("change", schedule);
  });

  // Tab inserts four spaces (YAML forbids tabs); Escape then Tab leaves the editor.
  var hint = form.querySelector("[data-keys-hint]");
  if (hint) { hint.hidden = false; }
  var escaped = false;
  editor.addEventListener("keydown", function (event) {
    if (event.key === "Escape") { escaped = true; return; }
    if (event.key === "Tab" && !event.shiftKey && !escaped) {
      event.preventDefault();
      var start = editor.selectionStart;
      editor.setRangeText("    ", start, editor.selectionEnd, "end");
      schedule();
    }
    escaped = false;
  });

  // -- share link --------------------------------------------------------------------------------
  var canCompress = "CompressionStream" in window && "DecompressionStream" in window;

  function toBase64Url(bytes) {
    var binary = "";
    for (var i = 0; i < bytes.length; i += 0x8000) {
      binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function fromBase64Url(text) {
    var padded = text.replace(/-/g, "+").replace(/_/g, "/");
    while (padded.length % 4) { padded += "="; }
    var binary = atob(padded);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) { bytes[i] = binary.charCodeAt(i); }
    return bytes;
  }

  function transform(bytes, stream) {
    var piped = new Blob([bytes]).stream().pipeThrough(stream);
    return new Response(piped).arrayBuffer().then(function (buffer) {
      return new Uint8Array(buffer);
    });
  }

  function encodeDraft(text) {
    return transform(new TextEncoder().encode(text), new CompressionStream("deflate-raw"))
      .then(toBase64Url);
  }

  function decodeDraft(encoded) {
    return transform(fromBase64Url(encoded), new DecompressionStream("deflate-raw"))
      .then(function (bytes) { return new TextDecoder().decode(bytes); });
  }

  function shareUrl(encoded) {
    return window.location.origin + window.location.pathname + PREFIX + encoded;
  }

  function keepInFragment() {
    if (!canCompress) { return Promise.resolve(null); }
    return encodeDraft(editor.value).then(function (encoded) {
      // The query (?rule=, ?draft=) would reopen the original: the fragment is the draft now.
      window.history.replaceState(null, "", window.location.pathname + PREFIX + encoded);
      return encoded;
    });
  }

  function copy(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    var area = document.createElement("textarea");
    area.value = text;
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } finally { document.body.removeChild(area); }
    return Promise.resolve();
  }

  var share = form.querySelector("[data-share]");
  var note = form.querySelector("[data-share-note]");
  if (share && canCompress) {
    share.hidden = false;
    if (note) { note.hidden = false; }
    share.addEventListener("click", function () {
      keepInFragment().then(function (encoded) {
        var url = shareUrl(encoded);
        return copy(url).then(function () { say("Share link copied"); },
                              function () { say("Share link is in the address bar"); });
      });
    });
  }

  // A share link opens its draft (the fragment wins over the server's starting text).
  if (canCompress && window.location.hash.indexOf(PREFIX) === 0) {
    decodeDraft(window.location.hash.slice(PREFIX.length)).then(function (text) {
      editor.value = text;
      renderGutter(true);
      analyse();
    }, function () {
      say("The share link is damaged: showing the default draft");
    });
  }

  renderGutter(true);
})();
