// The message list (static/chat/messages.js): order by id, no duplicates,
// hello / history / live merged, catch-up edits and deletes, truncated
// catch-up, layout (days, groups, the "New messages" divider).

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { normalizeFrame } from "../../static/chat/frames.js";
import { createMessageList, GROUP_MS, layoutRecords, unreadAfterFor } from "../../static/chat/messages.js";
import { createStore, readConfig } from "../../static/chat/store.js";

const store = (me = "alice") => createStore(readConfig(JSON.stringify({ username: me })));

function msg(id, extra = {}) {
  return normalizeFrame({
    type: "chat.message",
    id,
    user: "bob",
    display_name: "Bob",
    message: "m" + id,
    ts: "2025-03-01T10:00:00Z",
    client_id: "",
    edited_at: null,
    ...extra,
  });
}

const hello = (messages, extra = {}) =>
  normalizeFrame({ type: "hello", messages, has_more: false, last_read: 0, ...extra });

const texts = (list) => list.records().map((r) => r.message);

describe("live messages", () => {
  test("are kept in id order whatever order they arrive in", () => {
    const list = createMessageList(store());
    for (const id of [5, 2, 9, 7, 1]) list.addMessage(msg(id));
    assert.deepEqual(list.ids(), [1, 2, 5, 7, 9]);
    assert.equal(list.maxSeenId, 9);
    assert.equal(list.minSeenId, 1);
    assert.equal(list.lastId(), 9);
  });

  test("an add says which message it goes before", () => {
    const list = createMessageList(store());
    list.addMessage(msg(10));
    list.addMessage(msg(30));
    const change = list.addMessage(msg(20));
    assert.equal(change.kind, "add");
    assert.equal(change.next.id, 30);
    assert.equal(list.addMessage(msg(40)).next, null);
  });

  test("a second copy of an id is not added again", () => {
    const list = createMessageList(store());
    assert.equal(list.addMessage(msg(3)).kind, "add");
    assert.equal(list.addMessage(msg(3, { message: "other" })).kind, "none");
    assert.deepEqual(texts(list), ["m3"]);
  });

  test("a later copy with a newer edit updates the text", () => {
    const list = createMessageList(store());
    list.addMessage(msg(3, { edited_at: "2025-03-01T10:01:00Z", message: "first edit" }));
    const older = list.addMessage(msg(3, { edited_at: "2025-03-01T10:00:30Z", message: "older" }));
    assert.equal(older.kind, "none");
    const newer = list.addMessage(msg(3, { edited_at: "2025-03-01T10:02:00Z", message: "second edit" }));
    assert.equal(newer.kind, "update");
    assert.deepEqual(texts(list), ["second edit"]);
  });

  test("a deleted id never comes back", () => {
    const list = createMessageList(store());
    list.addMessage(msg(4));
    assert.equal(list.applyDelete(4).kind, "remove");
    assert.equal(list.addMessage(msg(4)).kind, "none");
    assert.deepEqual(list.ids(), []);
  });

  test("own messages carry their client_id as the echo; others' do not", () => {
    const list = createMessageList(store("alice"));
    assert.equal(list.addMessage(msg(1, { user: "alice", client_id: "c-1" })).echo, "c-1");
    assert.equal(list.addMessage(msg(2, { user: "bob", client_id: "c-2" })).echo, "");
    // Already shown, or deleted: still an echo (the outbox settles on it).
    assert.equal(list.addMessage(msg(1, { user: "alice", client_id: "c-1" })).echo, "c-1");
    list.applyDelete(3);
    assert.equal(list.addMessage(msg(3, { user: "alice", client_id: "c-3" })).echo, "c-3");
  });

  test("display names are learnt from messages", () => {
    const s = store();
    const list = createMessageList(s);
    list.addMessage(msg(1, { user: "carol", display_name: "Carol D" }));
    assert.equal(s.names.get("carol"), "Carol D");
    assert.equal(list.get(1).name, "Carol D");
    list.addMessage(msg(2, { user: "dan", display_name: "" }));
    assert.equal(list.get(2).name, "dan");
  });
});

