/*
 * The composer: the "Message" textbox and the Send button. Enter sends
 * (Shift+Enter makes a new line), the box grows with its text, a counter
 * appears near the length limit, and the text of a message the server
 * refused for good comes back into an empty box. It stays usable while the
 * page reconnects (the outbox holds what is sent) and is disabled only
 * before the first hello and once the room is closed to this page.
 */

import { charCount, isSendEnter } from "./util.js";

const MAX_HEIGHT_PX = 200;

/* The text a message is sent with (trailing whitespace trimmed), or "" if there is none. */
export function messageText(raw) {
  const text = raw.replace(/\s+$/, "");
  return text.trim() ? text : "";
}

/* The counter's text for n characters of a limit of max, or "" while it stays hidden. */
export function counterText(n, max) {
  if (n < Math.max(1, Math.floor(max * 0.9))) return "";
  return n + " / " + max + (n > max ? " characters: too long" : " characters");
}

/*
 * ui: {form, input, send, counter}. submit(text, raw) -> an outbox entry or
 * null; typing: presence.js createTypingNotifier; afterSend: the message
 * left the composer.
 */
export function createComposer({ store, ui, submit, typing, showError, afterSend = () => {} }) {
  const max = store.config.maxChars;
  let restored = null; // an outbox entry whose text was put back into the composer
  let refocus = false;

  function autosize() {
    const ta = ui.input;
    ta.style.height = "auto";
    ta.style.height = Math.min(ta.scrollHeight + 2, MAX_HEIGHT_PX) + "px";
  }

  function updateCounter() {
    const n = charCount(ui.input.value);
    const over = n > max;
    if (over) ui.input.setAttribute("aria-invalid", "true");
    else ui.input.removeAttribute("aria-invalid");
    if (!ui.counter) return;
    const text = counterText(n, max);
    if (text) {
      ui.counter.hidden = false;
      ui.counter.textContent = text;
      ui.counter.classList.toggle("is-over", over);
    } else if (!ui.counter.hidden) {
      ui.counter.hidden = true;
      ui.counter.textContent = "";
    }
  }

  function setText(value) {
    ui.input.value = value;
    autosize();
    updateCounter();
  }

  function send() {
    const raw = ui.input.value;
    const text = messageText(raw);
    if (!text) {
      ui.input.focus();
      return;
    }
    const n = charCount(text);
    if (n > max) {
      showError(
        "That message is too long: " + n + " characters, the limit is " + max + ". Shorten it and try again."
      );
      ui.input.focus();
      return;
    }
    // Not store.ready: while reconnecting the outbox holds it until the next hello.
    if (store.stopped) return;
    if (!submit(text, raw)) return;
    restored = null;
    setText("");
    typing.stop();
    ui.input.focus();
    afterSend();
  }

  ui.form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    send();
  });
  ui.input.addEventListener("keydown", (ev) => {
    if (isSendEnter(ev)) {
      ev.preventDefault();
      send();
    }
  });
  ui.input.addEventListener("input", () => {
    autosize();
    updateCounter();
    typing.input(ui.input.value);
    if (restored && ui.input.value !== restored.raw) restored = null;
  });
  ui.input.addEventListener("blur", () => {
    if (!ui.input.value.trim()) typing.stop();
  });

  return {
    updateCounter,

    setEnabled(on) {
      const doc = ui.input.ownerDocument;
      if (!on && doc.activeElement === ui.input) refocus = true;
      ui.input.disabled = !on;
      ui.send.disabled = !on;
      if (on && refocus) {
        refocus = false;
        ui.input.focus();
      }
    },

    /* The server refused this outbox entry for good: its text comes back if the box is empty. */
    giveBack(entry) {
      if (ui.input.value.trim()) return;
      setText(entry.raw);
      restored = entry;
    },

    /* One's own message with this client_id arrived live: a given-back copy of it is not needed. */
    echoed(clientId) {
      if (!restored || restored.clientId !== clientId) return;
      if (ui.input.value === restored.raw) setText("");
      restored = null;
    },
  };
}
