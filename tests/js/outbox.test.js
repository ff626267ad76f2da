// The outbox (static/chat/outbox.js): messages the server did not confirm
// are held, shown as not sent yet, and sent again one at a time, in order,
// with the same client_id, until their echo arrives.

import assert from "node:assert/strict";
import { beforeEach, describe, test } from "node:test";

import { normalizeFrame } from "../../static/chat/frames.js";
import { createMessageList } from "../../static/chat/messages.js";
import { createOutbox, SEND_TIMEOUT_MS } from "../../static/chat/outbox.js";
import { createStore, readConfig } from "../../static/chat/store.js";
import { fakeTimers } from "./fake-timers.js";

let timers;
let store;
let sent; // frames the outbox sent
let socketOpen;
let changes;
let outbox;

function setup({ random = () => 0.5 } = {}) {
  timers = fakeTimers();
  store = createStore(readConfig(JSON.stringify({ username: "alice" })));
  store.ready = true;
  sent = [];
  socketOpen = true;
  changes = 0;
  let n = 0;
  outbox = createOutbox({
    store,
    timers,
    random,
    newClientId: () => "cid-" + ++n,
    send: (frame) => {
      if (!socketOpen) return false;
      sent.push(frame);
      return true;
    },
    onChange: () => {
      changes += 1;
    },
  });
}

const heldTexts = () => outbox.held().map((e) => e.text);
const sentTexts = () => sent.map((f) => f.message);

beforeEach(() => setup());

describe("sending", () => {
  test("a message goes at once as a chat.message with a fresh client_id", () => {
    const a = outbox.submit("hello", "hello\n");
    const b = outbox.submit("again", "again");
    assert.deepEqual(sent, [
      { type: "chat.message", message: "hello", client_id: "cid-1" },
      { type: "chat.message", message: "again", client_id: "cid-2" },
    ]);
    assert.equal(a.raw, "hello\n");
    assert.notEqual(a.clientId, b.clientId);
    assert.equal(outbox.heldCount(), 0);
  });

  test("nothing goes before the hello: it is held for it", () => {
    store.ready = false;
    const entry = outbox.submit("early", "early");
    assert.deepEqual(sent, []);
    assert.deepEqual(heldTexts(), ["early"]);
    assert.equal(entry.held, true);
  });

  test("a message the socket refuses to take is held and retried, not lost", () => {
    socketOpen = false;
    const entry = outbox.submit("lost", "lost");
    assert.deepEqual(heldTexts(), ["lost"]);
    socketOpen = true;
    timers.advance(1000); // the first retry: 1 s at most
    assert.deepEqual(sent, [{ type: "chat.message", message: "lost", client_id: entry.clientId }]);
  });

  test("nothing is taken once the room is closed to the page", () => {
    store.stopped = true;
    assert.equal(outbox.submit("late", "late"), null);
    assert.equal(outbox.entries().length, 0);
  });

  test("its echo settles it", () => {
    const entry = outbox.submit("hi", "hi");
    assert.equal(outbox.settle(entry.clientId), entry);
    assert.equal(outbox.entries().length, 0);
    assert.equal(outbox.settle(entry.clientId), null);
    timers.advance(SEND_TIMEOUT_MS * 2);
    assert.equal(outbox.heldCount(), 0, "a settled message never times out");
  });
});

