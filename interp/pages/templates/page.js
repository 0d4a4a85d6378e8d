/* The page's own script (no library): sortable tables, table text filters, gallery filters. */
(function () {
  "use strict";

  function sortKey(td, numeric) {
    if (!numeric) { return td.textContent.trim().toLowerCase(); }
    var v = td.getAttribute("data-value");
    var x = v === null ? NaN : parseFloat(v);
    return isNaN(x) ? -Infinity : x;  /* a missing or unreadable value sorts below every number */
  }

  function sortTable(table, index, th) {
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var numeric = rows.some(function (r) { return r.cells[index].hasAttribute("data-value"); });
    rows.sort(function (a, b) {
      var x = sortKey(a.cells[index], numeric), y = sortKey(b.cells[index], numeric);
      var c = x < y ? -1 : (x > y ? 1 : 0);
      return ascending ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }

  document.querySelectorAll("table.sortable").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      th.tabIndex = 0;
      th.title = "sort by " + th.textContent;
      th.addEventListener("click", function () { sortTable(table, i, th); });
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") { sortTable(table, i, th); } });
    });
  });

  document.querySelectorAll("input.table-filter").forEach(function (input) {
    var table = document.getElementById(input.getAttribute("data-for"));
    input.addEventListener("input", function () {
      var q = input.value.trim().toLowerCase();
      Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
        r.hidden = q !== "" && r.textContent.toLowerCase().indexOf(q) < 0;
      });
    });
  });

  document.querySelectorAll("figure.gallery").forEach(function (gallery) {
    var selects = gallery.querySelectorAll("select[data-key]");
    var cards = gallery.querySelectorAll(".card");
    var count = gallery.querySelector(".gallery-count");
    function apply() {
      var shown = 0;
      cards.forEach(function (card) {
        var keep = Array.prototype.every.call(selects, function (s) {
          return s.value === "" || card.getAttribute("data-" + s.getAttribute("data-key")) === s.value;
        });
        card.hidden = !keep;
        shown += keep ? 1 : 0;
      });
      count.textContent = shown + " of " + cards.length + " shown";
    }
    selects.forEach(function (s) { s.addEventListener("change", apply); });
    apply();
  });
}());
