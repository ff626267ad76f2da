// The pure parts of the composer, history loading and the read marker.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { counterText, createComposer, messageText } from "../../static/chat/composer.js";
import { createHistoryLoader, historyFrame, HISTORY_TIMEOUT_MS } from "../../static/chat/history.js";
import { createMessageList } from "../../static/chat/messages.js";
import { createReadMarker, READ_DEBOUNCE_MS } from "../../static/chat/read.js";
import { createStore, readConfig } from "../../static/chat/store.js";
import { charCount, isSendEnter, toId } from "../../static/chat/util.js";
import { fakeDocument } from "./fake-dom.js";
import { fakeTimers } from "./fake-timers.js";

describe("composer", () => {
  test("trailing whitespace is trimmed; leading whitespace and inner lines stay", () => {
    assert.equal(messageText("  hi there \n\n"), "  hi there");
    assert.equal(messageText("a\nb\n"), "a\nb");
    assert.equal(messageText(" \n\t "), "");
  });

  test("the counter appears at 90 % of the limit and says when it is too long", () => {
    assert.equal(counterText(3599, 4000), "");
    assert.equal(counterText(3600, 4000), "3600 / 4000 characters");
    assert.equal(counterText(4001, 4000), "4001 / 4000 characters: too long");
    assert.equal(counterText(1, 1), "1 / 1 characters");
  });

  test("characters are counted as the server counts them", () => {
    assert.equal(charCount("héllo"), 5);
    assert.equal(charCount("👍👍"), 2);
  });

  test("Enter sends; Shift+Enter, modifiers and an IME composing do not", () => {
    assert.equal(isSendEnter({ key: "Enter" }), true);
    assert.equal(isSendEnter({ key: "Enter", shiftKey: true }), false);
    assert.equal(isSendEnter({ key: "Enter", ctrlKey: true }), false);
    assert.equal(isSendEnter({ key: "Enter", isComposing: true }), false);
    assert.equal(isSendEnter({ key: "Enter", keyCode: 229 }), false);
    assert.equal(isSendEnter({ key: "a" }), false);
  });

  test("ids are positive whole numbers", () => {
    assert.deepEqual([1, "2", 0, -1, 1.5, "x", null].map(toId), [1, 2, 0, 0, 0, 0, 0]);
  });

  test("the page's settings are read with defaults and bounds", () => {
    assert.deepEqual(readConfig("{}"), {
      slug: "",
      wsPath: "",
      lobbyUrl: "",
      username: "",
      displayName: "",
      maxChars: 4000,
      historyPage: 50,
    });
    assert.equal(readConfig('{"historyPage": 500}').historyPage, 100);
    assert.equal(readConfig('{"maxChars": -5}').maxChars, 1);
    assert.equal(readConfig("not json"), null);
    assert.equal(readConfig("[1]"), null);
  });
});

describe("composer while offline", () => {
  function setup() {
    const doc = fakeDocument();
    const ui = {
      form: doc.createElement("form"),
      input: doc.createElement("textarea"),
      send: doc.createElement("button"),
      counter: null,
    };
    const store = createStore(readConfig('{"username": "alice"}'));
    const submitted = [];
    const composer = createComposer({
      store,
      ui,
      submit: (text) => (store.stopped ? null : submitted.push(text) && { clientId: "c", text }),
      typing: { input() {}, stop() {} },
      showError: () => {},
    });
    const type = (text) => {
      ui.input.value = text;
      return ui.form.dispatch("submit");
    };
    return { store, ui, composer, submitted, type };
  }

  test("stays usable while reconnecting: what is sent goes to the outbox", () => {
    const { store, ui, composer, submitted, type } = setup();
    composer.setEnabled(true); // the first hello
    store.ready = false; // the socket is gone; chat.js leaves the composer enabled
    assert.equal(ui.input.disabled, false);
    type("written offline");
    assert.deepEqual(submitted, ["written offline"]);
    assert.equal(ui.input.value, "", "it left the box");
  });

  test("once the room is closed to the page, nothing is taken and the text stays", () => {
    const { store, ui, composer, submitted, type } = setup();
    store.stopped = true;
    composer.setEnabled(false);
    assert.equal(ui.input.disabled, true);
    assert.equal(ui.send.disabled, true);
    type("too late");
    assert.deepEqual(submitted, []);
    assert.equal(ui.input.value, "too late");
  });
});

describe("history", () => {
  test("asks for the page before the lowest id shown, one request at a time", () => {
    assert.deepEqual(historyFrame(0, 50), { type: "history", limit: 50 });
    assert.deepEqual(historyFrame(120, 50), { type: "history", limit: 50, before: 120 });

    const timers = fakeTimers();
    const store = createStore(readConfig('{"historyPage": 30}'));
    const list = createMessageList(store);
    const sent = [];
    const loader = createHistoryLoader({ store, list, timers, send: (f) => sent.push(f) > 0 });
    list.hasMore = true;
    list.minSeenId = 77;
    assert.equal(loader.request(), false, "not before the hello");
    store.ready = true;
    assert.equal(loader.request(), true);
    assert.equal(loader.request(), false, "one at a time");
    assert.deepEqual(sent, [{ type: "history", limit: 30, before: 77 }]);
    timers.advance(HISTORY_TIMEOUT_MS);
    assert.equal(loader.loading, false, "no answer: another may go");
    list.hasMore = false;
    assert.equal(loader.request(), false, "nothing older");
  });
});

describe("read marker", () => {
  test("reported once the newest message has been in view for a second, forward only", () => {
    const timers = fakeTimers();
    const store = createStore(readConfig("{}"));
    store.ready = true;
    let last = 10;
    let visible = true;
    const sent = [];
    const read = createReadMarker({
      store,
      timers,
      lastId: () => last,
      isVisible: () => visible,
      pageVisible: () => true,
      send: (f) => sent.push(f) > 0,
    });
    read.hello(4, true);
    read.maybeReport();
    timers.advance(READ_DEBOUNCE_MS);
    assert.deepEqual(sent, [{ type: "read", id: 10 }]);
    read.maybeReport();
    timers.advance(READ_DEBOUNCE_MS);
    assert.equal(sent.length, 1, "already reported");
    last = 11;
    visible = false;
    read.maybeReport();
    timers.advance(READ_DEBOUNCE_MS);
    assert.equal(sent.length, 1, "not in view");
    read.notStored(10); // the server could not store it: report again later
    visible = true;
    last = 10;
    read.maybeReport();
    timers.advance(READ_DEBOUNCE_MS);
    assert.deepEqual(sent[1], { type: "read", id: 10 });
    read.hello(3, false);
    assert.equal(read.lastReadSent, 10, "a later hello only moves it forward");
  });
});
