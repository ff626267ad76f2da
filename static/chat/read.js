/*
 * The read marker: once the newest message has been in view on a visible
 * page for READ_DEBOUNCE_MS, {type: "read", id} tells the server; it only
 * ever moves forward. A marker the server could not store is reported again
 * later, quietly.
 */

import { realTimers } from "./util.js";

export const READ_DEBOUNCE_MS = 1000;

/*
 * lastId(): the newest message's id (0: none); isVisible(id): its article is
 * in view; pageVisible(): the tab is shown.
 */
export function createReadMarker({ store, lastId, isVisible, pageVisible, send, timers = realTimers }) {
  let lastReadSent = 0;
  let timer = null;

  function canReport() {
    if (!store.ready || !pageVisible()) return false;
    const id = lastId();
    return id > 0 && id > lastReadSent && isVisible(id);
  }

  return {
    get lastReadSent() {
      return lastReadSent;
    },
    /* hello's last_read: on the first hello it is the marker; later it only moves it forward. */
    hello(lastRead, first) {
      lastReadSent = first ? lastRead : Math.max(lastReadSent, lastRead);
    },
    maybeReport() {
      if (timer || !canReport()) return;
      timer = timers.setTimeout(() => {
        timer = null;
        if (!canReport()) return;
        const id = lastId();
        if (send({ type: "read", id })) lastReadSent = id;
      }, READ_DEBOUNCE_MS);
    },
    /* An unavailable error about a read frame: the server moves the marker forward only. */
    notStored(id) {
      if (lastReadSent === id) lastReadSent = 0;
    },
    reset() {
      timers.clearTimeout(timer);
      timer = null;
    },
  };
}
