// Who is online and who is typing (static/chat/presence.js): the online
// list reconciled from each frame's full list, typists dropped after 6 s,
// when they go offline or when their message arrives; own typing frames.

import assert from "node:assert/strict";
import { beforeEach, describe, test } from "node:test";

import { normalizeFrame } from "../../static/chat/frames.js";
import {
  createPresence,
  createTypingNotifier,
  TYPING_IDLE_MS,
  TYPING_SEND_MS,
  TYPING_TTL_MS,
  typingText,
} from "../../static/chat/presence.js";
import { createStore, readConfig, rememberNames } from "../../static/chat/store.js";
import { fakeDocument, markup, textNodes } from "./fake-dom.js";
import { fakeTimers } from "./fake-timers.js";

let timers;
let store;
let presence;
let doc;
let typingLine; // #chat-typing
let onlineList; // #chat-online

beforeEach(() => {
  timers = fakeTimers();
  store = createStore(readConfig(JSON.stringify({ username: "alice", displayName: "Alice" })));
  doc = fakeDocument();
  typingLine = doc.createElement("div");
  onlineList = doc.createElement("ul");
  presence = createPresence({ store, ui: { typing: typingLine, online: onlineList }, timers, doc });
});

const typing = (user, active, display_name = "") =>
  normalizeFrame({ type: "typing", user, active, display_name });

describe("online", () => {
  test("each presence frame's list replaces the one shown", () => {
    const frame = normalizeFrame({ type: "presence", user: "bob", status: "join", online: ["alice", "bob"] });
    presence.setOnline(frame.online);
    assert.deepEqual(store.online, ["alice", "bob"]);
    // A leave that was missed: the next full list is the truth.
    presence.setOnline(normalizeFrame({ type: "presence", user: "carol", status: "join", online: ["alice", "carol"] }).online);
    assert.deepEqual(store.online, ["alice", "carol"]);
    presence.setOnline([]);
    assert.deepEqual(store.online, []);
  });

  test("a changed display name of someone online marks the list for redrawing", () => {
    presence.setOnline(["alice", "bob"]);
    store.namesDirty = false;
    rememberNames(store, { bob: "Bob" });
    assert.equal(store.namesDirty, true);
    store.namesDirty = false;
    rememberNames(store, { bob: "Bob", zed: "Zed" }); // same name; zed is offline
    assert.equal(store.namesDirty, false);
  });

  test("the list shows each display name with its @username, and the @username alone when there is no other name", () => {
    rememberNames(store, { bob: "Bob", mallory: "\u202Eecila", dan: "dan" });
    presence.setOnline(["alice", "bob", "dan", "mallory"]);
    const items = onlineList.children;
    assert.deepEqual(
      items.map((li) => li.textContent),
      ["Alice @alice", "Bob @bob", "@dan", "\u202Eecila @mallory"]
    );
    assert.equal(
      markup(items[3]),
      '<li class="chat-online-item"><span class="chat-online-dot" aria-hidden="true"></span>' +
        '<bdi class="chat-online-name person-name">\u202Eecila</bdi> <bdi class="person-handle">@mallory</bdi></li>'
    );
    assert.ok(items[0].classList.contains("is-me"));
  });

  test("someone who goes offline stops typing", () => {
    presence.setOnline(["alice", "bob", "carol"]);
    presence.onTyping(typing("bob", true, "Bob"));
    presence.onTyping(typing("carol", true, "Carol"));
    assert.equal(typingLine.textContent, "Bob @bob and Carol @carol are typing…");
    presence.setOnline(["alice", "carol"]);
    assert.equal(typingLine.textContent, "Carol @carol is typing…");
  });
});

describe("unknown while offline", () => {
  let count; // #chat-online-count
  let caption; // #chat-online-caption

  beforeEach(() => {
    count = doc.createElement("span");
    caption = doc.createElement("p");
    presence = createPresence({
      store,
      ui: { typing: typingLine, online: onlineList, onlineCount: count, onlineCaption: caption },
      timers,
      doc,
    });
  });

  const shown = () => ({
    unknown: onlineList.classList.contains("is-unknown"),
    count: count.textContent,
    caption: !caption.hidden,
    names: onlineList.children.map((li) => li.dataset.username),
  });

  test("before the first hello the list is unknown; the hello's list is live", () => {
    presence.renderOnline();
    assert.deepEqual(shown(), { unknown: true, count: "?", caption: true, names: [] });
    store.ready = true; // chat.js: a hello arrived on this socket
    presence.setOnline(["alice", "bob"]);
    assert.deepEqual(shown(), { unknown: false, count: "2", caption: false, names: ["alice", "bob"] });
  });

  test("while reconnecting the last list stays, greyed, with an unknown count; the next hello restores it", () => {
    store.ready = true;
    presence.setOnline(["alice", "bob", "carol"]);
    store.ready = false; // the socket is gone (connection.js)
    presence.renderOnline();
    assert.deepEqual(shown(), { unknown: true, count: "?", caption: true, names: ["alice", "bob", "carol"] });
    store.ready = true;
    presence.setOnline(["alice", "carol"]);
    assert.deepEqual(shown(), { unknown: false, count: "2", caption: false, names: ["alice", "carol"] });
  });

  test("after a closed frame (kicked, banned…) the list is unknown, even if a presence frame still comes", () => {
    store.ready = true;
    presence.setOnline(["alice", "bob"]);
    store.stopped = true;
    presence.renderOnline();
    assert.deepEqual(shown(), { unknown: true, count: "?", caption: true, names: ["alice", "bob"] });
    presence.setOnline(["alice", "bob", "dan"]); // crossed the closing
    assert.equal(shown().unknown, true);
    assert.equal(shown().count, "?");
  });
});

