// The log in the DOM (static/chat/render.js) on a stand-in DOM: who wrote a
// message shows as display name and @username, and names and message text
// each sit in an isolating <bdi>, so that a right-to-left override in them
// cannot reorder the time, the "(edited)" mark or the next name.

import assert from "node:assert/strict";
import { beforeEach, describe, test } from "node:test";

import { normalizeFrame } from "../../static/chat/frames.js";
import { createMessageList } from "../../static/chat/messages.js";
import { appendPerson, createLogView } from "../../static/chat/render.js";
import { createStore, readConfig, shownAs } from "../../static/chat/store.js";
import { fakeDocument, markup, textNodes } from "./fake-dom.js";

const RLO = "\u202E";
const BIDI_CONTROLS = /[\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/;

let doc;
let store;
let list;
let view;
let log;

beforeEach(() => {
  doc = fakeDocument();
  store = createStore(readConfig(JSON.stringify({ username: "alice", displayName: "Alice" })));
  list = createMessageList(store);
  log = doc.createElement("div");
  doc.body.appendChild(log);
  view = createLogView({ store, ui: { log }, hasMessages: () => list.size > 0, doc });
});

let nextId = 1;
function show(user, display_name, message) {
  const frame = normalizeFrame({
    type: "chat.message",
    id: nextId++,
    user,
    display_name,
    message,
    ts: "2025-01-02T10:30:00Z",
  });
  view.apply(list.addMessage(frame));
  return log.querySelectorAll("article").at(-1);
}

/* Every text node with a bidi control character sits directly in a <bdi>. */
function assertControlsIsolated(root) {
  const found = textNodes(root).filter(({ text }) => BIDI_CONTROLS.test(text));
  assert.ok(found.length > 0, "the test has control characters to look at");
  for (const { text, parent } of found) assert.equal(parent.tagName, "BDI", JSON.stringify(text));
}

describe("who wrote it", () => {
  test("a display name shows with the @username beside it", () => {
    const art = show("bob", "Bob Builder", "hi");
    assert.equal(
      markup(art.querySelector("div.chat-msg-head")).replace(/<time.*<\/time>/, "<time/>"),
      '<div class="chat-msg-head"><bdi class="chat-msg-author person-name">Bob Builder</bdi>' +
        ' <bdi class="person-handle">@bob</bdi> <time/></div>'
    );
    // The article's accessible name stays "name, time".
    assert.match(art.getAttribute("aria-label"), /^Bob Builder, \d{2}:\d{2}$/);
  });

  test("no display name: the @username once", () => {
    const art = show("carol", "", "hi");
    assert.equal(art.querySelector(".chat-msg-author").textContent, "@carol");
    assert.equal(art.querySelector(".person-handle"), null);
    const same = show("dan", "dan", "hi");
    assert.equal(same.querySelector(".chat-msg-author").textContent, "@dan");
    assert.equal(same.querySelector(".person-handle"), null);
  });

  test("a look-alike of another's name is told apart by its @username", () => {
    const real = show("alice", "Alice", "one");
    const fake = show("mallory", "Alice", "two");
    const head = (art) => art.querySelector("div.chat-msg-head").textContent.replace(/\d{2}:\d{2}$/, "");
    assert.equal(head(real), "Alice @alice ");
    assert.equal(head(fake), "Alice @mallory ");
  });

  test("the deleted-user placeholder is a name, not a username", () => {
    assert.deepEqual(shownAs("[deleted user]", "[deleted user]"), { name: "[deleted user]", handle: "" });
  });
});

describe("bidirectional text", () => {
  test("a name with a right-to-left override stays inside its own bdi", () => {
    const art = show("mallory", RLO + "ecilA", "hello");
    const author = art.querySelector(".chat-msg-author");
    assert.equal(author.tagName, "BDI");
    assert.equal(author.textContent, RLO + "ecilA");
    assert.equal(art.querySelector(".person-handle").tagName, "BDI");
    assertControlsIsolated(art);
  });

  test("a message with a right-to-left override is one bdi, edits included", () => {
    const art = show("bob", "Bob", "see " + RLO + "gpj.exe");
    const text = art.querySelector(".chat-msg-text");
    assert.equal(text.tagName, "BDI");
    assert.equal(text.textContent, "see " + RLO + "gpj.exe");
    assertControlsIsolated(art);
    const id = Number(art.dataset.id);
    view.apply(list.applyEdit({ id, message: RLO + "edited", edited_at: "2025-01-02T10:31:00Z" }));
    assert.equal(art.querySelector(".chat-msg-text").textContent, RLO + "edited");
    assertControlsIsolated(art);
  });

  test("one's own held message is isolated too", () => {
    store.names.set("alice", RLO + "ecilA");
    view.syncPending([{ clientId: "c1", text: RLO + "not sent" }]);
    const art = log.querySelector("article.chat-msg--pending");
    assert.equal(art.querySelector(".chat-msg-author").textContent, RLO + "ecilA");
    assert.equal(art.querySelector(".person-handle").textContent, "@alice");
    assert.equal(art.querySelector(".chat-msg-text").tagName, "BDI");
    assertControlsIsolated(art);
  });

  test("appendPerson builds text nodes only, never markup", () => {
    const span = doc.createElement("span");
    appendPerson(doc, span, "<b>x</b>", "eve", "");
    assert.equal(markup(span), '<span><bdi class="person-name">&lt;b&gt;x&lt;/b&gt;</bdi> <bdi class="person-handle">@eve</bdi></span>');
  });
});
