// Statistics page: Chart.js charts from the JSON the server rendered (labels already translated), and
// heat maps drawn on a canvas over each camera's latest snapshot.
"use strict";

(function () {
  var data = window.SiteSentry.config("stats-config");
  var font = getComputedStyle(document.body).fontFamily;
  Chart.defaults.font.family = font;
  Chart.defaults.color = "#4b5563";
  Chart.defaults.animation = false;  // charts appear at once; a safety screen is not a show

  new Chart(document.getElementById("chart-time"), {
    type: "bar",
    data: { labels: data.labels, datasets: data.datasets },
    options: {
      maintainAspectRatio: false,
      scales: { x: { stacked: true, grid: { display: false } }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } },
      plugins: { legend: { position: "bottom" } }
    }
  });

  function bars(id, labels, values, colours) {
    var canvas = document.getElementById(id);
    if (!canvas) return;
    new Chart(canvas, {
      type: "bar",
      data: { labels: labels, datasets: [{ data: values, backgroundColor: colours || "#1d5fd1", borderRadius: 4 }] },
      options: {
        indexAxis: "y",
        maintainAspectRatio: false,
        scales: { x: { beginAtZero: true, ticks: { precision: 0 } }, y: { grid: { display: false } } },
        plugins: { legend: { display: false } }
      }
    });
  }
  bars("chart-rule", data.by_rule.labels, data.by_rule.data, data.by_rule.colours);
  bars("chart-zone", data.by_zone.labels, data.by_zone.data, "#7c3aed");
  bars("chart-camera", data.by_camera.labels, data.by_camera.data, "#0e7490");

  // Heat map: each cell's count as a translucent blob, blue (few) to red (many), scaled to the busiest cell.
  function heatColour(t) {
    var stops = [[0, [37, 99, 235]], [0.5, [250, 204, 21]], [1, [220, 38, 38]]];
    for (var i = 1; i < stops.length; i++) {
      if (t <= stops[i][0]) {
        var a = stops[i - 1], b = stops[i], f = (t - a[0]) / (b[0] - a[0]);
        return a[1].map(function (v, k) { return Math.round(v + (b[1][k] - v) * f); });
      }
    }
    return stops[stops.length - 1][1];
  }
  document.querySelectorAll(".heat canvas[data-cells]").forEach(function (canvas) {
    var cells = JSON.parse(canvas.getAttribute("data-cells"));
    var rows = cells.length, cols = cells[0].length;
    var w = canvas.width = canvas.clientWidth * (window.devicePixelRatio || 1);
    var h = canvas.height = canvas.clientHeight * (window.devicePixelRatio || 1);
    var ctx = canvas.getContext("2d");
    var max = 0;
    cells.forEach(function (row) { row.forEach(function (n) { if (n > max) max = n; }); });
    if (!max) return;
    var cw = w / cols, ch = h / rows;
    for (var r = 0; r < rows; r++) {
      for (var c = 0; c < cols; c++) {
        var n = cells[r][c];
        if (!n) continue;
        var t = Math.sqrt(n / max);
        var rgb = heatColour(t);
        var x = (c + 0.5) * cw, y = (r + 0.5) * ch, radius = Math.max(cw, ch) * 1.6;
        var g = ctx.createRadialGradient(x, y, 0, x, y, radius);
        g.addColorStop(0, "rgba(" + rgb.join(",") + "," + (0.35 + 0.45 * t) + ")");
        g.addColorStop(1, "rgba(" + rgb.join(",") + ",0)");
        ctx.fillStyle = g;
        ctx.fillRect(x - radius, y - radius, radius * 2, radius * 2);
      }
    }
  });
})();
