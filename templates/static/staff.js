// Staff portal: small conveniences only; every page works without this file.
document.addEventListener("DOMContentLoaded", () => {
  // The date picker on the calendar jumps as soon as a date is chosen.
  for (const input of document.querySelectorAll("form.datepick input[type=date]")) {
    input.addEventListener("change", () => { if (input.value) input.form.submit(); });
  }
  const calendar = document.querySelector(".cal-scroll");
  if (!calendar) return;
  // Scroll the calendar so the "now" line is in view.
  const now = calendar.querySelector(".nowline");
  if (now) now.scrollIntoView({ block: "center", inline: "nearest" });
  // The front desk keeps this page open all day: refresh it every minute while it is visible
  // and nobody is typing (not under browser automation, whose steps it would disturb).
  if (navigator.webdriver) return;
  setInterval(() => {
    const busy = document.activeElement && document.activeElement.matches("input, select, textarea");
    if (document.visibilityState === "visible" && !busy) window.location.reload();
  }, 60000);
});
