// Zone editor: danger-zone polygons drawn over the camera's latest snapshot with SVG.
// Coordinates are kept normalised (0..1, origin top-left) as the edge expects; the SVG uses the image's
// own pixel size as its viewBox so shapes scale uniformly with the picture.
"use strict";

(function () {
  var config = window.SiteSentry.config("zone-config");
  var T = config.text;
  var svg = document.getElementById("editor-svg");
  var img = document.getElementById("editor-img");
  var list = document.getElementById("zone-list");
  var empty = document.getElementById("zone-empty");
  var help = document.getElementById("editor-help");
  var replyBox = document.getElementById("zone-reply");
  var NS = "http://www.w3.org/2000/svg";
  var ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

  var zones = (config.zones || []).map(function (z) {
    return { id: z.id, name: z.name || "", polygon: z.polygon.map(function (p) { return [p[0], p[1]]; }) };
  });
  var selected = zones.length ? 0 : -1;
  var drawing = null;   // vertices of the zone being drawn
  var hover = null;     // pointer position while drawing
  var drag = null;      // {zone, vertex}
  var W = 1600, H = 900;
  var helpText = help ? help.textContent : "";

  function size() {
    if (img && img.naturalWidth) { W = img.naturalWidth; H = img.naturalHeight; }
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    render();
  }
  // Handle radius in image pixels, so corners stay finger-sized whatever the zoom.
  function radius() { return Math.max(5, 8 * W / Math.max(1, svg.clientWidth)); }

  function point(event) {
    var rect = svg.getBoundingClientRect();
    var x = (event.clientX - rect.left) / rect.width;
    var y = (event.clientY - rect.top) / rect.height;
    return [Math.min(1, Math.max(0, round(x))), Math.min(1, Math.max(0, round(y)))];
  }
  function round(v) { return Math.round(v * 10000) / 10000; }
  function px(p) { return (p[0] * W) + "," + (p[1] * H); }
  function el(name, attrs) {
    var node = document.createElementNS(NS, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    return node;
  }

  function render() {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var r = radius();
    zones.forEach(function (zone, zi) {
      var poly = el("polygon", { points: zone.polygon.map(px).join(" "), "data-zone": zone.id });
      if (zi === selected) poly.setAttribute("class", "selected");
      poly.addEventListener("pointerdown", function (e) {
        if (drawing) return;
        e.stopPropagation();
        selected = zi;
        render();
        renderList();
      });
      svg.appendChild(poly);
      var c = centroid(zone.polygon);
      var label = el("text", { x: c[0] * W, y: c[1] * H, "text-anchor": "middle", "font-size": r * 2.2 });
      label.textContent = zone.name || zone.id;
      svg.appendChild(label);
    });
    if (selected >= 0 && zones[selected] && config.editable && !drawing) {
      var zone = zones[selected];
      zone.polygon.forEach(function (p, vi) {
        // A small dot half-way along each edge: dragging it inserts a corner there.
        var q = zone.polygon[(vi + 1) % zone.polygon.length];
        var mid = el("circle", { cx: (p[0] + q[0]) / 2 * W, cy: (p[1] + q[1]) / 2 * H, r: r * 0.6, opacity: 0.7 });
        mid.addEventListener("pointerdown", function (e) {
          e.stopPropagation();
          zone.polygon.splice(vi + 1, 0, [(p[0] + q[0]) / 2, (p[1] + q[1]) / 2]);
          drag = { zone: selected, vertex: vi + 1 };
          changed();
        });
        svg.appendChild(mid);
      });
      zone.polygon.forEach(function (p, vi) {
        var handle = el("circle", { cx: p[0] * W, cy: p[1] * H, r: r, "data-vertex": vi });
        handle.addEventListener("pointerdown", function (e) {
          e.stopPropagation();
          drag = { zone: selected, vertex: vi };
        });
        handle.addEventListener("dblclick", function (e) {
          e.stopPropagation();
          if (zone.polygon.length > 3) { zone.polygon.splice(vi, 1); changed(); }
        });
        svg.appendChild(handle);
      });
    }
    if (drawing) {
      var pts = drawing.concat(hover ? [hover] : []);
      svg.appendChild(el("polyline", { points: pts.map(px).join(" ") }));
      drawing.forEach(function (p, vi) {
        var handle = el("circle", { cx: p[0] * W, cy: p[1] * H, r: vi === 0 ? r * 1.3 : r * 0.8 });
        if (vi === 0) {
          handle.addEventListener("pointerdown", function (e) { e.stopPropagation(); finish(); });
        }
        svg.appendChild(handle);
      });
    }
  }

  function centroid(poly) {
    var x = 0, y = 0;
    poly.forEach(function (p) { x += p[0]; y += p[1]; });
    return [x / poly.length, y / poly.length];
  }

  function renderList() {
    while (list.firstChild) list.removeChild(list.firstChild);
    empty.hidden = zones.length > 0;
    zones.forEach(function (zone, zi) {
      var li = document.createElement("li");
      if (zi === selected) li.className = "selected";
      var id = document.createElement("input");
      id.type = "text"; id.value = zone.id; id.setAttribute("aria-label", T.zone_id); id.placeholder = T.zone_id;
      id.setAttribute("data-testid", "zone-id");
      id.disabled = !config.editable;
      id.addEventListener("input", function () { zone.id = id.value.trim(); changed(true); });
      var name = document.createElement("input");
      name.type = "text"; name.value = zone.name; name.setAttribute("aria-label", T.name); name.placeholder = T.name;
      name.disabled = !config.editable;
      name.addEventListener("input", function () { zone.name = name.value; changed(true); });
      li.addEventListener("click", function () { if (selected !== zi) { selected = zi; render(); renderList(); } });
      li.appendChild(id);
      li.appendChild(name);
      if (config.editable) {
        var del = document.createElement("button");
        del.type = "button"; del.className = "btn small"; del.textContent = T.delete;
        del.setAttribute("data-testid", "zone-delete");
        del.addEventListener("click", function (e) {
          e.stopPropagation();
          if (!window.confirm(T.confirm_delete)) return;
          zones.splice(zi, 1);
          selected = zones.length ? 0 : -1;
          changed();
        });
        li.appendChild(del);
      }
      list.appendChild(li);
    });
  }

  function changed(keepList) {
    render();
    if (!keepList) renderList();
    replyBox.innerHTML = "";
    var p = document.createElement("p");
    p.className = "muted small";
    p.textContent = T.unsaved;
    replyBox.appendChild(p);
  }

  function nextId() {
    for (var n = zones.length + 1; ; n++) {
      var id = "zone-" + n;
      if (!zones.some(function (z) { return z.id === id; })) return id;
    }
  }

  function finish() {
    if (drawing && drawing.length >= 3) {
      zones.push({ id: nextId(), name: "", polygon: drawing });
      selected = zones.length - 1;
    }
    drawing = null; hover = null;
    if (help) help.textContent = helpText;
    changed();
  }

  if (config.editable) {
    document.getElementById("zone-new").addEventListener("click", function () {
      drawing = []; selected = -1;
      if (help) help.textContent = T.drawing;
      render(); renderList();
    });
    svg.addEventListener("pointerdown", function (e) {
      if (!drawing) { selected = -1; render(); renderList(); return; }
      drawing.push(point(e));
      render();
    });
    svg.addEventListener("pointermove", function (e) {
      if (drawing) { hover = point(e); render(); return; }
      if (!drag) return;
      zones[drag.zone].polygon[drag.vertex] = point(e);
      render();
    });
    window.addEventListener("pointerup", function () { if (drag) { drag = null; changed(); } });
    document.addEventListener("keydown", function (e) {
      if (!drawing) return;
      if (e.key === "Enter") finish();
      if (e.key === "Escape") { drawing = null; hover = null; if (help) help.textContent = helpText; render(); }
    });
    document.getElementById("zone-save").addEventListener("click", save);
  }

  function show(kind, title, message) {
    replyBox.innerHTML = "";
    var p = document.createElement("p");
    p.className = "notice " + kind;
    if (kind) p.setAttribute("data-result", kind);
    var strong = document.createElement("strong");
    strong.textContent = title;
    p.appendChild(strong);
    if (message) p.appendChild(document.createTextNode(": " + message));
    replyBox.appendChild(p);
  }

  function save() {
    var ids = zones.map(function (z) { return z.id; });
    var bad = ids.some(function (id, i) { return !ID.test(id) || ids.indexOf(id) !== i; });
    if (bad) { show("error", T.refused, T.bad_id); return; }
    var button = document.getElementById("zone-save");
    button.disabled = true;
    show("", T.sending, "");
    var body = { zones: zones.map(function (z) { return { id: z.id, name: z.name || null, polygon: z.polygon }; }) };
    var controller = new AbortController();
    var timer = setTimeout(function () { controller.abort(); }, (config.timeout_s + 5) * 1000);
    fetch(config.save_url, {
      method: "PUT",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": config.csrf, Accept: "application/json" },
      body: JSON.stringify(body),
      signal: controller.signal
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) { return [response, data]; });
    }).then(function (pair) {
      var response = pair[0], data = pair[1];
      // 200 {status: applied}; errors carry the edge's answer in `detail` (refused, timeout, not_connected).
      var reply = data.detail && typeof data.detail === "object" ? data.detail : data;
      if (response.ok && (reply.status === "applied" || reply.status === "ok")) {
        show("ok", T.applied, reply.message || "");
      } else if (reply.status === "timeout" || reply.status === "not_connected") {
        show("error", T.refused, T.no_reply + (reply.message ? " (" + reply.message + ")" : ""));
      } else {
        show("error", T.refused, reply.message || (typeof data.detail === "string" ? data.detail : String(response.status)));
      }
    }).catch(function () {
      show("error", T.failed, T.no_reply);
    }).finally(function () {
      clearTimeout(timer);
      button.disabled = false;
    });
  }

  if (img && !img.complete) { img.addEventListener("load", size); } else { size(); }
  window.addEventListener("resize", render);
  renderList();
})();
