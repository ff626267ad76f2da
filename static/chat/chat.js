/*
 * The chat client for the room page (templates/chatrooms/room_detail.html),
 * loaded as an ES module: this file wires the modules beside it and handles
 * each server frame (docs/protocol.md, docs/client.md).
 *
 * Plain ES2020 modules, no build step, no libraries; one WebSocket per page.
 * Every string that comes from the server or from a person reaches the page
 * through textContent or createTextNode only.
 */

import { createComposer } from "./composer.js";
import { createConnection, TOO_MANY_SOCKETS } from "./connection.js";
import { createEditor } from "./editor.js";
import { parseFrame } from "./frames.js";
import { createHistoryLoader } from "./history.js";
import { createMessageList, unreadAfterFor } from "./messages.js";
import { createNotices, errorText } from "./notices.js";
import { createOutbox } from "./outbox.js";
import { createPresence, createTypingNotifier } from "./presence.js";
import { createReadMarker } from "./read.js";
import { createLogView } from "./render.js";
import { createRoomHeader } from "./room.js";
import { createStore, readConfig, rememberName, rememberNames } from "./store.js";
import { clientIdMaker } from "./util.js";

function start() {
  const configEl = document.getElementById("chat-config");
  if (!configEl) return;
  const config = readConfig(configEl.textContent);
  if (!config) return;

  const $ = (id) => document.getElementById(id);
  const ui = {
    root: $("chat-root"),
    status: $("chat-status"),
    reconnect: $("chat-reconnect"),
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
    onlineCaption: $("chat-online-caption"),
  };
  if (!ui.log || !ui.form || !ui.input || !ui.send) return;

  const store = createStore(config, {
    canModerate: !!(ui.root && ui.root.dataset.canModerate === "true"),
  });
  const list = createMessageList(store);
  let unreadAfter = null; // the "New messages" divider goes after this id

  // The modules. Their callbacks run only once the page is going, when
  // every one of them exists.
  const view = createLogView({
    store,
    ui,
    hasMessages: () => list.size > 0,
    onNearTop: () => history.request(),
    onMoved: () => read.maybeReport(),
  });
  const notices = createNotices({
    store,
    ui,
    lobbyUrl: config.lobbyUrl,
    onLayout: () => view.keepBottomIfStuck(),
    onDismissFocus: () => view.focusComposerOrLog(),
  });
  const header = createRoomHeader({ ui, doc: document, slug: config.slug });
  const connection = createConnection({
    store,
    path: config.wsPath,
    getAfter: () => list.maxSeenId,
    onFrame: handleFrame,
    onGone: socketGone,
    onClosedForGood: (code) => stop(code === TOO_MANY_SOCKETS ? "too_many_sockets" : ""),
    onStatus: (state, seconds) => notices.setStatus(state, seconds),
  });
  const send = (frame) => connection.send(frame);
  const outbox = createOutbox({ store, send, newClientId: clientIdMaker(), onChange: renderOutbox });
  const presence = createPresence({ store, ui, doc: document });
  const typing = createTypingNotifier({ store, send });
  const history = createHistoryLoader({ store, list, send, onChange: updateHistoryControls });
  const read = createReadMarker({
    store,
    lastId: () => list.lastId(),
    isVisible: (id) => view.isVisible(id),
    pageVisible: () => document.visibilityState === "visible",
    send,
  });
  const editor = createEditor({
    store,
    ui,
    getRecord: (id) => list.get(id),
    getView: (id) => view.view(id),
    send,
    showError: (text) => notices.showError(text),
    errorText: (code) => errorText(code, "", config.maxChars),
    onLayout: () => view.keepBottomIfStuck(),
    focusFallback: () => view.focusComposerOrLog(),
  });
  const composer = createComposer({
    store,
    ui,
    submit: (text, raw) => outbox.submit(text, raw),
    typing,
    showError: (text) => notices.showError(text),
    afterSend() {
      view.stickToBottom();
      if (unreadAfter !== null) {
        unreadAfter = null;
        relayout();
      }
      if (notices.hasError()) notices.clearError();
    },
  });

  // ------------------------------------------------------------ helpers

  function relayout() {
    view.relayout(list.layout(unreadAfter));
  }

  function updateHistoryControls() {
    view.updateHistoryControls({
      helloSeen: store.helloSeen,
      hasMore: list.hasMore,
      loading: history.loading,
      ready: store.ready,
    });
  }

  function renderOutbox() {
    view.syncPending(outbox.held());
    notices.setOutboxText(outbox.statusText());
  }

  /* Shows a change of the message list (messages.js); true if a message was added. */
  function show(change) {
    if (change.deleted) editor.deleteAnswered(change.deleted);
    if (change.kind === "remove") editor.removed(change.rec.id);
    if (change.kind === "clear") editor.reset();
    const added = view.apply(change);
    if (change.edit) editor.edited(change.rec.id);
    if (change.echo) outbox.settle(change.echo); // stored: out of the outbox
    return added;
  }

  // ------------------------------------------------------------ frames

  function handleFrame(data) {
    const f = parseFrame(data);
    if (!f) return;
    switch (f.type) {
      case "hello":
        onHello(f);
        break;
      case "chat.message":
        onLiveMessage(f);
        break;
      case "chat.edit":
        show(list.applyEdit(f));
        view.keepBottomIfStuck();
        break;
      case "chat.delete":
        show(list.applyDelete(f.id));
        relayout();
        view.keepBottomIfStuck();
        break;
      case "presence":
        // join / leave is informational: the full list is the truth.
        rememberNames(store, f.names);
        presence.setOnline(f.online);
        break;
      case "typing":
        presence.onTyping(f);
        break;
      case "history":
        onHistory(f);
        break;
      case "error":
        onError(f);
        break;
      case "closed":
        stop(f.reason);
        break;
      case "room":
        header.update(f.room);
        break;
      default:
        break; // pong, and anything newer than this client
    }
    if (store.namesDirty) {
      store.namesDirty = false;
      presence.renderOnline();
    }
  }

  function onHello(f) {
    const first = !store.helloSeen;
    if (f.user) {
      store.me = f.user.username;
      rememberName(store, store.me, f.user.display_name);
    }
    if (f.room) header.update(f.room);
    read.hello(f.last_read, first);
    if (first) unreadAfter = unreadAfterFor(f.messages, f.last_read, store.me);

    view.setBusy(true);
    const { catchup, changes } = list.hello(f, connection.afterUsed);
    let added = false;
    changes.forEach((change) => {
      if (show(change)) added = true;
    });
    f.messages.forEach((item) => {
      if (item.type === "chat.message" && item.user) presence.stopped(item.user, false);
    });
    relayout();
    view.setBusy(false);

    store.helloSeen = true;
    store.ready = true;
    connection.connected();
    history.done();
    rememberNames(store, f.names);
    presence.setOnline(f.online);
    presence.renderTyping();
    updateHistoryControls();
    notices.setStatus("connected");
    composer.setEnabled(true);

    if (!catchup) {
      if (first) view.scrollToDividerOrBottom();
      else view.scrollToBottom();
    } else if (added) {
      view.keepBottomIfStuck();
    }
    // Sends that crossed the reconnect and did not come back in it, and
    // messages held before: again, in order, with their own client_ids.
    outbox.helloReceived();
    view.updateJump();
    read.maybeReport();
  }

  function onLiveMessage(f) {
    const wasStuck = view.stuck || view.atBottom();
    const mine = f.user === store.me;
    const ownSend = !!(mine && f.client_id && outbox.find(f.client_id));
    const added = show(list.addMessage(f)); // settles the outbox entry
    presence.stopped(f.user);
    if (mine && f.client_id) composer.echoed(f.client_id);
    if (added) {
      relayout();
      if (wasStuck || ownSend) view.scrollToBottom();
      else view.updateJump();
    }
    read.maybeReport();
  }

  function onHistory(f) {
    history.done();
    view.keepPlace(() => {
      view.setBusy(true);
      list.history(f).forEach(show);
      relayout();
      view.setBusy(false);
      updateHistoryControls();
    });
  }

  function onError(f) {
    const { code, id } = f;
    const editing = !!id && editor.isSaving(id);
    if (id) editor.unlock(id);
    // The outbox's status line says so: no alert.
    if (!id && (code === "unavailable" || code === "server_error") && outbox.unstored(code, f.client_id)) return;
    if (id && code === "unavailable" && !editing && !editor.isDeleting(id)) {
      read.notStored(id);
      return;
    }
    if (id) editor.deleteAnswered(id);
    if (history.loading && (code === "rate_limited" || code === "bad_frame")) {
      history.done();
      updateHistoryControls();
    }
    if (!id) {
      const refused = outbox.refused(code);
      if (refused.giveBack) composer.giveBack(refused.giveBack);
      if (refused.quiet) return;
    }
    notices.showError(errorText(code, f.detail, config.maxChars));
  }

  /* The socket closed (connection.js plans what comes next). */
  function socketGone() {
    typing.reset();
    presence.clear();
    history.done();
    read.reset();
    editor.unlockAll();
    outbox.socketGone();
    presence.renderOnline(); // unknown until the next hello; the composer stays usable
    updateHistoryControls();
  }

  /* The server closed the room to this page for good. */
  function stop(reason) {
    store.stopped = true;
    connection.stop();
    outbox.stop();
    composer.setEnabled(false);
    presence.renderOnline(); // unknown from now on
    notices.setStatus("disconnected");
    notices.showClosed(reason);
  }

  // ------------------------------------------------------------ wiring

  ui.log.addEventListener("scroll", view.onScroll, { passive: true });
  ui.log.addEventListener("click", (ev) => editor.onLogClick(ev));
  if (ui.older) ui.older.addEventListener("click", () => history.request());
  if (ui.jump) {
    ui.jump.addEventListener("click", () => {
      view.scrollToBottom();
      view.focusComposerOrLog();
      read.maybeReport();
    });
  }

  if (typeof ResizeObserver === "function") {
    new ResizeObserver(() => {
      view.resized();
      read.maybeReport();
    }).observe(ui.log);
  }

  document.addEventListener("visibilitychange", () => read.maybeReport());

  window.addEventListener("pagehide", () => {
    store.unloading = true;
    typing.stop();
    connection.close();
  });
  window.addEventListener("pageshow", (ev) => {
    if (ev.persisted && store.unloading) {
      store.unloading = false;
      if (!store.stopped) connection.resume();
    }
  });
  window.addEventListener("online", () => connection.networkBack());
  if (ui.reconnect) {
    ui.reconnect.addEventListener("click", () => {
      // The button hides as the socket opens: keep focus on the page.
      if (connection.reconnectNow()) view.focusComposerOrLog();
    });
  }

  setInterval(() => {
    if (view.dayChanged()) relayout();
  }, 60000);

  window.chatClient = {
    state() {
      return {
        connection: store.connection,
        ready: store.ready,
        messages: list.ids(),
        maxId: list.maxSeenId,
        hasMore: list.hasMore,
        online: store.online.slice(),
        stopped: store.stopped,
        unsent: outbox.heldCount(),
      };
    },
  };

  notices.makeOutboxLine();
  composer.setEnabled(false);
  updateHistoryControls();
  composer.updateCounter();
  presence.renderOnline();
  notices.setStatus("connecting");
  connection.connect();
}

start();
