/*
 * The chat client for the room page (templates/chatrooms/room_detail.html).
 *
 * Plain ES2020, no build step, no libraries. It speaks the protocol described
 * in docs/protocol.md over one WebSocket per page. Every string that comes
 * from the server or from a user reaches the page through textContent or
 * createTextNode only.
 */
(function () {
  "use strict";

  // ---------------------------------------------------------------- config

  const configEl = document.getElementById("chat-config");
  if (!configEl) return;
  let config;
  try {
    config = JSON.parse(configEl.textContent || "{}") || {};
  } catch (err) {
    return;
  }

  const $ = (id) => document.getElementById(id);
  const ui = {
    root: $("chat-root"),
    status: $("chat-status"),
    roomName: $("chat-room-name"),
    roomTopic: $("chat-room-topic"),
    log: $("chat-log"),
    older: $("chat-older"),
    beginning: $("chat-beginning"),
    jump: $("chat-jump"),
    typing: $("chat-typing"),
    alerts: $("chat-alerts"),
    form: $("chat-form"),
    input: $("chat-input"),
    send: $("chat-send"),
    counter: $("chat-counter"),
    online: $("chat-online"),
    onlineCount: $("chat-online-count"),
    outbox: null, // made by makeOutboxStatus()
  };
  if (!ui.log || !ui.form || !ui.input || !ui.send) return;

  const MAX_CHARS = Math.max(1, Number(config.maxChars) || 4000);
  const HISTORY_PAGE = Math.min(100, Math.max(1, Number(config.historyPage) || 50));
  const WS_PATH = String(config.wsPath || "");
  const LOBBY_URL = typeof config.lobbyUrl === "string" ? config.lobbyUrl : "";
  const GROUP_MS = 5 * 60 * 1000;
  const PING_MS = 25000;
  const IDLE_MS = 60000;
  const TYPING_SEND_MS = 3000;
  const TYPING_IDLE_MS = 4000;
  const TYPING_TTL_MS = 6000;
  const READ_DEBOUNCE_MS = 1000;
  const SEND_TIMEOUT_MS = 10000; // no echo and no error by then: hold it and retry
  const RETRY_MIN_MS = 1000;
  const RETRY_MAX_MS = 15000;
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 30000;
  const BOTTOM_SLACK_PX = 40;
  const TOP_LOAD_PX = 40;
  const COUNTER_FROM = Math.max(1, Math.floor(MAX_CHARS * 0.9));

  const ERROR_TEXT = {
    rate_limited: "You are sending messages too fast. Wait a moment and try again.",
    too_long: "That message is too long: the limit is " + MAX_CHARS + " characters.",
    empty: "You can't send an empty message.",
    forbidden: "You are not allowed to do that.",
    not_found: "That message no longer exists.",
    bad_frame: "The server could not understand that request.",
    bad_json: "The server could not understand that request.",
    unknown_type: "The server could not understand that request.",
  };
  // Why the outbox holds messages back, for its status line.
  const HOLD_TEXT = {
    unavailable: "Can't store messages right now",
    timeout: "No answer from the server",
    rate_limited: "Too many messages at once",
    server_error: "The server failed to take a message",
  };
  const CLOSED_TEXT = {
    kicked: "You have been removed from this room.",
    banned: "You have been banned from this room.",
    deactivated: "Your account has been deactivated.",
    archived: "This room has been archived. It is read-only now.",
    signed_out: "You have signed out. Sign in again to keep chatting.",
  };
  const STATUS = {
    connecting: { text: "Connecting…", cls: "text-bg-secondary" },
    connected: { text: "Connected", cls: "text-bg-success" },
    reconnecting: { text: "Reconnecting…", cls: "text-bg-warning" },
    disconnected: { text: "Disconnected", cls: "text-bg-danger" },
  };
  const STATUS_CLASSES = ["text-bg-secondary", "text-bg-success", "text-bg-warning", "text-bg-danger"];

  // ----------------------------------------------------------------- state

  let me = String(config.username || "");
  const canModerate = !!(ui.root && ui.root.dataset.canModerate === "true");
  const names = new Map(); // username -> display name
  if (me) names.set(me, String(config.displayName || me));

  const recs = new Map(); // message id -> record
  let order = []; // loaded message ids, ascending
  const deletedIds = new Set();
  const deleting = new Set(); // ids of chat.delete frames sent and not answered yet
  let maxSeenId = 0;
  let minSeenId = 0;
  let hasMore = false;
  let historyLoading = false;
  let historyTimer = null;
  let helloSeen = false;
  let unreadAfter = null; // the "New messages" divider goes after this id
  let dividerEl = null;
  let lastDayKey = dayKey(new Date());

  let ws = null;
  let ready = false; // hello received on the current socket
  let afterUsed = false;
  let stopped = false; // closed by the server for good
  let unloading = false;
  let attempt = 0;
  let reconnectTimer = null;
  let countdownTimer = null;
  let pingTimer = null;
  let watchdogTimer = null;
  let lastFrameAt = 0;
  let connState = "connecting";

  // Own messages sent and not echoed yet, oldest first: see "the outbox".
  let outbox = [];
  let retryTimer = null;
  let retryCountdown = null;
  let retryDue = 0;
  let retryAttempt = 0;
  let holdReason = ""; // a HOLD_TEXT key
  let restored = null; // an outbox entry whose text was put back into the composer
  let clientSeq = 0;
  let overLimit = false;
  let refocusInput = false;

  let typingActive = false;
  let typingSentAt = 0;
  let typingIdleTimer = null;
  const typists = new Map(); // username -> {name, timer}

  let online = [];
  let stick = true; // keep the log scrolled to the bottom
  let expectedScrollTop = null;

  let lastReadSent = 0;
  let readTimer = null;
  let errorAlert = null;
  let namesDirty = false;

  // --------------------------------------------------------------- helpers

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function toId(value) {
    const n = Number(value);
    return Number.isInteger(n) && n > 0 ? n : 0;
  }

  function charCount(text) {
    let n = 0;
    for (const ch of text) if (ch) n += 1;
    return n;
  }

  function parseTime(ts) {
    if (typeof ts !== "string" || !ts) return null;
    const t = Date.parse(ts);
    return Number.isNaN(t) ? null : new Date(t);
  }

  function pad2(n) {
    return n < 10 ? "0" + n : String(n);
  }

  function hhmm(d) {
    return pad2(d.getHours()) + ":" + pad2(d.getMinutes());
  }

  function fullDate(d) {
    try {
      return d.toLocaleString(undefined, { dateStyle: "full", timeStyle: "short" });
    } catch (err) {
      return d.toString();
    }
  }

  function dayKey(d) {
    return d.getFullYear() * 10000 + (d.getMonth() + 1) * 100 + d.getDate();
  }

  function dayLabel(d) {
    const now = new Date();
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

  function newClientId() {
    clientSeq += 1;
    if (window.crypto && typeof window.crypto.randomUUID === "function") {
      return window.crypto.randomUUID();
    }
    let rand = "";
    if (window.crypto && typeof window.crypto.getRandomValues === "function") {
      const buf = new Uint32Array(3);
      window.crypto.getRandomValues(buf);
      rand = Array.from(buf, (n) => n.toString(36)).join("");
    } else {
      rand = Math.random().toString(36).slice(2) + Math.random().toString(36).slice(2);
    }
    return ("c" + Date.now().toString(36) + "-" + clientSeq + "-" + rand).slice(0, 64);
  }

  function displayName(username) {
    return names.get(username) || username;
  }

  function rememberName(username, name) {
    if (typeof username !== "string" || !username) return false;
    const shown = typeof name === "string" && name ? name : username;
    if (names.get(username) === shown) return false;
    names.set(username, shown);
    if (online.includes(username)) namesDirty = true;
    return true;
  }

  function rememberNames(map) {
    if (!map || typeof map !== "object") return;
    Object.keys(map).forEach((username) => rememberName(username, map[username]));
  }

  // ---------------------------------------------------------------- status

  function setStatus(state, seconds) {
    connState = state;
    if (!ui.status) return;
    const s = STATUS[state] || STATUS.disconnected;
    let text = s.text;
    if (state === "reconnecting" && typeof seconds === "number") {
      text = "Reconnecting in " + seconds + "s…";
    }
    if (ui.status.textContent !== text) ui.status.textContent = text;
    STATUS_CLASSES.forEach((c) => ui.status.classList.toggle(c, c === s.cls));
    ui.status.dataset.state = state;
  }

  // ---------------------------------------------------------------- alerts

  function makeAlert(text, variant, dismissible) {
    const box = el("div", "alert alert-" + variant + " chat-alert mb-2");
    box.setAttribute("role", "alert");
    box.appendChild(el("span", "chat-alert-text", text));
    if (dismissible) {
      box.classList.add("alert-dismissible");
      const close = el("button", "btn-close");
      close.type = "button";
      close.setAttribute("aria-label", "Dismiss");
      close.addEventListener("click", () => {
        const hadFocus = box.contains(document.activeElement);
        box.remove();
        if (errorAlert === box) errorAlert = null;
        if (hadFocus) focusComposerOrLog();
      });
      box.appendChild(close);
    }
    return box;
  }

  function showError(text) {
    if (!ui.alerts) return;
    clearError();
    errorAlert = makeAlert(text, "warning", true);
    ui.alerts.appendChild(errorAlert);
    keepBottomIfStuck();
  }

  function clearError() {
    if (errorAlert) {
      errorAlert.remove();
      errorAlert = null;
    }
  }

  function showClosed(reason) {
    if (!ui.alerts) return;
    clearError();
    const text = CLOSED_TEXT[reason] || "You no longer have access to this room.";
    const box = makeAlert(text, "danger", false);
    box.classList.add("chat-closed");
    if (LOBBY_URL) {
      box.appendChild(document.createTextNode(" "));
      const link = el("a", "alert-link", "Back to the rooms");
      link.href = LOBBY_URL;
      box.appendChild(link);
    }
    ui.alerts.textContent = "";
    ui.alerts.appendChild(box);
    keepBottomIfStuck();
  }

  function focusComposerOrLog() {
    if (!ui.input.disabled) ui.input.focus();
    else ui.log.focus();
  }

  // ------------------------------------------------------------- scrolling

  function atBottom() {
    return ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight <= BOTTOM_SLACK_PX;
  }

  function setScroll(top) {
    const before = ui.log.scrollTop;
    ui.log.scrollTop = top;
    if (ui.log.scrollTop !== before) expectedScrollTop = ui.log.scrollTop;
  }

  function scrollToBottom() {
    setScroll(ui.log.scrollHeight);
    stick = true;
    updateJump();
  }

  function keepBottomIfStuck() {
    if (stick) {
      setScroll(ui.log.scrollHeight);
    }
    updateJump();
  }

  function updateJump() {
    if (!ui.jump) return;
    const show = !stick && order.length > 0 && !atBottom();
    if (ui.jump.hidden === show) ui.jump.hidden = !show;
  }

  function onLogScroll() {
    const programmatic =
      expectedScrollTop !== null && Math.abs(ui.log.scrollTop - expectedScrollTop) < 2;
    expectedScrollTop = null;
    stick = atBottom();
    updateJump();
    if (!programmatic && ui.log.scrollTop <= TOP_LOAD_PX) requestHistory();
    maybeReportRead();
  }

  // --------------------------------------------------------------- messages

  function buildArticle(rec) {
    const art = el("article", "chat-msg");
    art.dataset.id = String(rec.id);
    art.dataset.user = rec.user;
    if (rec.user === me) art.classList.add("chat-msg--own");

    const head = el("div", "chat-msg-head");
    rec.authorEl = el("span", "chat-msg-author", rec.name);
    rec.timeEl = el("time", "chat-msg-time");
    head.append(rec.authorEl, document.createTextNode(" "), rec.timeEl);

    rec.bodyEl = el("div", "chat-msg-body");
    rec.textEl = el("span", "chat-msg-text");
    rec.editedEl = el("span", "chat-msg-edited", "(edited)");
    rec.editedEl.hidden = true;
    rec.bodyEl.append(rec.textEl, rec.editedEl);

    art.append(head, rec.bodyEl);

    const own = rec.user === me;
    if (own || canModerate) {
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
    rec.el = art;
    renderTime(rec);
    renderText(rec);
  }

  function renderTime(rec) {
    const label = hhmm(rec.date);
    rec.timeEl.textContent = label;
    if (rec.ts) rec.timeEl.setAttribute("datetime", rec.ts);
    rec.timeEl.title = fullDate(rec.date);
    rec.el.setAttribute("aria-label", rec.name + ", " + label);
  }

  function renderText(rec) {
    if (rec.textEl.textContent !== rec.message) rec.textEl.textContent = rec.message;
    const edited = !!rec.editedAt;
    rec.editedEl.hidden = !edited;
    if (edited) {
      const d = parseTime(rec.editedAt);
      rec.editedEl.title = d ? "Edited " + fullDate(d) : "Edited";
    }
  }

  function isNewer(a, b) {
    if (!a) return false;
    if (!b) return true;
    const ta = Date.parse(a);
    const tb = Date.parse(b);
    if (Number.isNaN(ta) || Number.isNaN(tb)) return a !== b;
    return ta > tb;
  }

  /* Adds a chat.message (live, hello or history). Returns true if it is new. */
  function applyMessage(m) {
    const id = toId(m.id);
    if (!id) return false;
    if (id > maxSeenId) maxSeenId = id;
    if (!minSeenId || id < minSeenId) minSeenId = id;
    const user = typeof m.user === "string" ? m.user : "";
    rememberName(user, m.display_name);
    if (user === me && typeof m.client_id === "string" && m.client_id) settleEntry(m.client_id);
    if (deletedIds.has(id)) return false;

    const existing = recs.get(id);
    if (existing) {
      if (m.edited_at && isNewer(m.edited_at, existing.editedAt)) {
        existing.message = typeof m.message === "string" ? m.message : existing.message;
        existing.editedAt = m.edited_at;
        renderText(existing);
      }
      return false;
    }

    const ts = typeof m.ts === "string" ? m.ts : "";
    const rec = {
      id: id,
      user: user,
      name: (typeof m.display_name === "string" && m.display_name) || user || "Unknown",
      message: typeof m.message === "string" ? m.message : String(m.message ?? ""),
      ts: ts,
      date: parseTime(ts) || new Date(),
      editedAt: m.edited_at || null,
      clientId: typeof m.client_id === "string" ? m.client_id : "",
      el: null,
      dayEl: null,
      editor: null,
    };
    buildArticle(rec);

    let lo = 0;
    let hi = order.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (order[mid] < id) lo = mid + 1;
      else hi = mid;
    }
    order.splice(lo, 0, id);
    recs.set(id, rec);
    const nextId = order[lo + 1];
    if (nextId !== undefined) {
      const next = recs.get(nextId);
      ui.log.insertBefore(rec.el, next.dayEl || next.el);
    } else {
      ui.log.insertBefore(rec.el, firstHeldEl()); // held messages stay last
    }
    return true;
  }

  function applyEdit(f) {
    const id = toId(f.id);
    const rec = recs.get(id);
    if (!rec) return;
    if (f.edited_at && rec.editedAt && isNewer(rec.editedAt, f.edited_at)) return;
    if (typeof f.message === "string") rec.message = f.message;
    rec.editedAt = f.edited_at || rec.editedAt || new Date().toISOString();
    renderText(rec);
    if (rec.editor && rec.editor.saving) closeEditor(rec, true);
  }

  function applyDelete(f) {
    const id = toId(f.id);
    if (!id) return;
    deletedIds.add(id);
    deleting.delete(id);
    const rec = recs.get(id);
    if (!rec) return;
    const hadFocus = rec.el.contains(document.activeElement);
    if (rec.editor) closeEditor(rec, false);
    rec.el.remove();
    if (rec.dayEl) rec.dayEl.remove();
    recs.delete(id);
    const idx = order.indexOf(id);
    if (idx >= 0) order.splice(idx, 1);
    if (hadFocus) focusComposerOrLog();
  }

  function applyItem(item) {
    if (!item || typeof item !== "object") return false;
    const type = item.type || "chat.message";
    if (type === "chat.edit") {
      applyEdit(item);
      return false;
    }
    if (type === "chat.delete") {
      applyDelete(item);
      return false;
    }
    if (type === "chat.message") return applyMessage(item);
    return false;
  }

  function clearMessages() {
    recs.forEach((rec) => {
      if (rec.editor) clearTimeout(rec.editor.timer);
    });
    recs.clear();
    order = [];
    dividerEl = null;
    Array.from(ui.log.children).forEach((child) => {
      if (child !== ui.beginning && !child.classList.contains("chat-msg--pending")) child.remove();
    });
  }

  function makeSeparator(className, text) {
    const sep = el("div", className);
    sep.appendChild(el("span", null, text));
    return sep;
  }

  /* Day separators, the unread divider and grouping, in one pass. */
  function relayout() {
    lastDayKey = dayKey(new Date());
    let dividerBefore = 0;
    if (unreadAfter !== null) {
      for (let i = 0; i < order.length; i += 1) {
        if (order[i] > unreadAfter) {
          dividerBefore = order[i];
          break;
        }
      }
    }
    let prev = null;
    for (let i = 0; i < order.length; i += 1) {
      const rec = recs.get(order[i]);
      const newDay = !prev || dayKey(prev.date) !== dayKey(rec.date);
      const dividerHere = rec.id === dividerBefore;
      const cont =
        !!prev &&
        !newDay &&
        !dividerHere &&
        prev.user === rec.user &&
        rec.date - prev.date >= 0 &&
        rec.date - prev.date < GROUP_MS;
      if (rec.el.classList.contains("chat-msg--cont") !== cont) {
        rec.el.classList.toggle("chat-msg--cont", cont);
      }

      let anchor = rec.el;
      if (dividerHere) {
        if (!dividerEl) dividerEl = makeSeparator("chat-unread", "New messages");
        if (dividerEl.nextSibling !== anchor || !dividerEl.isConnected) {
          ui.log.insertBefore(dividerEl, anchor);
        }
        anchor = dividerEl;
      }
      if (newDay) {
        const label = dayLabel(rec.date);
        if (!rec.dayEl) rec.dayEl = makeSeparator("chat-day", label);
        else if (rec.dayEl.textContent !== label) rec.dayEl.firstChild.textContent = label;
        if (rec.dayEl.nextSibling !== anchor || !rec.dayEl.isConnected) {
          ui.log.insertBefore(rec.dayEl, anchor);
        }
      } else if (rec.dayEl) {
        rec.dayEl.remove();
        rec.dayEl = null;
      }
      prev = rec;
    }
    if (dividerEl && !dividerBefore) {
      dividerEl.remove();
      dividerEl = null;
    }
  }

  function setBusy(busy) {
    if (busy) ui.log.setAttribute("aria-busy", "true");
    else ui.log.removeAttribute("aria-busy");
  }

  function updateHistoryControls() {
    if (ui.older) ui.older.hidden = !(helloSeen && hasMore);
    if (ui.older) ui.older.disabled = historyLoading || !ready;
    if (ui.beginning) ui.beginning.hidden = !(helloSeen && !hasMore);
  }

  function requestHistory() {
    if (!hasMore || historyLoading || !ready) return;
    const frame = { type: "history", limit: HISTORY_PAGE };
    if (minSeenId) frame.before = minSeenId;
    if (!send(frame)) return;
    historyLoading = true;
    clearTimeout(historyTimer);
    historyTimer = setTimeout(() => {
      historyLoading = false;
      updateHistoryControls();
    }, 15000);
    updateHistoryControls();
  }

  function onHistory(f) {
    clearTimeout(historyTimer);
    historyLoading = false;
    const beforeHeight = ui.log.scrollHeight;
    const beforeTop = ui.log.scrollTop;
    setBusy(true);
    (Array.isArray(f.messages) ? f.messages : []).forEach(applyItem);
    relayout();
    setBusy(false);
    hasMore = !!f.has_more;
    updateHistoryControls();
    setScroll(beforeTop + (ui.log.scrollHeight - beforeHeight));
    updateJump();
  }

  // ------------------------------------------------------------- editing

  function startEdit(rec) {
    if (!rec || rec.user !== me || rec.editor) return;
    const form = el("form", "chat-edit");
    const taId = "chat-edit-" + rec.id;
    const label = el("label", "visually-hidden", "Edit message");
    label.htmlFor = taId;
    const ta = el("textarea", "form-control form-control-sm chat-edit-input");
    ta.id = taId;
    ta.value = rec.message;
    ta.rows = Math.min(8, rec.message.split("\n").length + 1);
    const row = el("div", "chat-edit-actions");
    const save = el("button", "btn btn-sm btn-primary", "Save");
    save.type = "submit";
    const cancel = el("button", "btn btn-sm btn-outline-secondary", "Cancel");
    cancel.type = "button";
    const hint = el("span", "chat-edit-hint", "Enter to save, Escape to cancel");
    row.append(save, cancel, hint);
    form.append(label, ta, row);

    rec.editor = { form: form, ta: ta, save: save, cancel: cancel, saving: false, timer: null };
    rec.bodyEl.hidden = true;
    rec.el.classList.add("is-editing");
    rec.el.insertBefore(form, rec.bodyEl.nextSibling);

    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      saveEdit(rec);
    });
    cancel.addEventListener("click", () => closeEditor(rec, true));
    ta.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape") {
        ev.preventDefault();
        ev.stopPropagation();
        closeEditor(rec, true);
      } else if (isSendEnter(ev)) {
        ev.preventDefault();
        saveEdit(rec);
      }
    });
    ta.focus();
    ta.setSelectionRange(ta.value.length, ta.value.length);
    keepBottomIfStuck();
  }

  function saveEdit(rec) {
    const ed = rec.editor;
    if (!ed || ed.saving) return;
    const text = ed.ta.value.replace(/\s+$/, "");
    if (!text.trim()) {
      showError(ERROR_TEXT.empty + " To remove a message, delete it.");
      return;
    }
    if (charCount(text) > MAX_CHARS) {
      showError(ERROR_TEXT.too_long);
      return;
    }
    if (text === rec.message) {
      closeEditor(rec, true);
      return;
    }
    if (!send({ type: "chat.edit", id: rec.id, message: text })) {
      showError("You are offline. Your edit was not sent.");
      return;
    }
    ed.saving = true;
    ed.ta.readOnly = true;
    ed.save.disabled = true;
    ed.timer = setTimeout(() => unlockEditor(rec), 10000);
  }

  function unlockEditor(rec) {
    const ed = rec.editor;
    if (!ed) return;
    clearTimeout(ed.timer);
    ed.saving = false;
    ed.ta.readOnly = false;
    ed.save.disabled = false;
  }

  function closeEditor(rec, restoreFocus) {
    const ed = rec.editor;
    if (!ed) return;
    clearTimeout(ed.timer);
    const hadFocus = ed.form.contains(document.activeElement);
    ed.form.remove();
    rec.editor = null;
    rec.bodyEl.hidden = false;
    rec.el.classList.remove("is-editing");
    if (restoreFocus && hadFocus) {
      const btn = rec.el.querySelector('button[data-action="edit"]');
      if (btn) btn.focus();
      else focusComposerOrLog();
    }
  }

  function confirmDelete(rec) {
    if (!rec) return;
    if (!window.confirm("Delete this message? This cannot be undone.")) return;
    if (!send({ type: "chat.delete", id: rec.id })) {
      showError("You are offline. The message was not deleted.");
    } else {
      deleting.add(rec.id);
    }
  }

  function onLogClick(ev) {
    const btn = ev.target instanceof Element ? ev.target.closest("button[data-action]") : null;
    if (!btn || !ui.log.contains(btn)) return;
    const art = btn.closest("article");
    const rec = art ? recs.get(toId(art.dataset.id)) : null;
    if (!rec) return;
    if (btn.dataset.action === "edit") startEdit(rec);
    else if (btn.dataset.action === "delete") confirmDelete(rec);
  }

  // ---------------------------------------------------------- read marker

  function newestVisible() {
    if (!order.length) return false;
    const last = recs.get(order[order.length - 1]);
    const lr = ui.log.getBoundingClientRect();
    if (lr.height <= 0) return false;
    const r = last.el.getBoundingClientRect();
    return r.top < lr.bottom - 1 && r.bottom > lr.top + 1;
  }

  function canReportRead() {
    if (!ready || document.visibilityState !== "visible" || !order.length) return false;
    return order[order.length - 1] > lastReadSent && newestVisible();
  }

  /* The read marker could not be stored: report it again later, quietly. */
  function readNotStored(id) {
    if (lastReadSent === id) lastReadSent = 0; // the server moves it forward only
  }

  function maybeReportRead() {
    if (readTimer || !canReportRead()) return;
    readTimer = setTimeout(() => {
      readTimer = null;
      if (!canReportRead()) return;
      const id = order[order.length - 1];
      if (send({ type: "read", id: id })) lastReadSent = id;
    }, READ_DEBOUNCE_MS);
  }

  // -------------------------------------------------------------- presence

  function setOnline(list) {
    online = Array.isArray(list) ? list.filter((u) => typeof u === "string") : [];
    renderOnline();
    let changed = false;
    typists.forEach((t, user) => {
      if (!online.includes(user)) {
        clearTimeout(t.timer);
        typists.delete(user);
        changed = true;
      }
    });
    if (changed) renderTyping();
  }

  function renderOnline() {
    if (ui.onlineCount) ui.onlineCount.textContent = String(online.length);
    if (!ui.online) return;
    const frag = document.createDocumentFragment();
    online.forEach((user) => {
      const li = el("li", "chat-online-item");
      li.dataset.username = user;
      if (user === me) li.classList.add("is-me");
      const dot = el("span", "chat-online-dot");
      dot.setAttribute("aria-hidden", "true");
      li.appendChild(dot);
      const name = displayName(user);
      li.appendChild(el("span", "chat-online-name", name));
      if (name !== user) {
        li.appendChild(document.createTextNode(" "));
        li.appendChild(el("span", "chat-online-username", "@" + user));
      }
      frag.appendChild(li);
    });
    ui.online.textContent = "";
    ui.online.appendChild(frag);
  }

  // ---------------------------------------------------------------- typing

  function renderTyping() {
    if (!ui.typing) return;
    const shown = [];
    typists.forEach((t, user) => {
      if (user !== me) shown.push(t.name);
    });
    let text = "";
    if (shown.length === 1) text = shown[0] + " is typing…";
    else if (shown.length === 2) text = shown[0] + " and " + shown[1] + " are typing…";
    else if (shown.length > 2) text = "several people are typing…";
    if (ui.typing.textContent !== text) ui.typing.textContent = text;
  }

  function onTyping(f) {
    const user = typeof f.user === "string" ? f.user : "";
    if (!user || user === me) return;
    const old = typists.get(user);
    if (old) clearTimeout(old.timer);
    if (f.active) {
      rememberName(user, f.display_name);
      const name = displayName(user);
      const timer = setTimeout(() => {
        typists.delete(user);
        renderTyping();
      }, TYPING_TTL_MS);
      typists.set(user, { name: name, timer: timer });
    } else {
      typists.delete(user);
    }
    renderTyping();
  }

  function clearTypists() {
    typists.forEach((t) => clearTimeout(t.timer));
    typists.clear();
    renderTyping();
  }

  function noteTyping() {
    if (!ready) return;
    if (!ui.input.value.trim()) {
      stopTyping();
      return;
    }
    const now = Date.now();
    if (!typingActive || now - typingSentAt >= TYPING_SEND_MS) {
      if (send({ type: "typing", active: true })) {
        typingActive = true;
        typingSentAt = now;
      }
    }
    clearTimeout(typingIdleTimer);
    typingIdleTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
  }

  function stopTyping() {
    clearTimeout(typingIdleTimer);
    typingIdleTimer = null;
    if (typingActive) {
      typingActive = false;
      send({ type: "typing", active: false });
    }
  }

  // -------------------------------------------------------------- composer

  function isSendEnter(ev) {
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

  function autosize() {
    const ta = ui.input;
    ta.style.height = "auto";
    ta.style.height = Math.min(ta.scrollHeight + 2, 200) + "px";
  }

  function updateCounter() {
    const n = charCount(ui.input.value);
    overLimit = n > MAX_CHARS;
    if (overLimit) ui.input.setAttribute("aria-invalid", "true");
    else ui.input.removeAttribute("aria-invalid");
    if (!ui.counter) return;
    if (n >= COUNTER_FROM) {
      ui.counter.hidden = false;
      ui.counter.textContent =
        n + " / " + MAX_CHARS + (overLimit ? " characters: too long" : " characters");
      ui.counter.classList.toggle("is-over", overLimit);
    } else if (!ui.counter.hidden) {
      ui.counter.hidden = true;
      ui.counter.textContent = "";
    }
  }

  function setComposerEnabled(on) {
    if (!on && document.activeElement === ui.input) refocusInput = true;
    ui.input.disabled = !on;
    ui.send.disabled = !on;
    if (on && refocusInput) {
      refocusInput = false;
      ui.input.focus();
    }
  }

  function submitComposer() {
    const raw = ui.input.value;
    const text = raw.replace(/\s+$/, "");
    if (!text.trim()) {
      ui.input.focus();
      return;
    }
    if (charCount(text) > MAX_CHARS) {
      showError(
        "That message is too long: " + charCount(text) + " characters, the limit is " +
          MAX_CHARS + ". Shorten it and try again."
      );
      ui.input.focus();
      return;
    }
    if (!ready) return;
    const entry = newEntry(text, raw);
    if (heldCount()) {
      // Behind the messages not sent yet, so that they all go in order.
      outbox.push(entry);
      holdEntry(entry, "");
      flushOutbox();
    } else {
      if (!sendEntry(entry)) return;
      outbox.push(entry);
    }
    restored = null;
    ui.input.value = "";
    autosize();
    updateCounter();
    stopTyping();
    ui.input.focus();
    stick = true;
    if (unreadAfter !== null) {
      unreadAfter = null;
      relayout();
    }
    if (errorAlert) clearError();
  }

  // ------------------------------------------------------------ the outbox

  /*
   * Own messages sent and not echoed yet, oldest first: {clientId, text,
   * raw, sent, timer, el, noteEl}. `sent`: a frame of it is out on the
   * current socket. `el`: it is held, shown at the end of the log as "Not
   * sent yet", because the server could not store it (error
   * "unavailable"), no answer came within SEND_TIMEOUT_MS, or the socket
   * closed first. Held messages are sent again one at a time, in order, with
   * their own client_id (the server stores a client_id once), after a
   * backoff while the socket is open and at once after a hello; new sends
   * queue behind them. An entry leaves the outbox when its echo arrives (live,
   * in a hello or in history), or when the server refuses it for good.
   */

  function makeOutboxStatus() {
    // Not role="status": the connection badge is the page's one status. A
    // polite live region, empty (and taking no room) while nothing is held.
    const box = el("div", "chat-outbox small px-3 pb-1");
    box.id = "chat-outbox";
    box.setAttribute("aria-live", "polite");
    box.setAttribute("aria-atomic", "true");
    ui.form.parentNode.insertBefore(box, ui.alerts || ui.form);
    return box;
  }

  function newEntry(text, raw) {
    return {
      clientId: newClientId(),
      text: text,
      raw: raw,
      sent: false,
      timer: null,
      el: null,
      noteEl: null,
    };
  }

  function findEntry(clientId) {
    return outbox.find((e) => e.clientId === clientId) || null;
  }

  function heldCount() {
    return outbox.filter((e) => e.el).length;
  }

  function firstHeldEl() {
    const first = outbox.find((e) => e.el);
    return first ? first.el : null;
  }

  function heldInFlight() {
    return outbox.find((e) => e.el && e.sent) || null;
  }

  function lastSent() {
    for (let i = outbox.length - 1; i >= 0; i -= 1) {
      if (outbox[i].sent && !outbox[i].el) return outbox[i];
    }
    return null;
  }

  function sendEntry(entry) {
    if (!send({ type: "chat.message", message: entry.text, client_id: entry.clientId })) return false;
    entry.sent = true;
    clearTimeout(entry.timer);
    entry.timer = setTimeout(() => sendTimedOut(entry), SEND_TIMEOUT_MS);
    return true;
  }

  function sendTimedOut(entry) {
    entry.timer = null;
    if (ready && entry.sent && outbox.includes(entry)) holdEntry(entry, "timeout");
  }

  /* Not stored (or not known to be): show it as not sent yet, and retry. */
  function holdEntry(entry, reason) {
    clearTimeout(entry.timer);
    entry.timer = null;
    entry.sent = false;
    if (reason) holdReason = reason;
    if (!entry.el) showPending(entry);
    else renderPending(entry);
    if (ready && !retryTimer && !heldInFlight()) scheduleRetry();
    renderOutboxStatus();
  }

  function showPending(entry) {
    const art = el("article", "chat-msg chat-msg--own chat-msg--pending");
    art.dataset.clientId = entry.clientId;
    const head = el("div", "chat-msg-head");
    entry.noteEl = el("span", "chat-msg-time chat-msg-pending-note");
    const author = el("span", "chat-msg-author", displayName(me));
    head.append(author, document.createTextNode(" "), entry.noteEl);
    const body = el("div", "chat-msg-body fst-italic");
    body.appendChild(el("span", "chat-msg-text", entry.text));
    art.append(head, body);
    entry.el = art;
    // In outbox order, after every stored message.
    const later = outbox.slice(outbox.indexOf(entry) + 1).find((e) => e.el);
    ui.log.insertBefore(art, later ? later.el : null);
    renderPending(entry);
    keepBottomIfStuck();
  }

  function renderPending(entry) {
    const label = stopped ? "Not sent" : "Not sent yet";
    if (entry.noteEl.textContent !== label) entry.noteEl.textContent = label;
    entry.el.setAttribute("aria-label", displayName(me) + ", " + label.toLowerCase());
  }

  function removeEntry(entry) {
    const idx = outbox.indexOf(entry);
    if (idx >= 0) outbox.splice(idx, 1);
    clearTimeout(entry.timer);
    entry.timer = null;
    entry.sent = false;
    if (entry.el) entry.el.remove();
    entry.el = null;
    if (!heldCount()) {
      clearRetry();
      retryAttempt = 0;
      holdReason = "";
    }
  }

  /* Its echo arrived: it is stored. Returns the entry, or null. */
  function settleEntry(clientId) {
    const entry = findEntry(clientId);
    if (!entry) return null;
    removeEntry(entry);
    if (heldCount()) {
      // Storing works again: the next held message goes now.
      retryAttempt = 0;
      clearRetry();
      flushOutbox();
    }
    renderOutboxStatus();
    return entry;
  }

  /* Refused for good (too long, empty…): its text goes back to the composer. */
  function giveBack(entry) {
    removeEntry(entry);
    if (!ui.input.value.trim()) {
      ui.input.value = entry.raw;
      autosize();
      updateCounter();
      restored = entry;
    }
    flushOutbox();
    renderOutboxStatus();
  }

  /*
   * "unavailable" (not stored) or "server_error" (maybe stored) about the
   * chat.message named by client_id: hold it; resending it is safe. True if
   * it was one of ours.
   */
  function holdUnstored(f, code) {
    const cid = typeof f.client_id === "string" ? f.client_id : "";
    let entry = cid ? findEntry(cid) : null;
    if (!cid && code === "unavailable") entry = outbox.find((e) => e.sent) || null;
    if (entry) holdEntry(entry, code);
    return !!entry;
  }

  /* The socket is gone: what was out on it may or may not be stored. */
  function holdSentEntries() {
    clearRetry();
    outbox.filter((e) => e.sent).forEach((entry) => holdEntry(entry, ""));
    renderOutboxStatus();
  }

  function scheduleRetry() {
    clearRetry();
    const cap = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * Math.pow(2, retryAttempt));
    retryAttempt += 1;
    const wait = cap * (0.8 + Math.random() * 0.2);
    retryDue = Date.now() + wait;
    retryTimer = setTimeout(retryNow, wait);
    retryCountdown = setInterval(renderOutboxStatus, 1000);
    renderOutboxStatus();
  }

  function clearRetry() {
    clearTimeout(retryTimer);
    clearInterval(retryCountdown);
    retryTimer = null;
    retryCountdown = null;
  }

  function retryNow() {
    clearRetry();
    flushOutbox();
    renderOutboxStatus();
  }

  /* Send the oldest held message, unless one is out already or a retry is due. */
  function flushOutbox() {
    if (!ready || stopped || retryTimer || heldInFlight()) return;
    const head = outbox.find((e) => e.el);
    if (head) sendEntry(head);
    renderOutboxStatus();
  }

  function renderOutboxStatus() {
    const box = ui.outbox;
    if (!box) return;
    const n = heldCount();
    const why = HOLD_TEXT[holdReason];
    let text = "";
    if (!n) {
      text = "";
    } else if (stopped) {
      text = n === 1 ? "1 message was not sent." : n + " messages were not sent.";
    } else if (!ready) {
      text =
        n === 1
          ? "1 message not sent yet; it goes when the connection is back."
          : n + " messages not sent yet; they go when the connection is back.";
    } else if (retryTimer) {
      const left = Math.max(1, Math.ceil((retryDue - Date.now()) / 1000));
      text = (why || "Not sent yet") + "; retrying in " + left + " s";
    } else {
      text = (why || "Not sent yet") + "; sending again…";
    }
    if (box.textContent !== text) box.textContent = text;
  }

  // ------------------------------------------------------------ the socket

  function send(frame) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    try {
      ws.send(JSON.stringify(frame));
      return true;
    } catch (err) {
      return false;
    }
  }

  function socketUrl(after) {
    let url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + WS_PATH;
    if (after > 0) url += (url.indexOf("?") >= 0 ? "&" : "?") + "after=" + after;
    return url;
  }

  function connect() {
    clearTimeout(reconnectTimer);
    clearInterval(countdownTimer);
    reconnectTimer = null;
    countdownTimer = null;
    if (stopped || unloading) return;
    setStatus("connecting");
    afterUsed = helloSeen && maxSeenId > 0;
    let sock;
    try {
      sock = new WebSocket(socketUrl(afterUsed ? maxSeenId : 0));
    } catch (err) {
      scheduleReconnect();
      return;
    }
    ws = sock;
    ready = false;
    lastFrameAt = Date.now();
    startWatchdog();
    sock.onopen = () => {
      if (ws !== sock) return;
      lastFrameAt = Date.now();
      startPing();
    };
    sock.onmessage = (ev) => {
      if (ws !== sock) return;
      lastFrameAt = Date.now();
      handleFrame(ev.data);
    };
    sock.onclose = (ev) => {
      if (ws !== sock) return;
      socketGone(ev.code);
    };
    sock.onerror = () => {
      /* a close event follows */
    };
  }

  function dropSocket() {
    const sock = ws;
    if (!sock) return;
    sock.onopen = sock.onmessage = sock.onclose = sock.onerror = null;
    try {
      sock.close(4000, "timeout");
    } catch (err) {
      /* already closing */
    }
    socketGone(4000);
  }

  function socketGone(code) {
    ws = null;
    ready = false;
    stopTimers();
    typingActive = false;
    clearTimeout(typingIdleTimer);
    clearTypists();
    clearTimeout(historyTimer);
    historyLoading = false;
    clearTimeout(readTimer);
    readTimer = null;
    recs.forEach((rec) => unlockEditor(rec));
    holdSentEntries();
    setComposerEnabled(false);
    updateHistoryControls();
    if (stopped) {
      setStatus("disconnected");
      return;
    }
    if (code === 4403) {
      stop("");
      return;
    }
    if (unloading) {
      setStatus("disconnected");
      return;
    }
    scheduleReconnect();
  }

  function scheduleReconnect() {
    if (stopped || unloading) return;
    const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * Math.pow(2, attempt));
    attempt += 1;
    const wait = cap / 2 + Math.random() * (cap / 2);
    const due = Date.now() + wait;
    const tick = () => {
      const left = Math.max(1, Math.ceil((due - Date.now()) / 1000));
      setStatus("reconnecting", left);
    };
    tick();
    clearInterval(countdownTimer);
    countdownTimer = setInterval(tick, 1000);
    clearTimeout(reconnectTimer);
    reconnectTimer = setTimeout(connect, wait);
  }

  function stop(reason) {
    stopped = true;
    clearTimeout(reconnectTimer);
    clearInterval(countdownTimer);
    clearRetry();
    outbox.forEach((entry) => {
      if (entry.el) renderPending(entry);
    });
    renderOutboxStatus();
    setComposerEnabled(false);
    setStatus("disconnected");
    showClosed(reason);
  }

  function startPing() {
    clearInterval(pingTimer);
    pingTimer = setInterval(() => send({ type: "ping" }), PING_MS);
  }

  function startWatchdog() {
    clearInterval(watchdogTimer);
    watchdogTimer = setInterval(() => {
      if (Date.now() - lastFrameAt > IDLE_MS) dropSocket();
    }, 5000);
  }

  function stopTimers() {
    clearInterval(pingTimer);
    clearInterval(watchdogTimer);
    pingTimer = null;
    watchdogTimer = null;
  }

  // ------------------------------------------------------------ the frames

  function handleFrame(data) {
    if (typeof data !== "string") return;
    let f;
    try {
      f = JSON.parse(data);
    } catch (err) {
      return;
    }
    if (!f || typeof f !== "object") return;
    const type = f.type || (f.message !== undefined ? "chat.message" : "");
    switch (type) {
      case "hello":
        onHello(f);
        break;
      case "chat.message":
        onLiveMessage(f);
        break;
      case "chat.edit":
        applyEdit(f);
        keepBottomIfStuck();
        break;
      case "chat.delete":
        applyDelete(f);
        relayout();
        keepBottomIfStuck();
        break;
      case "presence":
        // join / leave is informational: the full list is the truth.
        rememberNames(f.names);
        setOnline(f.online);
        break;
      case "typing":
        onTyping(f);
        break;
      case "history":
        onHistory(f);
        break;
      case "error":
        onError(f);
        break;
      case "closed":
        stop(typeof f.reason === "string" ? f.reason : "");
        break;
      default:
        break; // pong, and anything newer than this client
    }
    if (namesDirty) {
      namesDirty = false;
      renderOnline();
    }
  }

  function onHello(f) {
    const catchup = afterUsed && f.truncated !== true;
    if (f.user && typeof f.user.username === "string" && f.user.username) {
      me = f.user.username;
      rememberName(me, f.user.display_name);
    }
    if (f.room && typeof f.room === "object") updateRoom(f.room);
    const items = Array.isArray(f.messages) ? f.messages : [];

    if (!helloSeen) {
      const lastRead = toId(f.last_read);
      lastReadSent = lastRead;
      const later = items.some(
        (m) => m && (m.type || "chat.message") === "chat.message" && toId(m.id) > lastRead && m.user !== me
      );
      if (lastRead > 0 && later) unreadAfter = lastRead;
    } else {
      lastReadSent = Math.max(lastReadSent, toId(f.last_read));
    }

    setBusy(true);
    if (!catchup) {
      clearMessages();
      hasMore = !!f.has_more;
      minSeenId = 0;
    }
    let added = false;
    items.forEach((item) => {
      if (applyItem(item)) added = true;
      if (item && item.type === "chat.message" && item.user) {
        typists.delete(item.user);
      }
    });
    relayout();
    setBusy(false);

    const first = !helloSeen;
    helloSeen = true;
    ready = true;
    attempt = 0;
    historyLoading = false;
    rememberNames(f.names);
    setOnline(f.online);
    renderTyping();
    updateHistoryControls();
    setStatus("connected");
    setComposerEnabled(true);

    if (!catchup) {
      if (first && dividerEl && dividerEl.isConnected) {
        const maxTop = ui.log.scrollHeight - ui.log.clientHeight;
        const top = Math.max(0, dividerEl.offsetTop - 16);
        if (top < maxTop) {
          setScroll(top);
          stick = false;
        } else {
          scrollToBottom();
        }
      } else {
        scrollToBottom();
      }
    } else if (added) {
      keepBottomIfStuck();
    }
    // Sends that crossed the reconnect and did not come back in it, and
    // messages held before: again, in order, with their own client_ids.
    retryAttempt = 0;
    flushOutbox();
    renderOutboxStatus();
    updateJump();
    maybeReportRead();
  }

  function updateRoom(room) {
    if (ui.roomName && typeof room.name === "string" && room.name && ui.roomName.textContent !== room.name) {
      ui.roomName.textContent = room.name;
    }
    if (ui.roomTopic && typeof room.topic === "string") {
      if (ui.roomTopic.textContent !== room.topic) ui.roomTopic.textContent = room.topic;
      ui.roomTopic.hidden = !room.topic;
    }
  }

  function onLiveMessage(f) {
    const wasStuck = stick || atBottom();
    const user = typeof f.user === "string" ? f.user : "";
    const mine = user === me;
    const cid = typeof f.client_id === "string" ? f.client_id : "";
    const ownSend = !!(mine && cid && findEntry(cid));
    const added = applyMessage(f); // settles the outbox entry
    if (typists.has(user)) {
      clearTimeout(typists.get(user).timer);
      typists.delete(user);
      renderTyping();
    }
    if (mine && cid) {
      if (restored && restored.clientId === cid) {
        if (ui.input.value === restored.raw) {
          ui.input.value = "";
          autosize();
          updateCounter();
        }
        restored = null;
      }
    }
    if (added) {
      relayout();
      if (wasStuck || ownSend) scrollToBottom();
      else updateJump();
    }
    maybeReportRead();
  }

  /* An error about a chat.message; true when it needs no alert. */
  function onSendRefused(code) {
    const held = heldInFlight();
    if (held && code === "rate_limited") {
      holdEntry(held, "rate_limited"); // a resend: not the person's doing
      return true;
    }
    if (code === "too_long" || code === "rate_limited" || code === "empty") {
      const entry = held || lastSent();
      if (entry) giveBack(entry);
    }
    return false;
  }

  function onError(f) {
    const code = typeof f.code === "string" ? f.code : "";
    const id = toId(f.id);
    const rec = id ? recs.get(id) : null;
    const editing = !!(rec && rec.editor && rec.editor.saving);
    if (rec && rec.editor) unlockEditor(rec);
    // The outbox's status line says so: no alert.
    if (!id && code === "unavailable") {
      holdUnstored(f, code);
      return;
    }
    if (!id && code === "server_error" && holdUnstored(f, code)) return;
    if (id && code === "unavailable" && !editing && !deleting.has(id)) {
      readNotStored(id);
      return;
    }
    deleting.delete(id);
    if (historyLoading && (code === "rate_limited" || code === "bad_frame")) {
      clearTimeout(historyTimer);
      historyLoading = false;
      updateHistoryControls();
    }
    if (!id && onSendRefused(code)) return;
    let text = ERROR_TEXT[code];
    if (!text) text = typeof f.detail === "string" && f.detail ? f.detail : "Something went wrong.";
    showError(text);
  }

  // ------------------------------------------------------------- wiring

  ui.form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    submitComposer();
  });
  ui.input.addEventListener("keydown", (ev) => {
    if (isSendEnter(ev)) {
      ev.preventDefault();
      submitComposer();
    }
  });
  ui.input.addEventListener("input", () => {
    autosize();
    updateCounter();
    noteTyping();
    if (restored && ui.input.value !== restored.raw) restored = null;
  });
  ui.input.addEventListener("blur", () => {
    if (!ui.input.value.trim()) stopTyping();
  });

  ui.log.addEventListener("scroll", onLogScroll, { passive: true });
  ui.log.addEventListener("click", onLogClick);
  if (ui.older) ui.older.addEventListener("click", requestHistory);
  if (ui.jump) {
    ui.jump.addEventListener("click", () => {
      scrollToBottom();
      focusComposerOrLog();
      maybeReportRead();
    });
  }

  if (typeof ResizeObserver === "function") {
    new ResizeObserver(() => {
      if (stick) setScroll(ui.log.scrollHeight);
      updateJump();
      maybeReportRead();
    }).observe(ui.log);
  }

  document.addEventListener("visibilitychange", maybeReportRead);

  window.addEventListener("pagehide", () => {
    unloading = true;
    stopTyping();
    if (ws) {
      try {
        ws.close(1000);
      } catch (err) {
        /* already closing */
      }
    }
  });
  window.addEventListener("pageshow", (ev) => {
    if (ev.persisted && unloading) {
      unloading = false;
      if (!stopped) {
        if (ws) {
          ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
          ws = null;
        }
        attempt = 0;
        connect();
      }
    }
  });
  window.addEventListener("online", () => {
    if (!stopped && !ws && reconnectTimer) connect();
  });

  setInterval(() => {
    if (dayKey(new Date()) !== lastDayKey) relayout();
  }, 60000);

  window.chatClient = {
    state() {
      return {
        connection: connState,
        ready: ready,
        messages: order.slice(),
        maxId: maxSeenId,
        hasMore: hasMore,
        online: online.slice(),
        stopped: stopped,
        unsent: heldCount(),
      };
    },
  };

  ui.outbox = makeOutboxStatus();
  setComposerEnabled(false);
  updateHistoryControls();
  updateCounter();
  setStatus("connecting");
  connect();
})();
