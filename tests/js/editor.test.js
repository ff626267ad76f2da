// The message actions (static/chat/editor.js) on a stand-in DOM: a tap on a
// message selects it (chat.css then shows its actions on a touch screen, and
// no other message's), a second tap or a tap elsewhere unselects, a tap on a
// control leaves the selection alone, and Edit and Delete still do their job.

import assert from "node:assert/strict";
import { beforeEach, describe, test } from "node:test";

import { clickTarget, createEditor } from "../../static/chat/editor.js";
import { normalizeFrame } from "../../static/chat/frames.js";
import { createMessageList } from "../../static/chat/messages.js";
import { createLogView } from "../../static/chat/render.js";
import { createStore, readConfig } from "../../static/chat/store.js";
import { fakeDocument } from "./fake-dom.js";

let doc;
let store;
let list;
let view;
let log;
let editor;
let sent;
let confirmAnswer;

beforeEach(() => {
  doc = fakeDocument();
  globalThis.document = doc; // editor.js makes its elements in the page's document
  const make = doc.createElement.bind(doc);
  doc.createElement = (tag) => {
    const node = make(tag);
    if (tag === "textarea") node.setSelectionRange = () => {}; // not in the stand-in DOM
    return node;
  };
  const config = readConfig(JSON.stringify({ username: "alice", displayName: "Alice" }));
  store = createStore(config, { canModerate: true });
  list = createMessageList(store);
  log = doc.createElement("div");
  doc.appendChild(log);
  view = createLogView({ store, ui: { log }, hasMessages: () => list.size > 0, doc });
  sent = [];
  confirmAnswer = true;
  editor = createEditor({
    store,
    ui: { log },
    getRecord: (id) => list.get(id),
    getView: (id) => view.view(id),
    send: (frame) => sent.push(frame) > 0,
    showError: (text) => assert.fail(text),
    errorText: (code) => code,
    confirm: () => confirmAnswer,
    timers: { setTimeout: () => 0, clearTimeout: () => {} },
  });
});

let nextId = 1;
function show(user, message) {
  const frame = normalizeFrame({
    type: "chat.message",
    id: nextId++,
    user,
    display_name: user,
    message,
    ts: "2025-01-02T10:30:00Z",
  });
  view.apply(list.addMessage(frame));
  return log.querySelectorAll("article").at(-1);
}

function tap(target) {
  editor.onLogClick({ target });
}

function selected() {
  return log.querySelectorAll("article.is-selected");
}

describe("where a click landed", () => {
  test("the article around it, and the first control on the way up", () => {
    const art = show("bob", "hi");
    const text = art.querySelector(".chat-msg-text");
    assert.deepEqual(clickTarget(text, log), { article: art, control: null });
    const del = art.querySelector("button");
    assert.deepEqual(clickTarget(del, log), { article: art, control: del });
    assert.deepEqual(clickTarget(log, log), { article: null, control: null });
  });
});

describe("a tap selects one message", () => {
  test("a tap selects it; a second tap unselects it", () => {
    const art = show("bob", "hi");
    tap(art.querySelector(".chat-msg-text"));
    assert.deepEqual(selected(), [art]);
    assert.equal(editor.selectedId(), Number(art.dataset.id));
    tap(art.querySelector(".chat-msg-head"));
    assert.deepEqual(selected(), []);
    assert.equal(editor.selectedId(), 0);
  });

  test("a tap on another message moves the selection: never two", () => {
    const one = show("bob", "one");
    const two = show("carol", "two");
    tap(one.querySelector(".chat-msg-text"));
    tap(two.querySelector(".chat-msg-text"));
    assert.deepEqual(selected(), [two]);
  });

  test("a tap on the log around the messages unselects", () => {
    const art = show("bob", "hi");
    tap(art);
    tap(log);
    assert.deepEqual(selected(), []);
  });

  test("a message without actions is not selected, and unselects the other", () => {
    store.canModerate = false;
    const theirs = show("bob", "not mine"); // no actions for a member
    const mine = show("alice", "mine");
    assert.equal(theirs.querySelector(".chat-msg-actions"), null);
    tap(mine.querySelector(".chat-msg-text"));
    tap(theirs.querySelector(".chat-msg-text"));
    assert.deepEqual(selected(), []);
  });

  test("a tap on a control keeps the selection: Edit opens the editor, typing in it", () => {
    const mine = show("alice", "draft");
    tap(mine.querySelector(".chat-msg-text"));
    const edit = mine.querySelectorAll("button").find((b) => b.dataset.action === "edit");
    tap(edit);
    assert.ok(editor.isOpen(Number(mine.dataset.id)));
    tap(mine.querySelector("textarea"));
    assert.deepEqual(selected(), [mine]);
  });

  test("moving on takes focus from the last message's button, so only one shows", () => {
    const one = show("bob", "one");
    const two = show("bob", "two");
    tap(one.querySelector(".chat-msg-text"));
    const del = one.querySelectorAll("button").find((b) => b.dataset.action === "delete");
    del.blur = () => {
      doc.activeElement = null;
    };
    del.focus();
    confirmAnswer = false; // Delete, then Cancel in the dialog: focus stays on it
    tap(del);
    assert.deepEqual(sent, []);
    assert.equal(doc.activeElement, del);
    tap(two.querySelector(".chat-msg-text"));
    assert.equal(doc.activeElement, null);
    assert.deepEqual(selected(), [two]);
  });

  test("Delete on the selected message sends chat.delete; its removal unselects", () => {
    const art = show("bob", "bye");
    const id = Number(art.dataset.id);
    tap(art.querySelector(".chat-msg-text"));
    tap(art.querySelectorAll("button").find((b) => b.dataset.action === "delete"));
    assert.deepEqual(sent, [{ type: "chat.delete", id }]);
    editor.removed(id);
    assert.equal(editor.selectedId(), 0);
  });

  test("the list starting again unselects", () => {
    const art = show("bob", "hi");
    tap(art);
    editor.reset();
    assert.equal(editor.selectedId(), 0);
    assert.deepEqual(selected(), []);
  });
});
