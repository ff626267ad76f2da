/*
 * The message log in the DOM: one <article> per stored message (built from
 * the records of messages.js), day separators, the "New messages" divider,
 * grouping, the held messages of the outbox after them, and scrolling (the
 * log sticks to the bottom unless the reader scrolled up; "Jump to latest"
 * brings it back). Every string from the server or a person reaches the
 * page through textContent or createTextNode, never as HTML; names and
 * message text each in a <bdi>, so that right-to-left text or an override
 * character (U+202E) in them cannot reorder what is around them.
 */

import { displayName, shownAs } from "./store.js";
import { dayKey, dayLabel, fullDate, hhmm, parseTime } from "./util.js";

export const BOTTOM_SLACK_PX = 40;
export const TOP_LOAD_PX = 40;

/*
 * Appends a person to `parent` as store.js shownAs() says: the name in a
 * <bdi> of class `className`, then the muted @username in a <bdi
 * class="person-handle">. Returns the name element.
 */
export function appendPerson(doc, parent, name, user, className) {
  const parts = shownAs(name, user);
  const nameEl = doc.createElement("bdi");
  nameEl.className = className ? className + " person-name" : "person-name";
  nameEl.textContent = parts.name;
  parent.appendChild(nameEl);
  if (parts.handle) {
    const handleEl = doc.createElement("bdi");
    handleEl.className = "person-handle";
    handleEl.textContent = parts.handle;
    parent.append(doc.createTextNode(" "), handleEl);
  }
  return nameEl;
}

/*
 * ui: {log, beginning, jump, older, input}. hasMessages(): the list is not
 * empty. onNearTop: the reader scrolled to the top (load older messages);
 * onMoved: the visible part of the log may have changed (read marker).
 */
