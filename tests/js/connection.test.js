// The socket (static/chat/connection.js): reconnecting with backoff and
// ?after=, pings and the idle watchdog, and no reconnect once closed for good.

import assert from "node:assert/strict";
import { beforeEach, describe, test } from "node:test";

import { createConnection, IDLE_MS, PING_MS, socketUrl, TOO_MANY_SOCKETS } from "../../static/chat/connection.js";
import { CLOSED_TEXT } from "../../static/chat/notices.js";
import { createStore, readConfig } from "../../static/chat/store.js";
import { fakeTimers } from "./fake-timers.js";

class FakeSocket {
  static OPEN = 1;
  static made = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.closedWith = null;
    FakeSocket.made.push(this);
  }
  send(data) {
    this.sent.push(JSON.parse(data));
  }
  close(code) {
    this.closedWith = code;
  }
  // What the server or the network does:
  open() {
    this.readyState = FakeSocket.OPEN;
    this.onopen && this.onopen();
  }
  receive(frame) {
    this.onmessage && this.onmessage({ data: JSON.stringify(frame) });
  }
  drop(code = 1006) {
    this.readyState = 3;
    this.onclose && this.onclose({ code });
  }
}

let timers;
let store;
let conn;
let log; // what the page was told
let maxId;

function latest() {
  return FakeSocket.made.at(-1);
}

beforeEach(() => {
  FakeSocket.made = [];
  timers = fakeTimers();
  store = createStore(readConfig(JSON.stringify({ username: "alice", wsPath: "/ws/chat/general/" })));
  log = [];
  maxId = 0;
  conn = createConnection({
    store,
    path: "/ws/chat/general/",
    getAfter: () => maxId,
    onFrame: (data) => {
      log.push(["frame", JSON.parse(data).type]);
      if (JSON.parse(data).type === "hello") {
        store.helloSeen = true;
        store.ready = true;
        conn.connected();
      }
    },
    onGone: (code) => log.push(["gone", code]),
    onClosedForGood: () => {
      store.stopped = true;
      log.push(["closed for good"]);
    },
    onStatus: (state, seconds) => log.push(["status", state, seconds]),
    timers,
    random: () => 0.999999,
    WebSocketImpl: FakeSocket,
    location: { protocol: "http:", host: "chat.test" },
  });
});

const statuses = () => log.filter((e) => e[0] === "status").map((e) => e.slice(1).filter((x) => x !== undefined).join(" "));

describe("socketUrl", () => {
  test("follows the page's scheme and asks for catch-up after an id", () => {
    assert.equal(socketUrl({ protocol: "http:", host: "h:8000" }, "/ws/chat/a/", 0), "ws://h:8000/ws/chat/a/");
    assert.equal(socketUrl({ protocol: "https:", host: "h" }, "/ws/chat/a/", 42), "wss://h/ws/chat/a/?after=42");
    assert.equal(socketUrl({ protocol: "https:", host: "h" }, "/ws/?x=1", 7), "wss://h/ws/?x=1&after=7");
  });
});