describe("typing", () => {
  test("a typist not heard from for 6 s is dropped", () => {
    presence.onTyping(typing("bob", true, "Bob"));
    assert.deepEqual(presence.typingNames(), ["Bob"]);
    timers.advance(TYPING_TTL_MS - 1);
    assert.deepEqual(presence.typingNames(), ["Bob"]);
    timers.advance(1);
    assert.deepEqual(presence.typingNames(), []);
    assert.equal(typingLine.textContent, "");
    assert.equal(TYPING_TTL_MS, 6000);
  });

  test("each active frame starts the 6 s again", () => {
    presence.onTyping(typing("bob", true));
    timers.advance(5000);
    presence.onTyping(typing("bob", true));
    timers.advance(5000);
    assert.deepEqual(presence.typingNames(), ["bob"]);
    timers.advance(1000);
    assert.deepEqual(presence.typingNames(), []);
  });

  test("active: false, a message from them, or a lost socket drop them", () => {
    presence.onTyping(typing("bob", true));
    presence.onTyping(typing("carol", true));
    presence.onTyping(typing("bob", false));
    assert.deepEqual(presence.typingNames(), ["carol"]);
    presence.stopped("carol");
    assert.deepEqual(presence.typingNames(), []);
    presence.onTyping(typing("dan", true));
    presence.clear();
    assert.deepEqual(presence.typingNames(), []);
    assert.equal(timers.pending, 0, "no timer left behind");
  });

  test("one's own typing frames are never shown", () => {
    presence.onTyping(typing("alice", true));
    assert.deepEqual(presence.typingNames(), []);
  });

  test("the line names one or two typists with their @username, then says several", () => {
    const bob = { name: "Bob", user: "bob" };
    const carol = { name: "Carol", user: "carol" };
    assert.equal(typingText([]), "");
    assert.equal(typingText([bob]), "Bob @bob is typing…");
    assert.equal(typingText([{ name: "dan", user: "dan" }]), "@dan is typing…");
    assert.equal(typingText([bob, carol]), "Bob @bob and Carol @carol are typing…");
    assert.equal(typingText([bob, carol, { name: "Dan", user: "dan" }]), "several people are typing…");
  });

  test("the typist's display name is learnt from the frame", () => {
    presence.onTyping(typing("erin", true, "Erin E"));
    assert.equal(typingLine.textContent, "Erin E @erin is typing…");
    assert.equal(store.names.get("erin"), "Erin E");
  });

  test("a look-alike name shows its own @username, each part isolated", () => {
    // "аlice" with a Cyrillic а, and a name with a right-to-left override.
    presence.onTyping(typing("mallory", true, "\u0430lice"));
    presence.onTyping(typing("trudy", true, "\u202Eecila"));
    assert.equal(
      markup(typingLine),
      "<div>" +
        '<bdi class="person-name">\u0430lice</bdi> <bdi class="person-handle">@mallory</bdi>' +
        " and " +
        '<bdi class="person-name">\u202Eecila</bdi> <bdi class="person-handle">@trudy</bdi>' +
        " are typing…</div>"
    );
    for (const { text, parent } of textNodes(typingLine)) {
      if (/[\u202A-\u202E\u2066-\u2069]/.test(text)) assert.equal(parent.tagName, "BDI", text);
    }
  });
});

describe("own typing", () => {
  let sent;
  let notifier;

  beforeEach(() => {
    sent = [];
    store.ready = true;
    notifier = createTypingNotifier({ store, timers, send: (f) => sent.push(f) > 0 });
  });

  test("announced at most every 3 s while typing, withdrawn 4 s after the last keystroke", () => {
    notifier.input("h");
    notifier.input("he");
    assert.deepEqual(sent, [{ type: "typing", active: true }]);
    timers.advance(TYPING_SEND_MS);
    notifier.input("hel");
    assert.equal(sent.length, 2);
    timers.advance(TYPING_IDLE_MS);
    assert.deepEqual(sent[2], { type: "typing", active: false });
    assert.equal(notifier.active, false);
  });

  test("an emptied box or a sent message withdraws it; nothing before the hello", () => {
    notifier.input("x");
    notifier.input("   ");
    assert.deepEqual(sent.at(-1), { type: "typing", active: false });
    notifier.input("y");
    notifier.stop();
    assert.deepEqual(sent.at(-1), { type: "typing", active: false });
    const count = sent.length;
    notifier.stop();
    assert.equal(sent.length, count, "stopping twice sends once");
    store.ready = false;
    notifier.input("z");
    assert.equal(sent.length, count);
  });
});
