// SiteSentry pages: small helpers shared by every page. No framework; works without it where it can.
"use strict";

(function () {
  // The header's site switcher submits itself when a site is picked.
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });

  // On phones the navigation scrolls sideways: bring the current page's tab into view.
  var current = document.querySelector(".nav-row [aria-current=page]");
  if (current && current.scrollIntoView) current.scrollIntoView({ block: "nearest", inline: "center" });

  // The user menu closes when clicking elsewhere or pressing Escape.
  document.addEventListener("click", function (event) {
    document.querySelectorAll("details.user-menu[open]").forEach(function (menu) {
      if (!menu.contains(event.target)) menu.removeAttribute("open");
    });
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") {
      document.querySelectorAll("details.user-menu[open]").forEach(function (m) { m.removeAttribute("open"); });
    }
  });

  window.SiteSentry = window.SiteSentry || {};
  window.SiteSentry.csrf = function () {
    var input = document.querySelector("input[name=csrf_token]");
    return input ? input.value : "";
  };
  // JSON from a <script type="application/json"> block.
  window.SiteSentry.config = function (id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : {};
  };
  // Confirm dangerous form submissions (data-confirm holds the translated question).
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  });
})();
