// The events page: new events arrive by server-sent events (/events/stream) and are added on
// top of the table. Every cell is set with textContent: nothing from an event becomes markup.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var rows = document.getElementById("event-rows");
  if (!live || !rows || !window.EventSource) { return; }

  function sydney(iso) {
    var t = new Date(iso);
    if (isNaN(t)) { return iso || ""; }
    return t.toLocaleString("sv-SE", { timeZone: "Australia/Sydney", hour12: false })
      .slice(0, 16);
  }

  function what(p) {
    if (!p || typeof p !== "object") { return ""; }
    if (p.action) {
      var made = p.predictor && typeof p.predictor.name === "string" ?
        " · " + p.predictor.name.split(":")[0].split(".").pop() : "";
      var data = typeof p.data_source === "string" ? " · " + p.data_source : "";
      return p.action + " " + Number(p.confidence).toFixed(2) + made + data;
    }
    if (p.forward_return !== undefined) {
      return (p.forward_return * 100).toFixed(1) + "% after " + p.horizon;
    }
    return "";
  }

  function add(e) {
    var empty = rows.querySelector(".empty-row");
    if (empty) { empty.remove(); }
    var tr = document.createElement("tr");
    tr.className = "fresh";
    var p = e.payload || {};
    [String(e.id), sydney(e.created_at), e.type, p.symbol || "", what(p)].forEach(function (text, i) {
      var td = document.createElement("td");
      if (i === 0) { td.className = "num"; }
      td.textContent = text;
      tr.appendChild(td);
    });
    rows.insertBefore(tr, rows.firstChild);
  }

  var source = new EventSource(live.getAttribute("data-stream"));
  source.onopen = function () { live.textContent = "Live: new events appear as they are stored."; };
  source.onerror = function () { live.textContent = "Reconnecting..."; };
  source.onmessage = function (m) {
    try { add(JSON.parse(m.data)); } catch (err) { /* a malformed event is skipped */ }
  };
})();
