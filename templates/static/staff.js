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
      if (form.elements.clinician) form.elements.clinician.value = d.clinician;
      for (const other of document.querySelectorAll("a.free-time[aria-current]")) other.removeAttribute("aria-current");
      link.setAttribute("aria-current", "true");
      if (chosen) chosen.textContent = `Chosen: ${d.date} ${d.time}, ${d.resourceName}.`;
      const next = form.elements.name.value ? form.querySelector("button[type=submit]") : form.elements.name;
      next.focus();
    });
  }
}

// Move a booked visit on the day calendar: drag it, or focus it and press m, then arrows and
// Enter. The move goes through the same form handler as the visit page's Move form; a refused
// move is explained beside the visit and nothing changes.
function setUpMove(calendar, remember) {
  if (calendar.dataset.view !== "day") return;
  const body = calendar.querySelector(".cal-body");
  const status = document.getElementById("move-status");
  const csrf = document.querySelector("input[name=csrf_token]");
  if (!body || !csrf) return;
  const rowOf = (el, prefix) => Number((el.className.match(new RegExp(`\\b${prefix}(\\d+)\\b`)) || [])[1]);
  const hours = [...body.querySelectorAll(".hline")].map((el) => {
    const [h, m] = el.dataset.hour.split(":").map(Number);
    return { row: rowOf(el, "rs"), minutes: h * 60 + m };
  });
  const columns = () => [...calendar.querySelectorAll(".colhead[data-resource]")].map((el, i) => ({
    el, index: i + 2, resource: el.dataset.resource, name: el.dataset.column,
  }));
  const timeOf = (row) => {
    let base = hours[0];
    for (const h of hours) if (h.row <= row) base = h;
    const minutes = base.minutes + (row - base.row) * 5;
    return `${String(Math.floor(minutes / 60) % 24).padStart(2, "0")}:${String(minutes % 60).padStart(2, "0")}`;
  };
  const rowHeight = () => body.querySelector(".hline").getBoundingClientRect().height;
  let ghost = null, moving = null;
  const place = (target) => {
    if (!ghost) { ghost = document.createElement("div"); body.appendChild(ghost); }
    ghost.className = `ghost cs${target.column.index} ce${target.column.index + 1} rs${target.row} re${target.row + moving.rows}`;
    ghost.textContent = `${target.column.name} ${timeOf(target.row)}`;
    moving.target = target;
  };
  const clear = () => {
    if (ghost) ghost.remove();
    ghost = null; moving = null;
    document.body.classList.remove("moving");
  };
  const explain = (box, message) => {
    for (const old of body.querySelectorAll(".move-error")) old.remove();
    const note = document.createElement("div");
    const c = rowOf(box, "cs"), r = rowOf(box, "rs");
    note.className = `move-error cs${c} ce${c + 1} rs${r} re${r + 8}`;
    note.setAttribute("role", "alert");
    note.textContent = message;
    body.appendChild(note);
  };
  const start = (box) => {
    moving = { box, id: box.id.replace("appt-", ""), rows: Number(box.dataset.rows) || 1, grab: 0 };
    document.body.classList.add("moving");
    const col = columns().find((c) => c.index === rowOf(box, "cs"));
    place({ column: col, row: rowOf(box, "rs") });
  };
  const submit = async () => {
    const { box, target, id } = moving;
    const form = new FormData();
    form.set("csrf_token", csrf.value);
    form.set("resource", target.column.resource);
    form.set("date", calendar.dataset.date);
    form.set("time", timeOf(target.row));
    form.set("next", "calendar");
    form.set("view", "day");
    clear();
    const response = await fetch(box.dataset.move, {
      method: "POST", body: form, credentials: "same-origin", headers: { Accept: "application/json" },
    });
    const data = await response.json().catch(() => ({}));
    if (response.ok && data.location) {
      remember(id);
      window.location.assign(data.location);
      return;
    }
    const error = data.error || { message: "The move did not go through. Please try again." };
    let fields = error.fields ? Object.values(error.fields).join("; ") : "";
    if (error.message.toLowerCase().includes(fields.toLowerCase())) fields = "";
    explain(box, `Not moved: ${error.message}${fields ? ` (${fields})` : ""}`);
    box.focus();
  };
  const targetAt = (x, y) => {
    const column = columns().find((c) => {
      const r = c.el.getBoundingClientRect();
      return x >= r.left && x < r.right;
    });
    if (!column) return null;
    const top = body.getBoundingClientRect().top;
    const row = Math.max(1, Math.floor((y - top) / rowHeight()) + 1 - moving.grab);
    return { column, row };
  };
  for (const box of body.querySelectorAll("a.appt[data-move]")) {
    box.addEventListener("dragstart", (event) => {
      start(box);
      moving.grab = Math.floor((event.clientY - box.getBoundingClientRect().top) / rowHeight());
      event.dataTransfer.setData("text/plain", moving.id);
      event.dataTransfer.effectAllowed = "move";
    });
    box.addEventListener("dragend", () => { if (moving && !moving.dropped) clear(); });
  }
  body.addEventListener("dragover", (event) => {
    if (!moving) return;
    event.preventDefault();
    const target = targetAt(event.clientX, event.clientY);
    if (target) place(target);
  });
  body.addEventListener("drop", (event) => {
    if (!moving) return;
    event.preventDefault();
    const target = targetAt(event.clientX, event.clientY);
    if (target) place(target);
    moving.dropped = true;
    submit();
  });
  document.addEventListener("keydown", (event) => {
    if (!moving) {
      const box = document.activeElement;
      if (event.key === "m" && box && box.matches && box.matches("a.appt[data-move]")) {
        event.preventDefault();
        event.stopImmediatePropagation();
        start(box);
        status.textContent = `Moving ${box.querySelector(".who").textContent}: ${ghost.textContent}. Arrow keys move, Enter drops, Escape cancels.`;
      }
      return;
    }
    event.stopImmediatePropagation();
    const cols = columns();
    const at = cols.findIndex((c) => c.index === moving.target.column.index);
    const step = Math.max(1, Math.round((Number(moving.box.dataset.step) || 5) / 5));
    const target = { ...moving.target };
    switch (event.key) {
      case "ArrowUp": target.row = Math.max(1, target.row - step); break;
      case "ArrowDown": target.row += step; break;
      case "ArrowLeft": target.column = cols[Math.max(0, at - 1)]; break;
      case "ArrowRight": target.column = cols[Math.min(cols.length - 1, at + 1)]; break;
      case "Enter": event.preventDefault(); submit(); return;
      case "Escape": {
        const box = moving.box;
        clear();
        status.textContent = "Move cancelled.";
        box.focus();
        event.preventDefault();
        return;
      }
      default: return;
    }
    event.preventDefault();
    place(target);
    status.textContent = ghost.textContent;
  }, true);
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
  setUpMove(calendar, remember);
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
