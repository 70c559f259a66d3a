// Parse .ics files with Mozilla's ical.js (what Thunderbird uses) and print what it understood.
// Usage: node tests/icaljs_parse.js FILE... ; prints one JSON array, one entry per file.
// ical.js comes from .cache/node/node_modules (scripts/install-test-tools.sh installs it).
"use strict";

const fs = require("fs");
const path = require("path");
const { pathToFileURL } = require("url");

async function main() {
  const root = process.env.ICALJS_DIR || path.join(__dirname, "..", ".cache", "node", "node_modules", "ical.js");
  const entry = path.join(root, "dist", "ical.js");
  const ICAL = (await import(pathToFileURL(entry).href)).default;
  const out = [];
  for (const file of process.argv.slice(2)) {
    const text = fs.readFileSync(file, "utf8");
    const cal = new ICAL.Component(ICAL.parse(text));
    for (const vtz of cal.getAllSubcomponents("vtimezone")) {
      ICAL.TimezoneService.register(vtz);
    }
    const events = cal.getAllSubcomponents("vevent").map((comp) => {
      const event = new ICAL.Event(comp);
      const dtstart = comp.getFirstProperty("dtstart");
      const alarms = comp.getAllSubcomponents("valarm").map((a) => ({
        action: a.getFirstPropertyValue("action"),
        trigger: String(a.getFirstPropertyValue("trigger")),
      }));
      const attendee = comp.getFirstProperty("attendee");
      const organizer = comp.getFirstProperty("organizer");
      return {
        uid: event.uid,
        sequence: event.sequence,
        start: event.startDate.toJSDate().toISOString(),
        end: event.endDate.toJSDate().toISOString(),
        tzid: dtstart.getParameter("tzid") || null,
        summary: event.summary,
        location: event.location,
        description: event.description,
        status: comp.getFirstPropertyValue("status"),
        attendee: attendee ? String(attendee.getFirstValue()) : null,
        attendee_rsvp: attendee ? attendee.getParameter("rsvp") || null : null,
        organizer: organizer ? String(organizer.getFirstValue()) : null,
        alarms,
      };
    });
    out.push({
      method: cal.getFirstPropertyValue("method"),
      timezones: cal.getAllSubcomponents("vtimezone").map((t) => t.getFirstPropertyValue("tzid")),
      events,
    });
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err) + "\n");
  process.exit(1);
});
