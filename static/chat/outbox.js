/*
 * The outbox: own messages sent and not echoed yet, oldest first.
 *
 * An entry is {clientId, text, raw, sent, held}. `sent`: a frame of it is
 * out on the current socket. `held`: it is shown at the end of the log as
 * "Not sent yet", because the server could not store it (error
 * `unavailable`), failed on it (`server_error`), no answer came within
 * SEND_TIMEOUT_MS, the socket closed first, or it was written while the
 * socket was down (the composer stays usable). Held messages are sent again
 * one at a time, in order, with their own client_id (the server stores a
 * client_id once), after a backoff (backoff.js RETRY) while the socket is
 * open and at once after a hello; new sends queue behind them. An entry
 * leaves the outbox when its echo arrives (live, in a hello or in history),
 * or when the server refuses it for good (`too_long`, `empty`,
 * `rate_limited` on a first send): its text then goes back to the composer.
 *
 * No DOM: `onChange` tells the page to redraw the held messages and the
 * status line (statusText()).
 */

import { backoffDelay, RETRY } from "./backoff.js";
import { realTimers } from "./util.js";

export const SEND_TIMEOUT_MS = 10000; // no echo and no error by then: hold it and retry

/* Why the outbox holds messages back, for its status line. */
export const HOLD_TEXT = {
  unavailable: "Can't store messages right now",
  timeout: "No answer from the server",
  rate_limited: "Too many messages at once",
  server_error: "The server failed to take a message",
};