describe("hello", () => {
  test("a fresh connect replaces the list with the latest page", () => {
    const list = createMessageList(store());
    list.addMessage(msg(1));
    list.addMessage(msg(2));
    const { catchup, changes } = list.hello(hello([msg(5), msg(6)], { has_more: true }), false);
    assert.equal(catchup, false);
    assert.equal(changes[0].kind, "clear");
    assert.deepEqual(list.ids(), [5, 6]);
    assert.equal(list.hasMore, true);
    assert.equal(list.minSeenId, 5);
    assert.equal(list.maxSeenId, 6);
  });

  test("a catch-up (?after=) merges messages, edits and deletes in order", () => {
    const list = createMessageList(store());
    list.hello(hello([msg(1), msg(2), msg(3)], { has_more: true }), false);
    const items = [
      msg(4),
      msg(5),
      { type: "chat.edit", id: 2, message: "edited while away", edited_at: "2025-03-01T11:00:00Z" },
      { type: "chat.delete", id: 1 },
    ];
    const { catchup, changes } = list.hello(hello(items, { truncated: false, has_more: false }), true);
    assert.equal(catchup, true);
    assert.deepEqual(
      changes.map((c) => c.kind),
      ["add", "add", "update", "remove"]
    );
    assert.deepEqual(list.ids(), [2, 3, 4, 5]);
    assert.equal(list.get(2).message, "edited while away");
    assert.equal(list.get(2).editedAt, "2025-03-01T11:00:00Z");
    assert.equal(list.hasMore, true, "a catch-up says nothing about older pages");
    assert.equal(changes[3].deleted, 1);
  });

  test("a catch-up that repeats messages shown live shows them once", () => {
    const list = createMessageList(store());
    list.hello(hello([msg(1)]), false);
    list.addMessage(msg(2)); // live, just before the socket broke
    list.hello(hello([msg(2), msg(3)], { truncated: false }), true);
    assert.deepEqual(list.ids(), [1, 2, 3]);
  });

  test("a truncated catch-up starts again from the latest page", () => {
    const list = createMessageList(store());
    list.hello(hello([msg(1), msg(2)]), false);
    const { catchup, changes } = list.hello(hello([msg(900), msg(901)], { truncated: true, has_more: true }), true);
    assert.equal(catchup, false);
    assert.equal(changes[0].kind, "clear");
    assert.deepEqual(list.ids(), [900, 901]);
    assert.equal(list.minSeenId, 900);
    assert.equal(list.hasMore, true);
  });

  test("edits and deletes of messages not shown change nothing", () => {
    const list = createMessageList(store());
    list.hello(hello([msg(10)]), false);
    const { changes } = list.hello(
      hello([{ type: "chat.edit", id: 3, message: "x", edited_at: null }, { type: "chat.delete", id: 4 }]),
      true
    );
    assert.deepEqual(
      changes.map((c) => c.kind),
      ["none", "none"]
    );
    assert.deepEqual(list.ids(), [10]);
  });

  test("an edit older than the one shown is ignored", () => {
    const list = createMessageList(store());
    list.addMessage(msg(1, { message: "new", edited_at: "2025-03-01T12:00:00Z" }));
    const change = list.applyEdit({ id: 1, message: "old", edited_at: "2025-03-01T11:00:00Z" });
    assert.equal(change.kind, "none");
    assert.equal(list.get(1).message, "new");
    const live = list.applyEdit({ id: 1, message: "newest", edited_at: "2025-03-01T13:00:00Z" });
    assert.equal(live.kind, "update");
    assert.equal(live.edit, true);
  });
});

describe("history", () => {
  test("an older page merges before the messages shown, without duplicates", () => {
    const list = createMessageList(store());
    list.hello(hello([msg(51), msg(52)], { has_more: true }), false);
    const changes = list.history(normalizeFrame({ type: "history", messages: [msg(49), msg(50), msg(51)], has_more: false }));
    assert.deepEqual(
      changes.map((c) => c.kind),
      ["add", "add", "none"]
    );
    assert.deepEqual(list.ids(), [49, 50, 51, 52]);
    assert.equal(list.minSeenId, 49);
    assert.equal(list.hasMore, false);
  });
});

describe("layout", () => {
  const at = (id, user, iso) => ({ id, user, date: new Date(iso) });

  test("a person's messages within 5 minutes form a group", () => {
    const rows = layoutRecords(
      [
        at(1, "bob", "2025-03-01T10:00:00Z"),
        at(2, "bob", "2025-03-01T10:04:00Z"),
        at(3, "amy", "2025-03-01T10:04:30Z"),
        at(4, "amy", new Date(Date.parse("2025-03-01T10:04:30Z") + GROUP_MS).toISOString()),
      ],
      null
    );
    assert.deepEqual(
      rows.map((r) => r.cont),
      [false, true, false, false]
    );
    assert.deepEqual(
      rows.map((r) => r.newDay),
      [true, false, false, false]
    );
  });

  test("a day separator goes before the first message of each day", () => {
    const rows = layoutRecords(
      [at(1, "bob", "2025-03-01T12:00:00"), at(2, "bob", "2025-03-01T12:01:00"), at(3, "bob", "2025-03-02T12:00:00")],
      null
    );
    assert.deepEqual(
      rows.map((r) => r.newDay),
      [true, false, true]
    );
    assert.equal(rows[2].cont, false);
  });

  test("the New messages divider goes before the first message after the marker and breaks the group", () => {
    const recs = [at(1, "bob", "2025-03-01T10:00:00Z"), at(2, "bob", "2025-03-01T10:01:00Z"), at(3, "bob", "2025-03-01T10:02:00Z")];
    const rows = layoutRecords(recs, 1);
    assert.deepEqual(
      rows.map((r) => r.divider),
      [false, true, false]
    );
    assert.equal(rows[1].cont, false);
    assert.deepEqual(
      layoutRecords(recs, 3).map((r) => r.divider),
      [false, false, false]
    );
  });

  test("the divider shows on a first hello only for others' messages after the marker", () => {
    const items = [msg(5, { user: "alice" }), msg(6, { user: "bob" })];
    assert.equal(unreadAfterFor(items, 4, "alice"), 4);
    assert.equal(unreadAfterFor([msg(5, { user: "alice" })], 4, "alice"), null);
    assert.equal(unreadAfterFor(items, 0, "alice"), null);
    assert.equal(unreadAfterFor(items, 6, "alice"), null);
  });
});