describe("connecting", () => {
  test("the first socket asks for no catch-up", () => {
    maxId = 50; // before any hello the list is the page's own: nothing to catch up on
    conn.connect();
    assert.equal(latest().url, "ws://chat.test/ws/chat/general/");
    assert.equal(conn.afterUsed, false);
    assert.deepEqual(statuses(), ["connecting"]);
  });

  test("after a drop it reconnects with backoff and ?after=<highest id>", () => {
    conn.connect();
    latest().open();
    latest().receive({ type: "hello" });
    maxId = 120;
    latest().drop(1006);
    assert.deepEqual(log.at(-2), ["gone", 1006]);
    assert.equal(store.ready, false);
    assert.deepEqual(statuses().at(-1), "reconnecting 1");
    assert.equal(FakeSocket.made.length, 1);
    timers.advance(500); // attempt 0: up to 0.5 s
    assert.equal(FakeSocket.made.length, 2);
    assert.equal(latest().url, "ws://chat.test/ws/chat/general/?after=120");
    assert.equal(conn.afterUsed, true);
  });

  test("failed attempts back off, doubling up to 30 s, and a hello starts again from 0.5 s", () => {
    conn.connect();
    latest().open();
    latest().receive({ type: "hello" });
    const waits = [];
    for (let i = 0; i < 9; i += 1) {
      const before = FakeSocket.made.length;
      latest().drop(1006);
      const start = timers.now();
      while (FakeSocket.made.length === before) timers.advance(10);
      waits.push(Math.round((timers.now() - start) / 10) * 10);
    }
    assert.deepEqual(waits, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
    latest().open();
    latest().receive({ type: "hello" });
    latest().drop(1006);
    const start = timers.now();
    const before = FakeSocket.made.length;
    while (FakeSocket.made.length === before) timers.advance(10);
    assert.equal(Math.round((timers.now() - start) / 10) * 10, 500);
  });

  test("the countdown is shown in whole seconds", () => {
    conn.connect();
    latest().receive({ type: "hello" });
    for (let i = 0; i < 5; i += 1) {
      latest().drop(1006);
      timers.advance(60000);
    }
    latest().drop(1006); // attempt 5: 16 s cap
    const shown = [];
    for (let i = 0; i < 16; i += 1) {
      shown.push(statuses().at(-1));
      timers.advance(1000);
    }
    assert.equal(shown[0], "reconnecting 16");
    assert.equal(shown[10], "reconnecting 6");
  });

  test("Reconnect now cancels the wait and connects at once, with ?after=", () => {
    conn.connect();
    latest().open();
    latest().receive({ type: "hello" });
    maxId = 9;
    for (let i = 0; i < 4; i += 1) {
      latest().drop(1006);
      timers.advance(60000);
    }
    latest().drop(1006); // attempt 4: 8 s
    assert.equal(statuses().at(-1), "reconnecting 8");
    timers.advance(3000);
    assert.equal(statuses().at(-1), "reconnecting 5");
    const made = FakeSocket.made.length;
    assert.equal(conn.reconnectNow(), true);
    assert.equal(FakeSocket.made.length, made + 1, "a socket at once");
    assert.equal(latest().url, "ws://chat.test/ws/chat/general/?after=9");
    assert.equal(statuses().at(-1), "connecting");
    assert.equal(conn.reconnectPending(), false, "the backoff timer is cancelled");
    const shown = statuses().length;
    timers.advance(10000);
    assert.equal(FakeSocket.made.length, made + 1, "the cancelled timer never fires");
    assert.equal(statuses().length, shown, "and the countdown stopped");
  });

  test("Reconnect now does nothing while a socket is open or connecting, or once stopped", () => {
    conn.connect();
    assert.equal(conn.reconnectNow(), false, "connecting");
    latest().open();
    latest().receive({ type: "hello" });
    assert.equal(conn.reconnectNow(), false, "open");
    latest().drop(1006);
    store.stopped = true;
    assert.equal(conn.reconnectNow(), false, "stopped");
    assert.equal(FakeSocket.made.length, 1);
  });

  test("a close with 4403 never reconnects", () => {
    conn.connect();
    latest().receive({ type: "hello" });
    latest().drop(4403);
    assert.deepEqual(log.at(-1), ["closed for good"]);
    timers.advance(120000);
    assert.equal(FakeSocket.made.length, 1);
  });

  // --- Per-user socket cap (4429, docs/protocol.md) ---
  test("a close with 4429 (too many sockets) never reconnects, and says why", () => {
    assert.equal(TOO_MANY_SOCKETS, 4429);
    conn.connect();
    latest().open();
    latest().drop(4429); // closed before any hello: the server refused this tab
    assert.deepEqual(log.at(-2), ["gone", 4429]);
    assert.deepEqual(log.at(-1), ["closed for good"]);
    assert.ok(!statuses().some((s) => s.startsWith("reconnecting")));
    timers.advance(120000);
    assert.equal(FakeSocket.made.length, 1);
    assert.equal(CLOSED_TEXT.too_many_sockets, "Too many open tabs or windows: close one and reload.");
  });
  // --- end of per-user socket cap ---

  test("once stopped (a closed frame), a close only says disconnected", () => {
    conn.connect();
    store.stopped = true;
    conn.stop();
    latest().drop(4403);
    assert.equal(statuses().at(-1), "disconnected");
    timers.advance(120000);
    assert.equal(FakeSocket.made.length, 1);
  });

  test("leaving the page closes normally and does not reconnect", () => {
    conn.connect();
    latest().open();
    store.unloading = true;
    conn.close();
    assert.equal(latest().closedWith, 1000);
    latest().drop(1000);
    assert.equal(statuses().at(-1), "disconnected");
    timers.advance(60000);
    assert.equal(FakeSocket.made.length, 1);
  });

  test("the network coming back skips the rest of the wait", () => {
    conn.connect();
    latest().receive({ type: "hello" });
    for (let i = 0; i < 6; i += 1) {
      latest().drop(1006);
      timers.advance(60000);
    }
    latest().drop(1006);
    const before = FakeSocket.made.length;
    conn.networkBack();
    assert.equal(FakeSocket.made.length, before + 1);
  });

  test("frames of a replaced socket are ignored", () => {
    conn.connect();
    const old = latest();
    old.drop(1006);
    timers.advance(1000);
    old.receive({ type: "hello" });
    assert.equal(log.filter((e) => e[0] === "frame").length, 0);
  });
});

describe("keeping alive", () => {
  test("a ping every 25 s once open", () => {
    conn.connect();
    latest().open();
    timers.advance(PING_MS * 2);
    assert.deepEqual(latest().sent, [{ type: "ping" }, { type: "ping" }]);
  });

  test("no frame for 60 s: the socket is dropped and replaced", () => {
    conn.connect();
    const sock = latest();
    sock.open();
    sock.receive({ type: "hello" });
    sock.sent = [];
    // Pings go out, but nothing comes back.
    timers.advance(IDLE_MS + 5000);
    assert.equal(sock.closedWith, 4000);
    assert.ok(log.some((e) => e[0] === "gone" && e[1] === 4000));
    timers.advance(1000);
    assert.equal(FakeSocket.made.length, 2);
  });

  test("any frame keeps it alive", () => {
    conn.connect();
    const sock = latest();
    sock.open();
    for (let i = 0; i < 10; i += 1) {
      timers.advance(30000);
      sock.receive({ type: "pong" });
    }
    assert.equal(sock.closedWith, null);
  });

  test("send fails while no socket is open", () => {
    assert.equal(conn.send({ type: "ping" }), false);
    conn.connect();
    assert.equal(conn.send({ type: "ping" }), false, "still connecting");
    latest().open();
    assert.equal(conn.send({ type: "ping" }), true);
  });
});
