// The symbol page's chart: price with SMA20 and the calls, RSI and MACD panes, drawn by
// TradingView's lightweight-charts (static/vendor) from /api/symbol/SYMBOL?STREAM (the page's
// stream: the candles and the calls marked on them are one stream's). Text from the data
// goes into the page with textContent only.
(function () {
  "use strict";
  var box = document.getElementById("chart");
  var status = document.getElementById("chart-status");
  if (!box || !window.LightweightCharts) { return; }
  var LC = window.LightweightCharts;
  var COLORS = { BUY: "#1a7f37", SELL: "#c2410c", HOLD: "#6b7280" };

  function say(text) { if (status) { status.textContent = text; } }

  // An intraday bar's stamp ("2024-04-05T10:00:00+11:00") as the chart's time: seconds at
  // that Sydney wall-clock time read as UTC, since the chart shows its times in UTC.
  function wall(stamp) {
    var m = /([+-])(\d\d):(\d\d)$/.exec(stamp);
    var shift = m ? (m[1] === "-" ? -1 : 1) * (Number(m[2]) * 3600 + Number(m[3]) * 60) : 0;
    return Date.parse(stamp) / 1000 + shift;
  }

  function line(times, values) {
    var out = [];
    for (var i = 0; i < times.length; i++) {
      if (values && values[i] !== null && values[i] !== undefined) {
        out.push({ time: times[i], value: values[i] });
      }
    }
    return out;
  }

  function draw(data) {
    var chart = data.chart || {};
    var bars = chart.bars || [];
    if (!bars.length) {
      say(chart.error ? "Chart data unavailable: " + chart.error : "No bars for this symbol.");
      return;
    }
    var intraday = chart.interval && chart.interval !== "1d";
    var at = intraday ? wall : function (t) { return t; };
    var times = bars.map(function (b) { return at(intraday ? b.time : b.date); });
    var known = new Set(times);
    var ind = chart.indicators || {};
    var c = LC.createChart(box, {
      autoSize: true,
      // The logo would inject an inline <style>, which the page's CSP refuses; the page
      // carries the attribution as a link under the chart instead.
      layout: { background: { color: "#ffffff" }, textColor: "#1d2430", fontSize: 12,
                attributionLogo: false },
      grid: { vertLines: { color: "#f0f2f5" }, horzLines: { color: "#f0f2f5" } },
      timeScale: { borderColor: "#dde2e8", timeVisible: Boolean(intraday) },
      rightPriceScale: { borderColor: "#dde2e8" },
      crosshair: { mode: LC.CrosshairMode.Normal }
    });
    var price = c.addSeries(LC.CandlestickSeries, {
      upColor: "#1a7f37", downColor: "#c2410c", borderVisible: false,
      wickUpColor: "#1a7f37", wickDownColor: "#c2410c"
    }, 0);
    price.setData(bars.map(function (b, i) {
      return { time: times[i], open: b.open, high: b.high, low: b.low, close: b.close };
    }));
    c.addSeries(LC.LineSeries, { color: "#2563eb", lineWidth: 1, title: "SMA20",
      priceLineVisible: false, lastValueVisible: false }, 0).setData(line(times, ind.sma20));
    var marks = (chart.markers || []).filter(function (m) { return known.has(at(m.time)); })
      .map(function (m) {
        return {
          time: at(m.time), color: COLORS[m.action] || COLORS.HOLD,
          position: m.action === "SELL" ? "aboveBar" : (m.action === "BUY" ? "belowBar" : "inBar"),
          shape: m.action === "SELL" ? "arrowDown" : (m.action === "BUY" ? "arrowUp" : "circle"),
          text: m.action === "HOLD" ? "" : m.action
        };
      });
    LC.createSeriesMarkers(price, marks);

    var rsi = c.addSeries(LC.LineSeries, { color: "#7c3aed", lineWidth: 1, title: "RSI14",
      priceLineVisible: false }, 1);
    rsi.setData(line(times, ind.rsi14));
    [30, 70].forEach(function (level) {
      rsi.createPriceLine({ price: level, color: "#9ca3af", lineWidth: 1, lineStyle: 2,
        axisLabelVisible: true, title: "" });
    });
    c.addSeries(LC.HistogramSeries, { color: "#94a3b8", title: "MACD hist",
      priceLineVisible: false, lastValueVisible: false }, 2)
      .setData(line(times, ind.macd_hist).map(function (p) {
        p.color = p.value >= 0 ? "#86efac" : "#fca5a5"; return p;
      }));
    c.addSeries(LC.LineSeries, { color: "#0f766e", lineWidth: 1, title: "MACD",
      priceLineVisible: false }, 2).setData(line(times, ind.macd));
    c.addSeries(LC.LineSeries, { color: "#ea580c", lineWidth: 1, title: "signal",
      priceLineVisible: false }, 2).setData(line(times, ind.macd_signal));
    var panes = c.panes();
    if (panes.length === 3) {
      panes[0].setStretchFactor(3); panes[1].setStretchFactor(1); panes[2].setStretchFactor(1);
    }
    c.timeScale().fitContent();
    box.setAttribute("data-markers", String(marks.length));
    box.setAttribute("data-drawn", String(bars.length));
  }

  fetch(box.getAttribute("data-api"), { headers: { Accept: "application/json" },
                                        credentials: "same-origin" })
    .then(function (r) {
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      return r.json();
    })
    .then(draw)
    .catch(function (e) { say("Chart unavailable: " + e.message); });
})();
