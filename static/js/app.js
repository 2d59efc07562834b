// Behaviour that would otherwise be inline (the CSP allows no inline script or style):
// bar widths from data-width, selects that submit their form, the approvals' select-all, and
// forms that ask before they submit (data-confirm="the question").
(function () {
  function applyWidths(root) {
    root.querySelectorAll("[data-width]").forEach(function (el) {
      var pct = parseFloat(el.dataset.width);
      if (!isNaN(pct)) el.style.width = Math.max(0, Math.min(100, pct)) + "%";
    });
  }
  document.addEventListener("DOMContentLoaded", function () { applyWidths(document); });
  // htmx swaps (the live run page, the job grid) bring new bars.
  document.addEventListener("htmx:load", function (event) { applyWidths(event.target); });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });

  document.addEventListener("change", function (event) {
    var el = event.target;
    if (el.matches("select[data-autosubmit]") && el.form) el.form.submit();
    if (el.id === "select-all") {
      document.querySelectorAll("input[name=request]:not(:disabled)").forEach(function (box) {
        box.checked = el.checked;
      });
    }
  });
})();
