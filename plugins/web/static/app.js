// Ampgate web console: live states over server-sent events, theme, small conveniences.
// Plain script, no build step, no inline code (the CSP forbids it). Text from the gateway is only ever
// written with textContent, never as HTML.
(function () {
  "use strict";

  var LIVE_PAGES = { overview: true, chargers: true, enrollment: true, security: true };
  var BADGE_KIND = {
    available: "ok", charging: "active", preparing: "info", suspendedev: "info", suspendedevse: "warn",
    finishing: "info", reserved: "info", faulted: "bad", unavailable: "muted"
  };
  var values = {};
  var quiet = false;  // while a snapshot is applied: no highlight, one flow update at the end

  // -- formatting (the same rules as views.fmt_value / fmt_power on the server) --------------------------
  function fmtNumber(v) {
    if (Number.isInteger(v) && Math.abs(v) < 1e15) { return String(v); }
    return v.toFixed(2).replace(/0+$/, "").replace(/\.$/, "");
  }
  function formatValue(value, unit) {
    if (value === null || value === undefined) { return "\u2014"; }
    if (typeof value === "boolean") { return value ? "on" : "off"; }
    if (typeof value === "number") {
      if (!isFinite(value)) { return "\u2014"; }
      if ((unit === "W" || unit === "Wh") && Math.abs(value) >= 1000) {
        return (value / 1000).toFixed(2) + " k" + unit;
      }
      return unit ? fmtNumber(value) + " " + unit : fmtNumber(value);
    }
    var text = typeof value === "string" ? value : JSON.stringify(value);
    return unit ? text + " " + unit : text;
  }
  function formatPower(w) {
    if (w === null || w === undefined) { return "\u2014"; }
    if (Math.abs(w) >= 1000) { return (w / 1000).toFixed(2) + " kW"; }
    return w.toFixed(0) + " W";
  }
  function relative(date) {
    var s = Math.round((Date.now() - date.getTime()) / 1000);
    if (s < 5) { return "just now"; }
    if (s < 60) { return s + " s ago"; }
    if (s < 3600) { return Math.floor(s / 60) + " min ago"; }
    if (s < 86400) { return Math.floor(s / 3600) + " h ago"; }
    return date.toLocaleDateString();
  }
  function refreshTimes(root) {
    var times = (root || document).querySelectorAll("time[data-relative]");
    for (var i = 0; i < times.length; i++) {
      var d = new Date(times[i].getAttribute("datetime"));
      if (!isNaN(d.getTime())) {
        times[i].title = d.toLocaleString();
        times[i].textContent = relative(d);
      }
    }
  }
  function timeElement(seconds) {
    var t = document.createElement("time");
    var d = new Date(seconds * 1000);
    t.setAttribute("datetime", d.toISOString());
    t.setAttribute("data-relative", "");
    t.title = d.toLocaleString();
    t.textContent = relative(d);
    return t;
  }
  function badge(value) {
    var span = document.createElement("span");
    var key = String(value).toLowerCase().replace(/_/g, "");
    span.className = "badge badge-" + (BADGE_KIND[key] || "neutral");
    span.textContent = formatValue(value, null);
    return span;
  }
  function glow(el) {
    if (quiet) { return; }
    el.classList.remove("flash-update");
    void el.offsetWidth;  // restart the animation
    el.classList.add("flash-update");
  }

  // -- live states -------------------------------------------------------------------------------------
  function byEntity(id) {
    var sel = "[data-entity=\"" + (window.CSS && CSS.escape ? CSS.escape(id) : id) + "\"]";
    return document.querySelectorAll(sel);
  }
  function applyState(id, state) {
    if (state) { values[id] = state; } else { delete values[id]; }
    var els = byEntity(id);
    for (var i = 0; i < els.length; i++) {
      var el = els[i];
      var field = el.getAttribute("data-field");
      if (!state) { el.textContent = "\u2014"; continue; }
      if (field === "value") {
        var unit = state.unit !== null && state.unit !== undefined ? state.unit : (el.getAttribute("data-unit") || null);
        var text = formatValue(state.value, unit);
        if (el.textContent !== text) { el.textContent = text; glow(el); }
      } else if (field === "changed") {
        el.textContent = "";
        el.appendChild(timeElement(state.last_changed));
      } else if (field === "badge") {
        el.textContent = "";
        el.appendChild(badge(state.value));
      }
    }
    if (state && els.length === 0) { addRow(id, state); }
    if (!state) { removeRow(id); }
    if (!quiet) { updateFlow(); }
  }
  function addRow(id, state) {
    var table = document.querySelector("table[data-states] tbody");
    if (!table) { return; }
    var tr = document.createElement("tr");
    tr.setAttribute("data-row", id);
    var td1 = document.createElement("td"); td1.className = "entity";
    var code = document.createElement("code"); code.textContent = id; td1.appendChild(code);
    var td2 = document.createElement("td"); td2.className = "value";
    td2.setAttribute("data-entity", id); td2.setAttribute("data-field", "value");
    td2.textContent = formatValue(state.value, state.unit);
    var td3 = document.createElement("td"); td3.className = "changed";
    td3.setAttribute("data-entity", id); td3.setAttribute("data-field", "changed");
    td3.appendChild(timeElement(state.last_changed));
    tr.appendChild(td1); tr.appendChild(td2); tr.appendChild(td3);
    var rows = table.querySelectorAll("tr[data-row]");
    var before = null;
    for (var i = 0; i < rows.length; i++) {
      if (rows[i].getAttribute("data-row") > id) { before = rows[i]; break; }
    }
    table.insertBefore(tr, before);
    applyFilter();
    updateCount();
  }
  function removeRow(id) {
    var rows = document.querySelectorAll("tr[data-row]");
    for (var i = 0; i < rows.length; i++) {
      if (rows[i].getAttribute("data-row") === id) { rows[i].parentNode.removeChild(rows[i]); }
    }
    updateCount();
  }
  function updateCount() {
    var count = document.querySelector("[data-count]");
    if (count) { count.textContent = String(document.querySelectorAll("table[data-states] tr[data-row]").length); }
  }
  function num(id) {
    var s = values[id];
    if (!s || typeof s.value !== "number" || !isFinite(s.value)) { return null; }
    return s.value;
  }
  function sum(ids) {
    var total = null;
    for (var i = 0; i < ids.length; i++) {
      var v = num(ids[i]);
      if (v !== null) { total = (total || 0) + v; }
    }
    return total;
  }
  function list(text) { return text ? text.split(",").filter(Boolean) : []; }
  function updateFlow() {
    var flow = document.querySelector("[data-flow-grid]");
    if (!flow) { return; }
    var grid = num(flow.getAttribute("data-flow-grid"));
    var pv = sum(list(flow.getAttribute("data-flow-pv")));
    var chargers = sum(list(flow.getAttribute("data-flow-chargers")));
    var home = grid === null ? null : grid + (pv || 0) - (chargers || 0);
    var out = { grid: grid, pv: pv, chargers: chargers, home: home };
    for (var key in out) {
      var el = flow.querySelector("[data-flow=\"" + key + "\"]");
      if (el) {
        var text = formatPower(out[key]);
        if (el.textContent !== text) { el.textContent = text; glow(el); }
      }
    }
    var note = flow.querySelector("[data-flow-note=\"grid\"]");
    if (note) {
      note.textContent = grid === null ? "no meter" : (grid > 0 ? "importing" : (grid < 0 ? "exporting" : "balanced"));
    }
  }
  function setLive(state, text) {
    var live = document.querySelector("[data-live]");
    if (!live) { return; }
    live.classList.remove("on", "off");
    if (state) { live.classList.add(state); }
    live.querySelector(".live-text").textContent = text;
  }
  function connect() {
    var page = document.body.getAttribute("data-page");
    if (!LIVE_PAGES[page] || !window.EventSource) { setLive(null, "static"); return; }
    var source = new EventSource("/api/stream");
    source.addEventListener("open", function () { setLive("on", "live"); });
    source.addEventListener("error", function () { setLive("off", "reconnecting\u2026"); });
    source.addEventListener("snapshot", function (ev) {
      var states = JSON.parse(ev.data);
      quiet = true;
      try {
        for (var i = 0; i < states.length; i++) { applyState(states[i].entity_id, states[i]); }
      } finally {
        quiet = false;
      }
      updateFlow();
      setLive("on", "live");
    });
    source.addEventListener("state", function (ev) {
      var msg = JSON.parse(ev.data);
      applyState(msg.entity_id, msg.state);
    });
    source.addEventListener("enrollment", function () {
      var note = document.querySelector("[data-enrollment-changed]");
      if (note) { note.hidden = false; }
    });
    source.addEventListener("expired", function () {
      source.close();
      window.location.href = "/login?expired=1";
    });
  }

  // -- small conveniences ---------------------------------------------------------------------------------
  function applyFilter() {
    var input = document.querySelector("[data-filter]");
    if (!input) { return; }
    var q = input.value.trim().toLowerCase();
    var rows = document.querySelectorAll("table[data-states] tr[data-row]");
    for (var i = 0; i < rows.length; i++) {
      rows[i].hidden = q !== "" && rows[i].getAttribute("data-row").indexOf(q) < 0;
    }
  }
  function strength(pw) {
    var classes = 0;
    if (/[a-z]/.test(pw)) { classes++; }
    if (/[A-Z]/.test(pw)) { classes++; }
    if (/[0-9]/.test(pw)) { classes++; }
    if (/[^A-Za-z0-9]/.test(pw)) { classes++; }
    if (pw.length < 8) { return 1; }
    return Math.min(4, Math.max(1, classes - (pw.length < 12 ? 1 : 0)));
  }
  function toggleTheme() {
    var root = document.documentElement;
    var current = root.getAttribute("data-theme");
    if (!current) { current = window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light"; }
    var next = current === "dark" ? "light" : "dark";
    root.setAttribute("data-theme", next);
    try { window.localStorage.setItem("ampgate-theme", next); } catch (e) { /* not kept */ }
  }

  document.addEventListener("DOMContentLoaded", function () {
    refreshTimes();
    window.setInterval(refreshTimes, 30000);
    connect();
    var toggles = document.querySelectorAll("[data-theme-toggle]");
    for (var i = 0; i < toggles.length; i++) { toggles[i].addEventListener("click", toggleTheme); }
    var filter = document.querySelector("[data-filter]");
    if (filter) { filter.addEventListener("input", applyFilter); }
    document.addEventListener("submit", function (ev) {
      var button = ev.submitter;
      var question = button && button.getAttribute("data-confirm");
      if (question && !window.confirm(question)) { ev.preventDefault(); }
    });
    var copies = document.querySelectorAll("[data-copy]");
    for (var j = 0; j < copies.length; j++) {
      copies[j].addEventListener("click", function (ev) {
        var code = ev.target.parentNode.querySelector("[data-copy-source]");
        if (code && navigator.clipboard) {
          navigator.clipboard.writeText(code.textContent).then(function () { ev.target.textContent = "Copied"; });
        }
      });
    }
    var pw = document.querySelector("[data-strength]");
    var meter = document.querySelector("[data-strength-meter]");
    if (pw && meter) {
      pw.addEventListener("input", function () {
        meter.hidden = pw.value === "";
        meter.className = "meter s" + strength(pw.value);
      });
    }
  });
})();
