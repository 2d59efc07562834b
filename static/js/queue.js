// Keyboard for the escalation queue: j/k move between tickets, Enter opens, c claims.
(function () {
  function rows() { return Array.from(document.querySelectorAll("#ticket-table tr.ticket-row")); }
  document.addEventListener("keydown", function (event) {
    if (event.target.closest("input, textarea, select") || event.metaKey || event.ctrlKey || event.altKey) return;
    var all = rows();
    if (!all.length) return;
    var current = document.activeElement && document.activeElement.closest("tr.ticket-row");
    var index = all.indexOf(current);
    if (event.key === "j" || event.key === "k") {
      var next = event.key === "j" ? Math.min(index + 1, all.length - 1) : Math.max(index - 1, 0);
      all[index === -1 ? 0 : next].focus();
      event.preventDefault();
    } else if (event.key === "Enter" && current) {
      window.location = current.dataset.href;
    } else if (event.key === "c" && current) {
      var claim = current.querySelector("button.claim");
      if (claim) { claim.click(); }
    }
  });
  // After an in-place swap, keep the keyboard focus on the row that changed.
  document.body.addEventListener("htmx:afterSwap", function (event) {
    var row = event.detail.target && document.getElementById(event.detail.target.id);
    if (row && row.matches("tr.ticket-row")) row.focus();
  });
})();
