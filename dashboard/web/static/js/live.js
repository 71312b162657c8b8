// Live page: server-sent events bring new alerts (already rendered in the user's language), camera and
// edge changes. A chime plays for new alerts once the user has turned sound on (browsers only allow audio
// after a user gesture, so sound starts off and the button is that gesture).
"use strict";

(function () {
  var config = window.SiteSentry.config("live-config");
  var feed = document.getElementById("feed");
  var empty = document.getElementById("feed-empty");
  var chime = document.getElementById("chime");
  var toggle = document.getElementById("sound-toggle");
  var conn = document.getElementById("conn");
  var STORE = "sitesentry.sound";
  var soundOn = false;

  function setSound(on, persist) {
    soundOn = on;
    toggle.setAttribute("aria-pressed", on ? "true" : "false");
    if (persist) { try { localStorage.setItem(STORE, on ? "on" : "off"); } catch (e) { /* private mode */ } }
  }
  toggle.addEventListener("click", function () {
    setSound(!soundOn, true);
    if (soundOn) {
      // Playing once, muted, inside the click unlocks audio for later alerts.
      chime.muted = true;
      chime.play().then(function () { chime.pause(); chime.currentTime = 0; chime.muted = false; })
        .catch(function () { chime.muted = false; });
    }
  });
  // Remembered "on" still needs a gesture on this page: the first click anywhere arms it.
  try {
    if (localStorage.getItem(STORE) === "on") {
      setSound(true, false);
    }
  } catch (e) { /* ignore */ }

  function ring() {
    if (!soundOn) return;
    chime.currentTime = 0;
    var played = chime.play();
    if (played && played.catch) {
      played.catch(function () { toggle.classList.add("needs-gesture"); });
    }
  }

  function setConn(state) {
    conn.setAttribute("data-state", state);
    var dot = conn.querySelector(".dot");
    var label = conn.querySelector(".conn-label");
    dot.className = "dot " + (state === "live" ? "green pulse" : "amber");
    label.textContent = state === "live" ? label.getAttribute("data-label-live") : label.getAttribute("data-label-lost");
  }

  function onAlert(data) {
    var holder = document.createElement("div");
    holder.innerHTML = data.html;
    var card = holder.firstElementChild;
    if (!card) return;
    var existing = feed.querySelector('[data-event="' + card.getAttribute("data-event") + '"]');
    if (existing) {
      existing.replaceWith(card);
      card.classList.remove("fresh");
    } else {
      feed.insertBefore(card, feed.firstChild);
      if (data.phase === "start" || data.phase === "update") ring();
      var kpi = document.getElementById("kpi-new");
      if (kpi && /^\d+$/.test(kpi.textContent.trim())) kpi.textContent = String(Number(kpi.textContent) + 1);
    }
    if (empty) empty.hidden = true;
    var cards = feed.querySelectorAll(".alert-card");
    for (var i = 50; i < cards.length; i++) cards[i].remove();
  }

  function camera(site, id) {
    return document.querySelector('.cam[data-site="' + site + '"][data-camera="' + id + '"]');
  }

  function onSnapshot(data) {
    var cam = camera(data.site, data.camera);
    if (!cam) return;
    var img = cam.querySelector(".frame img");
    var url = data.url + (data.url.indexOf("?") < 0 ? "?" : "&") + "t=" + Date.now();
    if (img) { img.src = url; } else { window.location.reload(); }
  }

  function onCamera(data) {
    // A state change re-renders the wall from the server, so badges are translated there, not here.
    var cam = camera(data.site, data.camera);
    var badge = cam && cam.querySelector(".state [data-state]");
    if (!cam || !badge || badge.getAttribute("data-state") !== data.state) {
      scheduleReload();
    }
    if (cam && data.fps != null) {
      var fps = cam.querySelector(".fps");
      if (fps) fps.textContent = Number(data.fps).toFixed(1);
    }
  }

  var reloadTimer = null;
  function scheduleReload() {
    // Coalesce bursts (an edge restart changes every camera at once) into one refresh of the wall.
    if (reloadTimer) return;
    reloadTimer = setTimeout(function () {
      fetch(window.location.href, { headers: { Accept: "text/html" }, credentials: "same-origin" })
        .then(function (r) { return r.text(); })
        .then(function (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          ["wall", "flood"].forEach(function (id) {
            var fresh = doc.getElementById(id);
            var old = document.getElementById(id);
            if (fresh && old) old.replaceWith(fresh);
          });
          var edges = doc.querySelector(".edge-list");
          var oldEdges = document.querySelector(".edge-list");
          if (edges && oldEdges) oldEdges.replaceWith(edges);
          refreshAges();
        })
        .finally(function () { reloadTimer = null; });
    }, 500);
  }

  // An edge silent for longer than its stale limit is re-judged by the server at once instead of waiting
  // for the next event. Both figures come from the server (contract.liveness): data-seen is the newest sign
  // of life, data-stale-after the silence it allows; nothing here decides the state itself.
  function refreshAges() {
    var now = Date.now();
    document.querySelectorAll(".edge[data-seen][data-stale-after]").forEach(function (edge) {
      var age = (now - Date.parse(edge.getAttribute("data-seen"))) / 1000;
      var limit = Number(edge.getAttribute("data-stale-after"));
      var badge = edge.querySelector(".badge");
      if (age > limit && badge && badge.getAttribute("data-state") === "online") scheduleReload();
    });
  }
  setInterval(refreshAges, 5000);

  function connect() {
    var source = new EventSource(config.stream);
    source.onopen = function () { setConn("live"); };
    source.onerror = function () { setConn("lost"); };
    source.addEventListener("alert", function (e) { onAlert(JSON.parse(e.data)); });
    source.addEventListener("snapshot", function (e) { onSnapshot(JSON.parse(e.data)); });
    source.addEventListener("camera", function (e) { onCamera(JSON.parse(e.data)); });
    source.addEventListener("heartbeat", function () { scheduleReload(); });
    source.addEventListener("edge", function () { scheduleReload(); });
  }
  connect();
})();
