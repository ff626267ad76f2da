/*
 * Small pure helpers shared by the client's modules: ids, character counts,
 * times and days, client ids, the Enter-to-send rule, timers that tests can
 * replace. No DOM, no state.
 */

/* A positive whole number, or 0. */
export function toId(value) {
  const n = Number(value);
  return Number.isInteger(n) && n > 0 ? n : 0;
}

/* Characters as the server counts them (code points, not UTF-16 units). */
export function charCount(text) {
  let n = 0;
  for (const ch of String(text)) if (ch) n += 1;
  return n;
}

export function parseTime(ts) {
  if (typeof ts !== "string" || !ts) return null;
  const t = Date.parse(ts);
  return Number.isNaN(t) ? null : new Date(t);
}

function pad2(n) {
  return n < 10 ? "0" + n : String(n);
}

export function hhmm(d) {
  return pad2(d.getHours()) + ":" + pad2(d.getMinutes());
}

export function fullDate(d) {
  try {
    return d.toLocaleString(undefined, { dateStyle: "full", timeStyle: "short" });
  } catch (err) {
    return d.toString();
  }
}

export function dayKey(d) {
  return d.getFullYear() * 10000 + (d.getMonth() + 1) * 100 + d.getDate();
}

export function dayLabel(d, now = new Date()) {
  if (dayKey(d) === dayKey(now)) return "Today";
  const y = new Date(now.getFullYear(), now.getMonth(), now.getDate() - 1);
  if (dayKey(d) === dayKey(y)) return "Yesterday";
  const opts = { weekday: "long", month: "long", day: "numeric" };
  if (d.getFullYear() !== now.getFullYear()) opts.year = "numeric";
  try {
    return d.toLocaleDateString(undefined, opts);
  } catch (err) {
    return d.toDateString();
  }
}

/* Whether timestamp a is later than b (a changed text is newer than none). */
export function isNewer(a, b) {
  if (!a) return false;
  if (!b) return true;
  const ta = Date.parse(a);
  const tb = Date.parse(b);
  if (Number.isNaN(ta) || Number.isNaN(tb)) return a !== b;
  return ta > tb;
}

/* A maker of client_ids (at most 64 characters, unique per page). */
export function clientIdMaker(crypto = globalThis.crypto, now = () => Date.now()) {
  let seq = 0;
  return function newClientId() {
    seq += 1;
    if (crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
    let rand = "";
    if (crypto && typeof crypto.getRandomValues === "function") {
      const buf = new Uint32Array(3);
      crypto.getRandomValues(buf);
      rand = Array.from(buf, (n) => n.toString(36)).join("");
    } else {
      rand = Math.random().toString(36).slice(2) + Math.random().toString(36).slice(2);
    }
    return ("c" + now().toString(36) + "-" + seq + "-" + rand).slice(0, 64);
  };
}

/* Enter alone sends; Shift+Enter (and an IME composing) makes a new line. */
export function isSendEnter(ev) {
  return (
    ev.key === "Enter" &&
    !ev.shiftKey &&
    !ev.altKey &&
    !ev.ctrlKey &&
    !ev.metaKey &&
    !ev.isComposing &&
    ev.keyCode !== 229
  );
}

/* The page's timers and clock; modules take them as a parameter so that tests can pass fakes. */
export const realTimers = Object.freeze({
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (id) => clearInterval(id),
  now: () => Date.now(),
});
