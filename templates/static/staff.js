// Staff portal: small conveniences only; every page works without this file.
document.addEventListener("DOMContentLoaded", () => {
  // The date picker on the calendar jumps as soon as a date is chosen.
  for (const input of document.querySelectorAll("form.datepick input[type=date]")) {
    input.addEventListener("change", () => { if (input.value) input.form.submit(); });
  }
  // Scroll the calendar so the "now" line is in view.
  const now = document.querySelector(".cal-scroll .nowline");
  if (now) now.scrollIntoView({ block: "center", inline: "nearest" });
});