export function createLogView({
  store,
  ui,
  hasMessages,
  onNearTop = () => {},
  onMoved = () => {},
  doc = globalThis.document,
}) {
  const views = new Map(); // message id -> {el, timeEl, bodyEl, textEl, editedEl, dayEl}
  const pending = new Map(); // client_id -> {el, noteEl}
  let dividerEl = null;
  let lastDayKey = dayKey(new Date());
  let stick = true; // keep the log scrolled to the bottom
  let expectedScrollTop = null;

  function el(tag, className, text) {
    const node = doc.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // ------------------------------------------------------------ scrolling

  function atBottom() {
    return ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight <= BOTTOM_SLACK_PX;
  }

  function setScroll(top) {
    const before = ui.log.scrollTop;
    ui.log.scrollTop = top;
    if (ui.log.scrollTop !== before) expectedScrollTop = ui.log.scrollTop;
  }

  function updateJump() {
    if (!ui.jump) return;
    const show = !stick && hasMessages() && !atBottom();
    if (ui.jump.hidden === show) ui.jump.hidden = !show;
  }

  function scrollToBottom() {
    setScroll(ui.log.scrollHeight);
    stick = true;
    updateJump();
  }

  function keepBottomIfStuck() {
    if (stick) setScroll(ui.log.scrollHeight);
    updateJump();
  }

  function onScroll() {
    const programmatic = expectedScrollTop !== null && Math.abs(ui.log.scrollTop - expectedScrollTop) < 2;
    expectedScrollTop = null;
    stick = atBottom();
    updateJump();
    if (!programmatic && ui.log.scrollTop <= TOP_LOAD_PX) onNearTop();
    onMoved();
  }

  function focusComposerOrLog() {
    if (ui.input && !ui.input.disabled) ui.input.focus();
    else ui.log.focus();
  }

  // ------------------------------------------------------------- articles

  function renderTime(rec, v) {
    const label = hhmm(rec.date);
    v.timeEl.textContent = label;
    if (rec.ts) v.timeEl.setAttribute("datetime", rec.ts);
    v.timeEl.title = fullDate(rec.date);
    v.el.setAttribute("aria-label", rec.name + ", " + label);
  }

  function renderText(rec, v) {
    if (v.textEl.textContent !== rec.message) v.textEl.textContent = rec.message;
    const edited = !!rec.editedAt;
    v.editedEl.hidden = !edited;
    if (edited) {
      const d = parseTime(rec.editedAt);
      v.editedEl.title = d ? "Edited " + fullDate(d) : "Edited";
    }
  }

  function buildArticle(rec) {
    const art = el("article", "chat-msg");
    art.dataset.id = String(rec.id);
    art.dataset.user = rec.user;
    const own = rec.user === store.me;
    if (own) art.classList.add("chat-msg--own");

    const head = el("div", "chat-msg-head");
    appendPerson(doc, head, rec.name, rec.user, "chat-msg-author");
    const timeEl = el("time", "chat-msg-time");
    head.append(doc.createTextNode(" "), timeEl);

    const bodyEl = el("div", "chat-msg-body");
    const textEl = el("bdi", "chat-msg-text");
    const editedEl = el("span", "chat-msg-edited", "(edited)");
    editedEl.hidden = true;
    bodyEl.append(textEl, editedEl);
    art.append(head, bodyEl);

    if (own || store.canModerate) {
      const actions = el("div", "chat-msg-actions");
      if (own) {
        const edit = el("button", "chat-action", "Edit");
        edit.type = "button";
        edit.dataset.action = "edit";
        edit.setAttribute("aria-label", "Edit message");
        actions.appendChild(edit);
      }
      const del = el("button", "chat-action chat-action--danger", "Delete");
      del.type = "button";
      del.dataset.action = "delete";
      del.setAttribute("aria-label", "Delete message");
      actions.appendChild(del);
      art.appendChild(actions);
    }
    const v = { el: art, timeEl, bodyEl, textEl, editedEl, dayEl: null };
    renderTime(rec, v);
    renderText(rec, v);
    return v;
  }

  function firstPendingEl() {
    return ui.log.querySelector(".chat-msg--pending");
  }

  function clear() {
    views.clear();
    dividerEl = null;
    Array.from(ui.log.children).forEach((child) => {
      if (child !== ui.beginning && !child.classList.contains("chat-msg--pending")) child.remove();
    });
  }

  /* A change from messages.js: shows it. True if a message was added. */
  function apply(change) {
    if (change.kind === "add") {
      const v = buildArticle(change.rec);
      views.set(change.rec.id, v);
      const next = change.next ? views.get(change.next.id) : null;
      if (next) ui.log.insertBefore(v.el, next.dayEl || next.el);
      else ui.log.insertBefore(v.el, firstPendingEl()); // held messages stay last
      return true;
    }
    if (change.kind === "update") {
      const v = views.get(change.rec.id);
      if (v) renderText(change.rec, v);
    } else if (change.kind === "remove") {
      const v = views.get(change.rec.id);
      if (v) {
        const hadFocus = v.el.contains(doc.activeElement);
        v.el.remove();
        if (v.dayEl) v.dayEl.remove();
        views.delete(change.rec.id);
        if (hadFocus) focusComposerOrLog();
      }
    } else if (change.kind === "clear") {
      clear();
    }
    return false;
  }

  function makeSeparator(className, text) {
    const sep = el("div", className);
    sep.appendChild(el("span", null, text));
    return sep;
  }

  /* Day separators, the unread divider and grouping, in one pass (rows: messages.js layout()). */
  function relayout(rows) {
    lastDayKey = dayKey(new Date());
    let dividerUsed = false;
    rows.forEach(({ rec, newDay, divider, cont }) => {
      const v = views.get(rec.id);
      if (!v) return;
      if (v.el.classList.contains("chat-msg--cont") !== cont) v.el.classList.toggle("chat-msg--cont", cont);
      let anchor = v.el;
      if (divider) {
        dividerUsed = true;
        if (!dividerEl) dividerEl = makeSeparator("chat-unread", "New messages");
        if (dividerEl.nextSibling !== anchor || !dividerEl.isConnected) ui.log.insertBefore(dividerEl, anchor);
        anchor = dividerEl;
      }
      if (newDay) {
        const label = dayLabel(rec.date);
        if (!v.dayEl) v.dayEl = makeSeparator("chat-day", label);
        else if (v.dayEl.textContent !== label) v.dayEl.firstChild.textContent = label;
        if (v.dayEl.nextSibling !== anchor || !v.dayEl.isConnected) ui.log.insertBefore(v.dayEl, anchor);
      } else if (v.dayEl) {
        v.dayEl.remove();
        v.dayEl = null;
      }
    });
    if (dividerEl && !dividerUsed) {
      dividerEl.remove();
      dividerEl = null;
    }
  }

  // ------------------------------------------------------ held messages

  function buildPending(entry) {
    const art = el("article", "chat-msg chat-msg--own chat-msg--pending");
    art.dataset.clientId = entry.clientId;
    const head = el("div", "chat-msg-head");
    const noteEl = el("span", "chat-msg-time chat-msg-pending-note");
    appendPerson(doc, head, displayName(store, store.me), store.me, "chat-msg-author");
    head.append(doc.createTextNode(" "), noteEl);
    const body = el("div", "chat-msg-body fst-italic");
    body.appendChild(el("bdi", "chat-msg-text", entry.text));
    art.append(head, body);
    return { el: art, noteEl };
  }

  /* The outbox's held entries, in order, after every stored message. */
  function syncPending(entries) {
    const keep = new Set(entries.map((e) => e.clientId));
    pending.forEach((v, cid) => {
      if (!keep.has(cid)) {
        v.el.remove();
        pending.delete(cid);
      }
    });
    const label = store.stopped ? "Not sent" : "Not sent yet";
    let added = false;
    let next = null;
    for (let i = entries.length - 1; i >= 0; i -= 1) {
      let v = pending.get(entries[i].clientId);
      if (!v) {
        v = buildPending(entries[i]);
        pending.set(entries[i].clientId, v);
        added = true;
      }
      if (v.el.parentNode !== ui.log || v.el.nextSibling !== next) ui.log.insertBefore(v.el, next);
      if (v.noteEl.textContent !== label) v.noteEl.textContent = label;
      v.el.setAttribute("aria-label", displayName(store, store.me) + ", " + label.toLowerCase());
      next = v.el;
    }
    if (added) keepBottomIfStuck();
  }

  return {
    apply,
    relayout,
    syncPending,
    view: (id) => views.get(id) || null,
    focusComposerOrLog,

    /* Whether the message's article is at least partly in view. */
    isVisible(id) {
      const v = views.get(id);
      if (!v) return false;
      const lr = ui.log.getBoundingClientRect();
      if (lr.height <= 0) return false;
      const r = v.el.getBoundingClientRect();
      return r.top < lr.bottom - 1 && r.bottom > lr.top + 1;
    },

    /* The day changed since the last layout (a page left open overnight). */
    dayChanged: () => dayKey(new Date()) !== lastDayKey,

    setBusy(busy) {
      if (busy) ui.log.setAttribute("aria-busy", "true");
      else ui.log.removeAttribute("aria-busy");
    },

    updateHistoryControls({ helloSeen, hasMore, loading, ready }) {
      if (ui.older) ui.older.hidden = !(helloSeen && hasMore);
      if (ui.older) ui.older.disabled = loading || !ready;
      if (ui.beginning) ui.beginning.hidden = !(helloSeen && !hasMore);
    },

    // scrolling
    onScroll,
    atBottom,
    get stuck() {
      return stick;
    },
    stickToBottom() {
      stick = true;
    },
    scrollToBottom,
    keepBottomIfStuck,
    updateJump,
    /* Keeps the reader's place while older messages are added above. */
    keepPlace(fn) {
      const beforeHeight = ui.log.scrollHeight;
      const beforeTop = ui.log.scrollTop;
      fn();
      setScroll(beforeTop + (ui.log.scrollHeight - beforeHeight));
      updateJump();
    },
    /* After the first hello: to the "New messages" divider if there is one to scroll to, else to the bottom. */
    scrollToDividerOrBottom() {
      if (dividerEl && dividerEl.isConnected) {
        const maxTop = ui.log.scrollHeight - ui.log.clientHeight;
        const top = Math.max(0, dividerEl.offsetTop - 16);
        if (top < maxTop) {
          setScroll(top);
          stick = false;
          return;
        }
      }
      scrollToBottom();
    },
    /* The log resized (the window, the keyboard on a phone). */
    resized() {
      if (stick) setScroll(ui.log.scrollHeight);
      updateJump();
    },
  };
}
