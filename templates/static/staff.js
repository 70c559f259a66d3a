// Staff portal: small conveniences only; every page works without this file.
"use strict";

const typing = (el) => el && el.matches && el.matches("input, select, textarea, [contenteditable]");

// Keyboard shortcuts for the daily moves, listed on the "?" overlay (a native modal <dialog>:
// it traps focus and closes with Escape; focus goes back where it was).
function setUpShortcuts() {
  const dialog = document.getElementById("shortcuts");
  if (!dialog) return;
  let opener = null;
  const open = () => {
    if (dialog.open) return;
    opener = document.activeElement;
    dialog.showModal();
    dialog.querySelector("[data-close]").focus();
  };
  dialog.addEventListener("close", () => { if (opener && opener.focus) opener.focus(); });
  dialog.querySelector("[data-close]").addEventListener("click", () => dialog.close());
  for (const button of document.querySelectorAll("[data-shortcuts]")) {
    button.hidden = false;
    button.addEventListener("click", open);
  }
  const follow = (selector) => {
    const link = document.querySelector(selector);
    if (link) { window.location.href = link.href; return true; }
    return false;
  };
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || dialog.open || typing(event.target)) return;
    let done = false;
    switch (event.key) {
      case "?": open(); done = true; break;
      case "t": done = follow("a[data-key=today]"); break;
      case "j": case "ArrowRight": done = follow("a[rel=next]"); break;
      case "k": case "ArrowLeft": done = follow("a[rel=prev]"); break;
      case "b": done = follow("a[data-key=book]"); break;
      case "/": {
        const find = document.querySelector("[data-find]");
        if (find) { find.focus(); done = true; }
        break;
      }
    }
    if (done) event.preventDefault();
  });
}

// "Find a visit" on the calendar: highlights the boxes whose patient matches, Enter goes to the first.
function setUpFind(calendar) {
  const find = document.querySelector("[data-find]");
  if (!find) return;
  find.closest("[hidden]")?.removeAttribute("hidden");
  const boxes = [...calendar.querySelectorAll(".appt, .week-visit")];
  const apply = () => {
    const q = find.value.trim().toLowerCase();
    let first = null;
    for (const box of boxes) {
      const hit = q && box.textContent.toLowerCase().includes(q);
      box.classList.toggle("match", Boolean(hit));
      box.classList.toggle("dim", Boolean(q) && !hit);
      if (hit && !first) first = box;
    }
    return first;
  };
  find.addEventListener("input", () => { const first = apply(); if (first) first.scrollIntoView({ block: "center", inline: "nearest" }); });
  find.addEventListener("keydown", (event) => {
    if (event.key === "Enter") { event.preventDefault(); const first = apply(); if (first) first.focus(); }
    if (event.key === "Escape") { find.value = ""; apply(); find.blur(); }
  });
}

// Staff booking: a clicked free time fills in the form in place (keeping what was typed);
// without script the link reloads the page with the same fields filled in.
function setUpFreeTimes() {
  const form = document.getElementById("book");
  if (!form) return;
  const chosen = document.getElementById("chosen");
  for (const link of document.querySelectorAll("a.free-time")) {
    link.addEventListener("click", (event) => {
      event.preventDefault();
      const d = link.dataset;
      form.elements.service.value = d.service;
      form.elements.date.value = d.date;
      form.elements.time.value = d.time;
      form.elements.resource.value = d.resource;
      for (const other of document.querySelectorAll("a.free-time[aria-current]")) other.removeAttribute("aria-current");
      link.setAttribute("aria-current", "true");
      if (chosen) chosen.textContent = `Chosen: ${d.date} ${d.time}, ${d.resourceName}.`;
      const next = form.elements.name.value ? form.querySelector("button[type=submit]") : form.elements.name;
      next.focus();
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  setUpShortcuts();
  setUpFreeTimes();
  // The date picker on the calendar jumps as soon as a date is chosen.
  for (const input of document.querySelectorAll("form.datepick input[type=date]")) {
    input.addEventListener("change", () => { if (input.value) input.form.submit(); });
  }
  const calendar = document.querySelector(".cal-scroll, #week-overview");
  if (!calendar) return;
  setUpFind(calendar);
  // A status change from the calendar comes back to the same place on the page.
  const key = ["chairside-scroll", window.location.pathname, calendar.dataset.view, calendar.dataset.date].join(":");
  // It keeps the visit where it was on the screen (a message above may have pushed it down).
  const remember = (id) => {
    const box = id && document.getElementById("appt-" + id);
    const top = box ? box.getBoundingClientRect().top : null;
    sessionStorage.setItem(key, JSON.stringify({ id, top, x: window.scrollX, y: window.scrollY }));
  };
  for (const form of document.querySelectorAll("form.quick")) {
    form.addEventListener("submit", () => remember(form.dataset.quick));
  }
  const saved = sessionStorage.getItem(key);
  sessionStorage.removeItem(key);
  if (saved) {
    const place = JSON.parse(saved);
    const restore = () => {
      const box = place.id && document.getElementById("appt-" + place.id);
      if (box && place.top !== null) {
        window.scrollTo(place.x, window.scrollY + box.getBoundingClientRect().top - place.top);
      } else {
        window.scrollTo(place.x, place.y);
      }
    };
    restore();
    window.addEventListener("load", restore);  // after the browser's own jump to #appt-…
  } else if (!window.location.hash) {
    // Otherwise scroll so the "now" line is in view.
    const now = calendar.querySelector(".nowline");
    if (now) now.scrollIntoView({ block: "center", inline: "nearest" });
  }
  // The front desk keeps this page open all day: refresh it every minute while it is visible
  // and nobody is typing (not under browser automation, whose steps it would disturb).
  if (navigator.webdriver) return;
  setInterval(() => {
    if (document.visibilityState !== "visible" || typing(document.activeElement)) return;
    if (document.querySelector("dialog[open]")) return;
    remember(null);
    window.location.reload();
  }, 60000);
});
