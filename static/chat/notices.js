/*
 * What the page says about itself: the connection badge (the page's one
 * role="status"), alerts (a dismissible warning for a refused action; the
 * closing notice when the server closes the room to this page) and the
 * outbox's status line (#chat-outbox, a polite live region).
 */

export const STATUS = {
  connecting: { text: "Connecting…", cls: "text-bg-secondary" },
  connected: { text: "Connected", cls: "text-bg-success" },
  reconnecting: { text: "Reconnecting…", cls: "text-bg-warning" },
  disconnected: { text: "Disconnected", cls: "text-bg-danger" },
};
const STATUS_CLASSES = ["text-bg-secondary", "text-bg-success", "text-bg-warning", "text-bg-danger"];

export const CLOSED_TEXT = {
  kicked: "You have been removed from this room.",
  banned: "You have been banned from this room.",
  deactivated: "Your account has been deactivated.",
  archived: "This room has been archived. It is read-only now.",
  signed_out: "You have signed out. Sign in again to keep chatting.",
  too_many_sockets: "Too many open tabs or windows: close one and reload.",
};

/* The text of an error frame's code, for an alert. */
export function errorText(code, detail, maxChars) {
  const text = {
    rate_limited: "You are sending messages too fast. Wait a moment and try again.",
    too_long: "That message is too long: the limit is " + maxChars + " characters.",
    empty: "You can't send an empty message.",
    forbidden: "You are not allowed to do that.",
    not_found: "That message no longer exists.",
    bad_frame: "The server could not understand that request.",
    bad_json: "The server could not understand that request.",
    unknown_type: "The server could not understand that request.",
  }[code];
  if (text) return text;
  return typeof detail === "string" && detail ? detail : "Something went wrong.";
}

/* The badge's text for a connection state (seconds: the reconnect countdown). */
export function statusText(state, seconds) {
  const s = STATUS[state] || STATUS.disconnected;
  if (state === "reconnecting" && typeof seconds === "number") return "Reconnecting" + waitText(seconds) + "…";
  return s.text;
}

/* The countdown part of the badge: " in 8 s". */
export function waitText(seconds) {
  return " in " + seconds + " s";
}

/*
 * ui: {status, reconnect, alerts, form}; lobbyUrl: the closing notice's way
 * out; onDismissFocus: where focus goes when a focused alert is dismissed.
 */
export function createNotices({
  store,
  ui,
  lobbyUrl = "",
  onLayout = () => {},
  onDismissFocus = () => {},
  doc = globalThis.document,
}) {
  let errorAlert = null;
  let outboxLine = null;

  function el(tag, className, text) {
    const node = doc.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

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
        const hadFocus = box.contains(doc.activeElement);
        box.remove();
        if (errorAlert === box) errorAlert = null;
        if (hadFocus) onDismissFocus();
      });
      box.appendChild(close);
    }
    return box;
  }

  function clearError() {
    if (errorAlert) {
      errorAlert.remove();
      errorAlert = null;
    }
  }

  let shownPhase = ""; // the badge's phase as last drawn: "reconnecting" with or without a countdown
  let waitEl = null; // the countdown inside the badge

  return {
    /*
     * The badge is a live region (role="status"): a screen reader hears a
     * change of phase, not every tick of the countdown, whose seconds are
     * in an aria-hidden span (out of the accessibility tree, so changing it
     * announces nothing); the "Reconnect now" button shows while it runs.
     */
    setStatus(state, seconds) {
      store.connection = state;
      const waiting = state === "reconnecting" && typeof seconds === "number";
      if (ui.reconnect) ui.reconnect.hidden = !waiting;
      if (!ui.status) return;
      const s = STATUS[state] || STATUS.disconnected;
      const phase = state + (waiting ? ":wait" : "");
      if (phase !== shownPhase || ui.status.textContent !== statusText(state, seconds)) {
        if (waiting && phase === shownPhase && waitEl) {
          waitEl.textContent = waitText(seconds);
        } else if (waiting) {
          ui.status.textContent = "";
          waitEl = el("span", "chat-status-wait", waitText(seconds));
          waitEl.setAttribute("aria-hidden", "true");
          ui.status.append(doc.createTextNode("Reconnecting"), waitEl, doc.createTextNode("…"));
        } else {
          waitEl = null;
          ui.status.textContent = s.text;
        }
        shownPhase = phase;
      }
      STATUS_CLASSES.forEach((c) => ui.status.classList.toggle(c, c === s.cls));
      ui.status.dataset.state = state;
    },

    showError(text) {
      if (!ui.alerts) return;
      clearError();
      errorAlert = makeAlert(text, "warning", true);
      ui.alerts.appendChild(errorAlert);
      onLayout();
    },

    clearError,
    hasError: () => !!errorAlert,

    showClosed(reason) {
      if (!ui.alerts) return;
      clearError();
      const text = CLOSED_TEXT[reason] || "You no longer have access to this room.";
      const box = makeAlert(text, "danger", false);
      box.classList.add("chat-closed");
      if (lobbyUrl) {
        box.appendChild(doc.createTextNode(" "));
        const link = el("a", "alert-link", "Back to the rooms");
        link.href = lobbyUrl;
        box.appendChild(link);
      }
      ui.alerts.textContent = "";
      ui.alerts.appendChild(box);
      onLayout();
    },

    /*
     * The outbox's status line. Not role="status": the connection badge is
     * the page's one status. A polite live region, empty (and taking no
     * room) while nothing is held.
     */
    makeOutboxLine() {
      const box = el("div", "chat-outbox small px-3"); // its bottom padding: chat.css, only with text
      box.id = "chat-outbox";
      box.setAttribute("aria-live", "polite");
      box.setAttribute("aria-atomic", "true");
      ui.form.parentNode.insertBefore(box, ui.alerts || ui.form);
      outboxLine = box;
      return box;
    },

    setOutboxText(text) {
      if (outboxLine && outboxLine.textContent !== text) outboxLine.textContent = text;
    },
  };
}
