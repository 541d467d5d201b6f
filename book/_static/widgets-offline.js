// Glue between the book's local copies of RequireJS, MathJax 3 and the ipywidgets embed manager
// (book/_ext/offline_assets.py fetches them; myst-nb loads this file after require.js and before
// embed-amd.js, on pages whose notebook stored widget state).
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
})();
