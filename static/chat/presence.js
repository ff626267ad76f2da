/*
 * Who is online and who is typing.
 *
 * The online list is the server's: every hello and presence frame carries
 * the full sorted list, and the page reconciles from it (join/leave are only
 * informational). Typists are the others whose last typing frame said
 * active; one not heard from for TYPING_TTL_MS (6 s), who goes offline, or
 * whose message arrives, stops typing. Own typing is announced at most every
 * TYPING_SEND_MS while the composer has text, and withdrawn after
 * TYPING_IDLE_MS without a keystroke.
 *
 * The DOM parts draw into the elements given (any may be missing); the rest
 * needs none.
 */

import { appendPerson } from "./render.js";
import { displayName, rememberName, shownAs } from "./store.js";
import { realTimers } from "./util.js";

export const TYPING_TTL_MS = 6000;
export const TYPING_SEND_MS = 3000;
export const TYPING_IDLE_MS = 4000;

/* The line under the log for these people ({name, user}), as text: one, two, or "several". */
export function typingText(people) {
  const shown = people.map(({ name, user }) => {
    const parts = shownAs(name, user);
    return parts.handle ? parts.name + " " + parts.handle : parts.name;
  });
  if (shown.length === 1) return shown[0] + " is typing…";
  if (shown.length === 2) return shown[0] + " and " + shown[1] + " are typing…";
  if (shown.length > 2) return "several people are typing…";
  return "";
}

/*
 * Whether the Online list is unknown: no hello on the current socket yet
 * (connecting, reconnecting) or the room closed to this page. The last list
 * known stays, greyed and captioned, since it is no longer kept up to date.
 */
export function onlineUnknown(store) {
  return !store.ready || store.stopped;
}

/* ui: {online, onlineCount, onlineCaption, typing}, each an element or null. */
export function createPresence({ store, ui = {}, timers = realTimers, doc = globalThis.document }) {
  const typists = new Map(); // username -> {name, timer}

  function el(tag, className, text) {
    const node = doc.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function renderOnline() {
    const unknown = onlineUnknown(store);
    if (ui.onlineCount) ui.onlineCount.textContent = unknown ? "?" : String(store.online.length);
    if (ui.onlineCaption) ui.onlineCaption.hidden = !unknown;
    if (!ui.online) return;
    ui.online.classList.toggle("is-unknown", unknown);
    const frag = doc.createDocumentFragment();
    store.online.forEach((user) => {
      const li = el("li", "chat-online-item");
      li.dataset.username = user;
      if (user === store.me) li.classList.add("is-me");
      const dot = el("span", "chat-online-dot");
      dot.setAttribute("aria-hidden", "true");
      li.appendChild(dot);
      appendPerson(doc, li, displayName(store, user), user, "chat-online-name");
      frag.appendChild(li);
    });
    ui.online.textContent = "";
    ui.online.appendChild(frag);
  }

  function typingPeople() {
    const shown = [];
    typists.forEach((t, user) => {
      if (user !== store.me) shown.push({ name: t.name, user });
    });
    return shown;
  }

  function typingNames() {
    return typingPeople().map((p) => p.name);
  }

  /* Each name and @username in a <bdi> of its own, as in the log and the online list. */
  function renderTyping() {
    if (!ui.typing) return;
    const people = typingPeople();
    const text = typingText(people);
    if (ui.typing.textContent === text) return;
    ui.typing.textContent = "";
    if (people.length === 0 || people.length > 2) {
      ui.typing.textContent = text;
      return;
    }
    people.forEach((p, i) => {
      if (i > 0) ui.typing.appendChild(doc.createTextNode(" and "));
      appendPerson(doc, ui.typing, p.name, p.user, "");
    });
    ui.typing.appendChild(doc.createTextNode(people.length === 1 ? " is typing…" : " are typing…"));
  }

  function drop(user) {
    const t = typists.get(user);
    if (!t) return false;
    timers.clearTimeout(t.timer);
    typists.delete(user);
    return true;
  }

  return {
    /* Redraws the list; after the connection's phase changed, it shows whether the list is unknown. */
    renderOnline,
    renderTyping,
    typingNames,

    /* The full online list from hello or presence: the truth. */
    setOnline(list) {
      store.online = list.slice();
      renderOnline();
      let changed = false;
      Array.from(typists.keys()).forEach((user) => {
        if (!store.online.includes(user) && drop(user)) changed = true;
      });
      if (changed) renderTyping();
    },

    /* A typing frame (frames.js). */
    onTyping(f) {
      const user = f.user;
      if (!user || user === store.me) return;
      drop(user);
      if (f.active) {
        rememberName(store, user, f.display_name);
        const timer = timers.setTimeout(() => {
          typists.delete(user);
          renderTyping();
        }, TYPING_TTL_MS);
        typists.set(user, { name: displayName(store, user), timer });
      }
      renderTyping();
    },

    /* Their message arrived: they stopped typing it. `render`: redraw now. */
    stopped(user, render = true) {
      if (drop(user) && render) renderTyping();
    },

    /* The socket is gone: nobody is known to be typing. */
    clear() {
      typists.forEach((t) => timers.clearTimeout(t.timer));
      typists.clear();
      renderTyping();
    },
  };
}

/* Own typing frames: {type: "typing", active}. */
export function createTypingNotifier({ store, send, timers = realTimers }) {
  let active = false;
  let sentAt = 0;
  let idleTimer = null;

  function stop() {
    timers.clearTimeout(idleTimer);
    idleTimer = null;
    if (active) {
      active = false;
      send({ type: "typing", active: false });
    }
  }

  return {
    /* The composer's text changed to `value`. */
    input(value) {
      if (!store.ready) return;
      if (!value.trim()) {
        stop();
        return;
      }
      const now = timers.now();
      if (!active || now - sentAt >= TYPING_SEND_MS) {
        if (send({ type: "typing", active: true })) {
          active = true;
          sentAt = now;
        }
      }
      timers.clearTimeout(idleTimer);
      idleTimer = timers.setTimeout(stop, TYPING_IDLE_MS);
    },
    stop,
    /* The socket is gone: the server forgets the typist by itself. */
    reset() {
      active = false;
      timers.clearTimeout(idleTimer);
      idleTimer = null;
    },
    get active() {
      return active;
    },
  };
}