export function createOutbox({
  store,
  send,
  newClientId,
  timers = realTimers,
  random = Math.random,
  onChange = () => {},
}) {
  let entries = [];
  let retryTimer = null;
  let retryTicker = null;
  let retryDue = 0;
  let retryAttempt = 0;
  let holdReason = ""; // a HOLD_TEXT key

  const find = (clientId) => entries.find((e) => e.clientId === clientId) || null;
  const held = () => entries.filter((e) => e.held);
  const heldInFlight = () => entries.find((e) => e.held && e.sent) || null;

  function lastSent() {
    for (let i = entries.length - 1; i >= 0; i -= 1) {
      if (entries[i].sent && !entries[i].held) return entries[i];
    }
    return null;
  }

  function sendEntry(entry) {
    if (!send({ type: "chat.message", message: entry.text, client_id: entry.clientId })) return false;
    entry.sent = true;
    timers.clearTimeout(entry.timer);
    entry.timer = timers.setTimeout(() => {
      entry.timer = null;
      if (store.ready && entry.sent && entries.includes(entry)) hold(entry, "timeout");
    }, SEND_TIMEOUT_MS);
    return true;
  }

  /* Not stored (or not known to be): show it as not sent yet, and retry. */
  function hold(entry, reason) {
    timers.clearTimeout(entry.timer);
    entry.timer = null;
    entry.sent = false;
    entry.held = true;
    if (reason) holdReason = reason;
    if (store.ready && !retryTimer && !heldInFlight()) scheduleRetry();
    onChange();
  }

  function scheduleRetry() {
    clearRetry();
    const wait = backoffDelay(retryAttempt, RETRY, random);
    retryAttempt += 1;
    retryDue = timers.now() + wait;
    retryTimer = timers.setTimeout(retryNow, wait);
    retryTicker = timers.setInterval(onChange, 1000); // the countdown
  }

  function clearRetry() {
    timers.clearTimeout(retryTimer);
    timers.clearInterval(retryTicker);
    retryTimer = null;
    retryTicker = null;
  }

  function retryNow() {
    clearRetry();
    flush();
    onChange();
  }

  /* Send the oldest held message, unless one is out already or a retry is due. */
  function flush() {
    if (!store.ready || store.stopped || retryTimer || heldInFlight()) return;
    const head = entries.find((e) => e.held);
    if (head) sendEntry(head);
  }

  function remove(entry) {
    const idx = entries.indexOf(entry);
    if (idx >= 0) entries.splice(idx, 1);
    timers.clearTimeout(entry.timer);
    entry.timer = null;
    entry.sent = false;
    entry.held = false;
    if (!held().length) {
      clearRetry();
      retryAttempt = 0;
      holdReason = "";
    }
  }

  /* Refused for good: out of the outbox; the caller gives its text back. */
  function giveBack(entry) {
    remove(entry);
    flush();
    onChange();
    return entry;
  }

  /* unavailable / server_error about a chat.message: hold it. True if it was one of ours. */
  function holdUnstored(clientId, code) {
    let entry = clientId ? find(clientId) : null;
    if (!clientId && code === "unavailable") entry = entries.find((e) => e.sent) || null;
    if (entry) hold(entry, code);
    return !!entry;
  }

  return {
    /* Held entries, in order (what the log shows as not sent yet). */
    held,
    heldCount: () => held().length,
    find,
    entries: () => entries.slice(),
    retryPending: () => !!retryTimer,

    /*
     * A new message from the composer; the entry, or null once the room is
     * closed to this page. While the socket is down (or messages are held)
     * it is held behind the others and goes after the next hello, in order.
     */
    submit(text, raw) {
      if (store.stopped) return null;
      const entry = { clientId: newClientId(), text, raw, sent: false, held: false, timer: null };
      entries.push(entry);
      if (held().length || !store.ready || !sendEntry(entry)) {
        hold(entry, "");
        flush();
        onChange();
      }
      return entry;
    },

    /* Its echo arrived: it is stored. The entry, or null if it was not in the outbox. */
    settle(clientId) {
      const entry = clientId ? find(clientId) : null;
      if (!entry) return null;
      remove(entry);
      if (held().length) {
        // Storing works again: the next held message goes now.
        retryAttempt = 0;
        clearRetry();
        flush();
      }
      onChange();
      return entry;
    },

    /*
     * An `unavailable` or `server_error` error frame without a message id
     * (its client_id, "" if none). True when the outbox took care of it: its
     * status line says so, no alert. `unavailable` always is (nothing was
     * stored); `server_error` is when it names one of ours.
     */
    unstored(code, clientId) {
      const ours = holdUnstored(clientId, code);
      return code === "unavailable" || (code === "server_error" && ours);
    },

    /*
     * Any other error frame without a message id. Returns {quiet, giveBack}:
     * quiet when the outbox took care of it (a resend that was rate limited
     * stays held, no alert); giveBack: the entry refused for good
     * (too_long, empty, rate_limited), whose text goes back to the composer.
     */
    refused(code) {
      const inFlight = heldInFlight();
      if (inFlight && code === "rate_limited") {
        hold(inFlight, "rate_limited"); // a resend: not the person's doing
        return { quiet: true, giveBack: null };
      }
      if (code === "too_long" || code === "rate_limited" || code === "empty") {
        const entry = inFlight || lastSent();
        if (entry) return { quiet: false, giveBack: giveBack(entry) };
      }
      return { quiet: false, giveBack: null };
    },

    /* The socket is gone: what was out on it may or may not be stored. */
    socketGone() {
      clearRetry();
      entries.filter((e) => e.sent).forEach((entry) => hold(entry, ""));
      onChange();
    },

    /* A hello on a new socket: sends that crossed the reconnect and held ones go again, in order. */
    helloReceived() {
      retryAttempt = 0;
      flush();
      onChange();
    },

    /* The room is closed to this page for good. */
    stop() {
      clearRetry();
      onChange();
    },

    /* The status line under the log ("" when nothing is held). */
    statusText(now = timers.now()) {
      const n = held().length;
      const why = HOLD_TEXT[holdReason];
      if (!n) return "";
      if (store.stopped) return n === 1 ? "1 message was not sent." : n + " messages were not sent.";
      if (!store.ready) {
        return n === 1
          ? "1 message not sent yet; it goes when the connection is back."
          : n + " messages not sent yet; they go when the connection is back.";
      }
      if (retryTimer) {
        const left = Math.max(1, Math.ceil((retryDue - now) / 1000));
        return (why || "Not sent yet") + "; retrying in " + left + " s";
      }
      return (why || "Not sent yet") + "; sending again…";
    },
  };
}
