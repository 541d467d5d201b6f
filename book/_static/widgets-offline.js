// Glue between the book's local copies of RequireJS, MathJax 3 and the ipywidgets embed manager
// (book/_ext/offline_assets.py fetches them; myst-nb loads this file after require.js and before
// embed-amd.js, on pages whose notebook stored widget state). It also gives the embed manager's
// sliders the accessible names it leaves out.
(function () {
  // The embed manager loads its Font Awesome files relative to the URL of one of its modules;
  // map that module to the local copy, or RequireJS resolves it next to the page.
  var vendor = new URL("vendor/", document.currentScript.src).href;
  window.requirejs.config({
    paths: { "@jupyter-widgets/html-manager/dist": vendor + "html-manager/dist" },
  });
  // The embed manager typesets widget labels through MathJax 2's API (MathJax.Hub.Queue); the
  // book loads MathJax 3. MathJax (a deferred script) has run by DOMContentLoaded, and this
  // listener is registered before the embed manager's, so it is in place before any widget renders.
  document.addEventListener("DOMContentLoaded", function () {
    var mathjax = window.MathJax;
    if (mathjax && mathjax.startup && !mathjax.Hub) {
      mathjax.Hub = {
        Queue: function (command) {
          var element = command[2];
          mathjax.startup.promise.then(function () { return mathjax.typesetPromise([element]); });
        },
      };
    }
  });

  // The embed manager draws a slider's handle as role="slider" with no accessible name (axe:
  // aria-input-field-name) and its editable readout with none either; the visible name, the
  // widget's description, is a separate <label>. Name both by that label (aria-labelledby; the
  // readout, an editable div, as a textbox) as soon as a slider is drawn.
  var next = 0;
  function nameSliders() {
    document.querySelectorAll(".widget-slider").forEach(function (slider) {
      var label = slider.querySelector(":scope > .widget-label");
      if (!label || !label.textContent.trim()) return;
      if (!label.id) label.id = "widget-slider-label-" + next++;
      slider.querySelectorAll('[role="slider"], .widget-readout').forEach(function (control) {
        if (control.hasAttribute("aria-labelledby")) return;
        if (control.isContentEditable && !control.hasAttribute("role")) control.setAttribute("role", "textbox");
        control.setAttribute("aria-labelledby", label.id);
      });
    });
  }
  new MutationObserver(nameSliders).observe(document.documentElement, { childList: true, subtree: true });
})();
