/*
 * Editing and deleting messages in the log: the Edit and Delete buttons of
 * one's own messages (Delete on every message for owners and moderators),
 * the inline editor (Enter saves, Escape cancels) and the chat.edit /
 * chat.delete frames they send. On a touch screen, with no hover, a tap on a
 * message selects it (class is-selected: chat.css shows that one message's
 * actions); another tap on it, or on a message without actions, unselects.
 */

import { charCount, isSendEnter, realTimers } from "./util.js";

export const SAVE_TIMEOUT_MS = 10000; // no answer by then: the editor unlocks

// A click on one of these is the control's own business, not a selection.
const CONTROLS = new Set(["A", "BUTTON", "INPUT", "LABEL", "SELECT", "TEXTAREA"]);

/* Where a click in the log landed: its message article and the control it hit (or null). */
export function clickTarget(target, log) {
  let control = null;
  for (let n = target; n && n !== log; n = n.parentNode) {
    if (!control && CONTROLS.has(n.tagName)) control = n;
    if (n.tagName === "ARTICLE") return { article: n, control };
  }
  return { article: null, control };
}

/*
 * getRecord(id) / getView(id): messages.js record and render.js view;
 * send(frame) -> bool; showError(text); onLayout: the log's height changed;
 * focusFallback: where focus goes when the focused message is gone.
 */
export function createEditor({
  store,
  ui,
  getRecord,
  getView,
  send,
  showError,
  errorText,
  onLayout = () => {},
  focusFallback = () => {},
  confirm = (text) => globalThis.confirm(text),
  timers = realTimers,
}) {
  const doc = globalThis.document;
  const editors = new Map(); // message id -> {form, ta, save, cancel, saving, timer}
  const deleting = new Set(); // ids of chat.delete frames sent and not answered yet
  let selected = null; // the article whose actions a touch screen shows

  function el(tag, className, text) {
    const node = doc.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function start(id) {
    const rec = getRecord(id);
    const v = getView(id);
    if (!rec || !v || rec.user !== store.me || editors.has(id)) return;
    const form = el("form", "chat-edit");
    const taId = "chat-edit-" + id;
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

    editors.set(id, { form, ta, save, cancel, saving: false, timer: null });
    v.bodyEl.hidden = true;
    v.el.classList.add("is-editing");
    v.el.insertBefore(form, v.bodyEl.nextSibling);

    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      saveEdit(id);
    });
    cancel.addEventListener("click", () => close(id, true));
    ta.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape") {
        ev.preventDefault();
        ev.stopPropagation();
        close(id, true);
      } else if (isSendEnter(ev)) {
        ev.preventDefault();
        saveEdit(id);
      }
    });
    ta.focus();
    ta.setSelectionRange(ta.value.length, ta.value.length);
    onLayout();
  }

  function saveEdit(id) {
    const ed = editors.get(id);
    const rec = getRecord(id);
    if (!ed || ed.saving || !rec) return;
    const text = ed.ta.value.replace(/\s+$/, "");
    if (!text.trim()) {
      showError(errorText("empty") + " To remove a message, delete it.");
      return;
    }
    if (charCount(text) > store.config.maxChars) {
      showError(errorText("too_long"));
      return;
    }
    if (text === rec.message) {
      close(id, true);
      return;
    }
    if (!send({ type: "chat.edit", id, message: text })) {
      showError("You are offline. Your edit was not sent.");
      return;
    }
    ed.saving = true;
    ed.ta.readOnly = true;
    ed.save.disabled = true;
    ed.timer = timers.setTimeout(() => unlock(id), SAVE_TIMEOUT_MS);
  }

  function unlock(id) {
    const ed = editors.get(id);
    if (!ed) return;
    timers.clearTimeout(ed.timer);
    ed.saving = false;
    ed.ta.readOnly = false;
    ed.save.disabled = false;
  }

  function close(id, restoreFocus) {
    const ed = editors.get(id);
    if (!ed) return;
    timers.clearTimeout(ed.timer);
    const hadFocus = ed.form.contains(doc.activeElement);
    ed.form.remove();
    editors.delete(id);
    const v = getView(id);
    if (!v) return;
    v.bodyEl.hidden = false;
    v.el.classList.remove("is-editing");
    if (restoreFocus && hadFocus) {
      const btn = v.el.querySelector('button[data-action="edit"]');
      if (btn) btn.focus();
      else focusFallback();
    }
  }

  /* Selects `art` (null: none); selecting the selected one unselects it. */
  function select(art) {
    const next = art === selected ? null : art;
    if (selected) selected.classList.remove("is-selected");
    // A button of the message left behind keeps focus after its tap (Delete,
    // then Cancel in the dialog): its actions would stay shown beside these.
    const focused = doc.activeElement;
    if (selected && focused && selected !== next && selected.contains(focused) && focused.blur) {
      focused.blur();
    }
    selected = next;
    if (selected) selected.classList.add("is-selected");
  }

  function unselectIf(id) {
    if (selected && Number(selected.dataset.id) === id) select(null);
  }

  function isSaving(id) {
    const ed = editors.get(id);
    return !!(ed && ed.saving);
  }

  function confirmDelete(id) {
    if (!getRecord(id)) return;
    if (!confirm("Delete this message? This cannot be undone.")) return;
    if (!send({ type: "chat.delete", id })) {
      showError("You are offline. The message was not deleted.");
    } else {
      deleting.add(id);
    }
  }

  return {
    start,
    close,
    unlock,
    isOpen: (id) => editors.has(id),
    isSaving,
    isDeleting: (id) => deleting.has(id),
    deleteAnswered: (id) => deleting.delete(id),

    /* An edit of this message arrived: a saving editor has done its job. */
    edited(id) {
      if (isSaving(id)) close(id, true);
    },

    /* The message is gone (deleted, or the list starts again). */
    removed(id) {
      deleting.delete(id);
      close(id, false);
      unselectIf(id);
    },

    /* The list starts again: editors go with their articles. */
    reset() {
      editors.forEach((ed) => timers.clearTimeout(ed.timer));
      editors.clear();
      select(null);
    },

    /* The message selected by a tap (its id), or 0. */
    selectedId: () => (selected ? Number(selected.dataset.id) || 0 : 0),

    /* The socket is gone: saving editors can be saved again. */
    unlockAll() {
      Array.from(editors.keys()).forEach(unlock);
    },

    /* A click in the log: the Edit and Delete buttons; elsewhere on a message, selects it. */
    onLogClick(ev) {
      if (!ui.log.contains(ev.target)) return;
      const { article, control } = clickTarget(ev.target, ui.log);
      const id = article ? Number(article.dataset.id) || 0 : 0;
      if (control) {
        // The editor's own controls, and a selection, stay as they are.
        const action = control.dataset ? control.dataset.action : undefined;
        if (!id || !getRecord(id)) return;
        if (action === "edit") start(id);
        else if (action === "delete") confirmDelete(id);
        return;
      }
      const hasActions = !!(article && id && article.querySelector(".chat-msg-actions"));
      select(hasActions ? article : null);
    },
  };
}
