// console.js: the admin console's only script of our own. No framework, no eval
// and no inline code, so it runs under the console's Content-Security-Policy
// (script-src 'self'). Every listener sits on document (events bubble up to it),
// so it works for content that htmx swaps in later, and it may be loaded with
// <script src="/static/console.js" defer> anywhere in the page.
(function () {
  "use strict";

  // (a) <button type="button" class="copy" data-copy-target="ID">Copy</button>
  // copies the text (or an input's value) of the element with id ID, then says
  // "Copied" for 2 s. navigator.clipboard exists only in secure contexts (https
  // or localhost); elsewhere the text is selected and copied the old way, or
  // left selected for Ctrl+C if the browser refuses.
  function say(button, label) {
    if (!button.dataset.label) button.dataset.label = button.textContent;
    button.textContent = label;
    clearTimeout(button.copyTimer);
    button.copyTimer = setTimeout(function () {
      button.textContent = button.dataset.label;
    }, 2000);
  }

  function selectAndCopy(button, el) {
    if (typeof el.select === "function") {
      el.select();
    } else {
      var range = document.createRange();
      range.selectNodeContents(el);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
    }
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    say(button, ok ? "Copied" : "Selected");
  }

  document.addEventListener("click", function (evt) {
    var button = evt.target instanceof Element && evt.target.closest("button.copy[data-copy-target]");
    if (!button) return;
    var el = document.getElementById(button.dataset.copyTarget);
    if (!el) return;
    var text = (typeof el.value === "string" && el.matches("input, textarea") ? el.value : el.textContent).trim();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () { say(button, "Copied"); },
        function () { selectAndCopy(button, el); });
    } else {
      selectAndCopy(button, el);
    }
  });

  // (b) Every htmx request carries the CSRF token of <meta name="csrf-token">.
  // Read at each request, so a token replaced by a swap is picked up.
  document.addEventListener("htmx:configRequest", function (evt) {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta && meta.content) evt.detail.headers["X-CSRF-Token"] = meta.content;
  });

  // (c) <ol class="log" data-max-entries="200"> keeps only its newest entries
  // (new ones are swapped in first with hx-swap="afterbegin").
  function trimLogs() {
    document.querySelectorAll("ol.log[data-max-entries]").forEach(function (log) {
      var max = parseInt(log.dataset.maxEntries, 10);
      while (max > 0 && log.children.length > max) log.lastElementChild.remove();
    });
  }
  document.addEventListener("htmx:sseMessage", trimLogs);
  document.addEventListener("htmx:afterSwap", trimLogs);
})();