describe("holding", () => {
  test("unavailable holds the message it names, quietly, and retries it with the same client_id", () => {
    const entry = outbox.submit("one", "one");
    assert.equal(outbox.unstored("unavailable", entry.clientId), true);
    assert.deepEqual(heldTexts(), ["one"]);
    assert.equal(outbox.retryPending(), true);
    assert.match(outbox.statusText(), /^Can't store messages right now; retrying in \d+ s$/);
    timers.advance(1000); // 1 s backoff: between 0.8 s and 1 s
    assert.deepEqual(sentTexts(), ["one", "one"]);
    assert.equal(sent[1].client_id, entry.clientId);
    assert.equal(outbox.statusText(), "Can't store messages right now; sending again…");
  });

  test("unavailable without a client_id holds the oldest message out", () => {
    outbox.submit("one", "one");
    outbox.submit("two", "two");
    assert.equal(outbox.unstored("unavailable", ""), true);
    assert.deepEqual(heldTexts(), ["one"]);
  });

  test("unavailable is quiet even when it names no message of ours", () => {
    assert.equal(outbox.unstored("unavailable", "not-ours"), true);
    assert.equal(outbox.heldCount(), 0);
  });

  test("server_error holds the message it names; one that is not ours gets an alert", () => {
    const entry = outbox.submit("one", "one");
    assert.equal(outbox.unstored("server_error", "someone-else"), false);
    assert.equal(outbox.unstored("server_error", entry.clientId), true);
    assert.deepEqual(heldTexts(), ["one"]);
    assert.match(outbox.statusText(), /^The server failed to take a message; retrying in/);
  });

  test("no answer within 10 s holds it", () => {
    outbox.submit("quiet", "quiet");
    timers.advance(SEND_TIMEOUT_MS - 1);
    assert.equal(outbox.heldCount(), 0);
    timers.advance(1);
    assert.deepEqual(heldTexts(), ["quiet"]);
    assert.match(outbox.statusText(), /^No answer from the server; retrying in/);
  });

  test("held messages are resent one at a time, in order, each with its own client_id", () => {
    const a = outbox.submit("a", "a");
    const b = outbox.submit("b", "b");
    outbox.unstored("unavailable", a.clientId);
    outbox.unstored("unavailable", b.clientId);
    // A new message queues behind the held ones.
    const c = outbox.submit("c", "c");
    assert.deepEqual(heldTexts(), ["a", "b", "c"]);
    assert.deepEqual(sentTexts(), ["a", "b"]);

    timers.advance(1000);
    assert.deepEqual(sentTexts(), ["a", "b", "a"]);
    timers.advance(SEND_TIMEOUT_MS - 1); // "a" is out: nothing else goes
    assert.deepEqual(sentTexts(), ["a", "b", "a"]);

    outbox.settle(a.clientId); // stored: the next one goes at once
    assert.deepEqual(sentTexts(), ["a", "b", "a", "b"]);
    outbox.settle(b.clientId);
    outbox.settle(c.clientId);
    assert.deepEqual(sentTexts(), ["a", "b", "a", "b", "c"]);
    assert.deepEqual(
      sent.map((f) => f.client_id),
      [a.clientId, b.clientId, a.clientId, b.clientId, c.clientId]
    );
    assert.equal(outbox.heldCount(), 0);
    assert.equal(outbox.statusText(), "");
    assert.equal(outbox.retryPending(), false);
  });

  test("retries back off 1 s, 2 s, 4 s … up to 15 s while storage stays down", () => {
    setup({ random: () => 0.999999 });
    const entry = outbox.submit("x", "x");
    const times = [];
    let last = timers.now();
    outbox.unstored("unavailable", entry.clientId);
    for (let i = 0; i < 6; i += 1) {
      const before = sent.length;
      while (sent.length === before) timers.advance(10);
      times.push(Math.round((timers.now() - last) / 10) * 10);
      last = timers.now();
      outbox.unstored("unavailable", entry.clientId); // answered at once
    }
    assert.deepEqual(times, [1000, 2000, 4000, 8000, 15000, 15000]);
  });

  test("rate_limited on a resend keeps it held, quietly", () => {
    const entry = outbox.submit("again", "again");
    outbox.unstored("unavailable", entry.clientId);
    timers.advance(1000); // resent
    const refused = outbox.refused("rate_limited");
    assert.deepEqual(refused, { quiet: true, giveBack: null });
    assert.deepEqual(heldTexts(), ["again"]);
    assert.match(outbox.statusText(), /^Too many messages at once; retrying in/);
    timers.advance(2000);
    assert.deepEqual(sentTexts(), ["again", "again", "again"]);
  });

  test("rate_limited on a first send gives the text back", () => {
    const entry = outbox.submit("fast", "fast  ");
    const refused = outbox.refused("rate_limited");
    assert.equal(refused.quiet, false);
    assert.equal(refused.giveBack, entry);
    assert.equal(refused.giveBack.raw, "fast  ");
    assert.equal(outbox.entries().length, 0);
  });

  test("too_long and empty give the last message's text back", () => {
    outbox.submit("first", "first");
    const second = outbox.submit("x".repeat(10), "x".repeat(10));
    const refused = outbox.refused("too_long");
    assert.equal(refused.giveBack, second);
    assert.deepEqual(
      outbox.entries().map((e) => e.text),
      ["first"]
    );
    outbox.settle(outbox.entries()[0].clientId);
    assert.deepEqual(outbox.refused("empty"), { quiet: false, giveBack: null });
  });

  test("a refusal of a held resend gives it back and sends the next held one", () => {
    const a = outbox.submit("a", "a");
    const b = outbox.submit("b", "b");
    outbox.unstored("unavailable", a.clientId);
    outbox.unstored("unavailable", b.clientId);
    timers.advance(1000);
    assert.deepEqual(sentTexts(), ["a", "b", "a"]);
    const refused = outbox.refused("too_long");
    assert.equal(refused.giveBack, a);
    assert.deepEqual(sentTexts(), ["a", "b", "a", "b"]);
  });

  test("other errors are not the outbox's", () => {
    outbox.submit("a", "a");
    assert.deepEqual(outbox.refused("forbidden"), { quiet: false, giveBack: null });
    assert.equal(outbox.entries().length, 1);
  });
});

describe("reconnecting", () => {
  test("what was out on a socket that closed is held, and goes again after the next hello", () => {
    const a = outbox.submit("a", "a");
    const b = outbox.submit("b", "b");
    store.ready = false;
    socketOpen = false;
    outbox.socketGone();
    assert.deepEqual(heldTexts(), ["a", "b"]);
    assert.equal(outbox.retryPending(), false, "no retry while the socket is down");
    assert.equal(outbox.statusText(), "2 messages not sent yet; they go when the connection is back.");

    store.ready = true;
    socketOpen = true;
    outbox.helloReceived();
    assert.deepEqual(sentTexts(), ["a", "b", "a"]);
    assert.equal(sent[2].client_id, a.clientId);
    outbox.settle(a.clientId);
    assert.deepEqual(sentTexts(), ["a", "b", "a", "b"]);
    assert.equal(sent[3].client_id, b.clientId);
  });

  test("an echo in the catch-up hello settles the held message before anything is resent", () => {
    const list = createMessageList(store);
    const a = outbox.submit("a", "a");
    const b = outbox.submit("b", "b");
    store.ready = false;
    outbox.socketGone();
    store.ready = true;
    // "a" was stored before the socket broke: the catch-up carries it.
    const frame = normalizeFrame({
      type: "hello",
      truncated: false,
      messages: [{ type: "chat.message", id: 7, user: "alice", message: "a", client_id: a.clientId, ts: "" }],
    });
    const { changes: listChanges } = list.hello(frame, true);
    listChanges.forEach((change) => change.echo && outbox.settle(change.echo));
    outbox.helloReceived();
    assert.deepEqual(heldTexts(), ["b"]);
    assert.deepEqual(sentTexts(), ["a", "b", "b"]);
    assert.equal(sent[2].client_id, b.clientId);
  });

  test("a live echo of a held message settles it", () => {
    const list = createMessageList(store);
    const a = outbox.submit("a", "a");
    outbox.unstored("server_error", a.clientId); // maybe stored after all
    const change = list.addMessage(
      normalizeFrame({ type: "chat.message", id: 3, user: "alice", message: "a", client_id: a.clientId })
    );
    outbox.settle(change.echo);
    assert.equal(outbox.heldCount(), 0);
    assert.equal(outbox.statusText(), "");
    timers.advance(60000);
    assert.deepEqual(sentTexts(), ["a"], "no resend once settled");
  });

  test("messages written while offline are held in order and go after the hello, one at a time", () => {
    const a = outbox.submit("a", "a");
    store.ready = false;
    socketOpen = false;
    outbox.socketGone();
    const b = outbox.submit("b", "b"); // the composer stays usable while reconnecting
    const c = outbox.submit("c", "c");
    assert.deepEqual(sentTexts(), ["a"]);
    assert.deepEqual(heldTexts(), ["a", "b", "c"]);
    assert.equal(outbox.statusText(), "3 messages not sent yet; they go when the connection is back.");
    timers.advance(60000);
    assert.deepEqual(sentTexts(), ["a"], "nothing goes while the socket is down");

    store.ready = true;
    socketOpen = true;
    outbox.helloReceived();
    assert.deepEqual(sent.slice(1), [{ type: "chat.message", message: "a", client_id: a.clientId }]);
    outbox.settle(a.clientId);
    assert.deepEqual(sent.at(-1), { type: "chat.message", message: "b", client_id: b.clientId });
    outbox.settle(b.clientId);
    assert.deepEqual(sent.at(-1), { type: "chat.message", message: "c", client_id: c.clientId });
    outbox.settle(c.clientId);
    assert.deepEqual(sentTexts(), ["a", "a", "b", "c"]);
    assert.equal(outbox.heldCount(), 0);
    assert.equal(outbox.statusText(), "");
  });

  test("closed for good: held messages say they were not sent", () => {
    const a = outbox.submit("a", "a");
    outbox.unstored("unavailable", a.clientId);
    store.stopped = true;
    store.ready = false;
    outbox.stop();
    assert.equal(outbox.statusText(), "1 message was not sent.");
    timers.advance(60000);
    assert.deepEqual(sentTexts(), ["a"]);
  });

  test("every change is reported for the page to redraw", () => {
    const a = outbox.submit("a", "a");
    const before = changes;
    outbox.unstored("unavailable", a.clientId);
    assert.ok(changes > before);
  });
});
