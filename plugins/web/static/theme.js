// Applies the chosen theme before the page paints (loaded in <head>; the CSP allows no inline script).
(function () {
  "use strict";
  try {
    var theme = window.localStorage.getItem("ampgate-theme");
    if (theme === "light" || theme === "dark") {
      document.documentElement.setAttribute("data-theme", theme);
    }
  } catch (e) { /* storage blocked: follow the system setting */ }
})();
