/*
 * Older messages on demand: a history request ({type: "history", before:
 * the lowest id shown, limit}) when the reader scrolls to the top or presses
 * "Load older messages", one at a time; no answer within HISTORY_TIMEOUT_MS
 * and another may go.
 */

import { realTimers } from "./util.js";

export const HISTORY_TIMEOUT_MS = 15000;

/* The request for the page before minSeenId (0: the latest page). */
export function historyFrame(minSeenId, limit) {
  const frame = { type: "history", limit };
  if (minSeenId) frame.before = minSeenId;
  return frame;
}

/* list: messages.js; onChange: the loading state changed (redraw the controls). */
export function createHistoryLoader({ store, list, send, timers = realTimers, onChange = () => {} }) {
  let loading = false;
  let timer = null;

  function done() {
    timers.clearTimeout(timer);
    timer = null;
    loading = false;
  }

  return {
    get loading() {
      return loading;
    },
    request() {
      if (!list.hasMore || loading || !store.ready) return false;
      if (!send(historyFrame(list.minSeenId, store.config.historyPage))) return false;
      loading = true;
      timers.clearTimeout(timer);
      timer = timers.setTimeout(() => {
        timer = null;
        loading = false;
        onChange();
      }, HISTORY_TIMEOUT_MS);
      onChange();
      return true;
    },
    /* The answer arrived, was refused (rate_limited, bad_frame), or the socket is gone. */
    done,
  };
}
