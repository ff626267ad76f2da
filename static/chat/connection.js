/*
 * The socket: connecting, reconnecting with backoff and ?after=, keeping it
 * alive (a ping every 25 s; no frame for 60 s and it counts as dead), and
 * closing it for good. Frames go out through send() and come in through
 * onFrame (raw text); the page learns the socket is gone through onGone,
 * and what the status badge should say through onStatus: while it waits to
 * reconnect, once a second with the seconds left, until the next try or
 * reconnectNow().
 */

import { backoffDelay, RECONNECT } from "./backoff.js";
import { realTimers } from "./util.js";

export const PING_MS = 25000;
export const IDLE_MS = 60000;
export const WATCHDOG_MS = 5000;
export const CLOSED_FOR_GOOD = 4403; // after a closed frame: do not reconnect
// The user has CHAT_MAX_SOCKETS_PER_USER sockets open: reconnecting would be refused again.
export const TOO_MANY_SOCKETS = 4429;

/* The socket's address: ws: or wss: as the page, with ?after=<id> when catching up. */
export function socketUrl(loc, path, after) {
  let url = (loc.protocol === "https:" ? "wss://" : "ws://") + loc.host + path;
  if (after > 0) url += (url.indexOf("?") >= 0 ? "&" : "?") + "after=" + after;
  return url;
}

export function createConnection({
  store,
  path,
  getAfter, // the highest id to catch up from, or 0 for a fresh connect
  onFrame,
  onGone, // (code): the socket closed; called before reconnecting is planned
  onClosedForGood, // (code): the server closed it with 4403 or 4429 without a closed frame
  onStatus, // (state, secondsLeft?)
  timers = realTimers,
  random = Math.random,
  WebSocketImpl = globalThis.WebSocket,
  location = globalThis.location,
}) {
  let ws = null;
  let afterUsed = false;
  let attempt = 0;
  let reconnectTimer = null;
  let countdownTimer = null;
  let pingTimer = null;
  let watchdogTimer = null;
  let lastFrameAt = 0;

  function clearReconnect() {
    timers.clearTimeout(reconnectTimer);
    timers.clearInterval(countdownTimer);
    reconnectTimer = null;
    countdownTimer = null;
  }

  function send(frame) {
    if (!ws || ws.readyState !== WebSocketImpl.OPEN) return false;
    try {
      ws.send(JSON.stringify(frame));
      return true;
    } catch (err) {
      return false;
    }
  }

  function connect() {
    clearReconnect();
    if (store.stopped || store.unloading) return;
    onStatus("connecting");
    const after = store.helloSeen ? getAfter() : 0;
    afterUsed = after > 0;
    let sock;
    try {
      sock = new WebSocketImpl(socketUrl(location, path, afterUsed ? after : 0));
    } catch (err) {
      scheduleReconnect();
      return;
    }
    ws = sock;
    store.ready = false;
    lastFrameAt = timers.now();
    startWatchdog();
    sock.onopen = () => {
      if (ws !== sock) return;
      lastFrameAt = timers.now();
      startPing();
    };
    sock.onmessage = (ev) => {
      if (ws !== sock) return;
      lastFrameAt = timers.now();
      onFrame(ev.data);
    };
    sock.onclose = (ev) => {
      if (ws !== sock) return;
      gone(ev.code);
    };
    sock.onerror = () => {
      /* a close event follows */
    };
  }

  function detach(sock) {
    sock.onopen = sock.onmessage = sock.onclose = sock.onerror = null;
  }

  /* No frame for IDLE_MS: the socket is dead without knowing it. */
  function drop() {
    const sock = ws;
    if (!sock) return;
    detach(sock);
    try {
      sock.close(4000, "timeout");
    } catch (err) {
      /* already closing */
    }
    gone(4000);
  }

  function gone(code) {
    ws = null;
    store.ready = false;
    stopTimers();
    onGone(code);
    if (store.stopped) {
      onStatus("disconnected");
    } else if (code === CLOSED_FOR_GOOD || code === TOO_MANY_SOCKETS) {
      onClosedForGood(code);
    } else if (store.unloading) {
      onStatus("disconnected");
    } else {
      scheduleReconnect();
    }
  }

  function scheduleReconnect() {
    if (store.stopped || store.unloading) return;
    const wait = backoffDelay(attempt, RECONNECT, random);
    attempt += 1;
    const due = timers.now() + wait;
    const tick = () => {
      const left = Math.max(1, Math.ceil((due - timers.now()) / 1000));
      onStatus("reconnecting", left);
    };
    tick();
    timers.clearInterval(countdownTimer);
    countdownTimer = timers.setInterval(tick, 1000);
    timers.clearTimeout(reconnectTimer);
    reconnectTimer = timers.setTimeout(connect, wait);
  }

  function startPing() {
    timers.clearInterval(pingTimer);
    pingTimer = timers.setInterval(() => send({ type: "ping" }), PING_MS);
  }

  function startWatchdog() {
    timers.clearInterval(watchdogTimer);
    watchdogTimer = timers.setInterval(() => {
      if (timers.now() - lastFrameAt > IDLE_MS) drop();
    }, WATCHDOG_MS);
  }

  function stopTimers() {
    timers.clearInterval(pingTimer);
    timers.clearInterval(watchdogTimer);
    pingTimer = null;
    watchdogTimer = null;
  }

  return {
    connect,
    send,
    drop,
    /* Whether the current socket asked for ?after= (its hello is then a catch-up). */
    get afterUsed() {
      return afterUsed;
    },
    get attempt() {
      return attempt;
    },
    isOpen: () => !!ws,
    reconnectPending: () => !!reconnectTimer,
    /* A hello arrived: the next outage starts its backoff from the beginning. */
    connected() {
      attempt = 0;
    },
    /* Closed for good by the server: no more reconnecting. */
    stop() {
      clearReconnect();
    },
    /* The page is being left: close the socket normally. */
    close() {
      if (!ws) return;
      try {
        ws.close(1000);
      } catch (err) {
        /* already closing */
      }
    },
    /* Back from the back/forward cache: forget the old socket and connect afresh. */
    resume() {
      if (ws) {
        detach(ws);
        ws = null;
      }
      attempt = 0;
      connect();
    },
    /* The browser says the network is back: skip the rest of the wait. */
    networkBack() {
      if (!store.stopped && !ws && reconnectTimer) connect();
    },
    /* "Reconnect now": cancel the wait and connect at once; false if no wait was running. */
    reconnectNow() {
      if (store.stopped || store.unloading || ws || !reconnectTimer) return false;
      connect();
      return true;
    },
  };
}
