// Server frames parsed and checked (static/chat/frames.js): every field the
// client reads has the type it expects; malformed frames are dropped.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { parseFrame } from "../../static/chat/frames.js";

const parse = (obj) => parseFrame(JSON.stringify(obj));

describe("parseFrame", () => {
  test("what is not a JSON object is no frame", () => {
    for (const data of ["not json", "", "null", "42", '"text"', "[]", "{}", '{"type": 7}']) {
      assert.equal(parseFrame(data), null, data);
    }
    assert.equal(parseFrame(new ArrayBuffer(4)), null);
    assert.equal(parseFrame(undefined), null);
  });

  test("unknown types come back as just their type, to be ignored", () => {
    assert.deepEqual(parse({ type: "pong" }), { type: "pong" });
    assert.deepEqual(parse({ type: "from.the.future", x: 1 }), { type: "from.the.future" });
  });

  test("a chat.message has every field, typed", () => {
    const f = parse({
      type: "chat.message",
      id: 12,
      user: "bob",
      display_name: "Bob",
      message: "hi",
      ts: "2025-03-01T10:00:00Z",
      client_id: "c-1",
      edited_at: null,
      extra: true,
    });
    assert.deepEqual(f, {
      type: "chat.message",
      id: 12,
      user: "bob",
      display_name: "Bob",
      message: "hi",
      ts: "2025-03-01T10:00:00Z",
      client_id: "c-1",
      edited_at: null,
    });
  });

  test("the Channels tutorial's shape (no type, a message) is a chat.message", () => {
    const f = parse({ message: "hello", id: 3 });
    assert.equal(f.type, "chat.message");
    assert.equal(f.message, "hello");
    assert.equal(f.user, "");
  });

  test("a chat.message needs a positive whole id", () => {
    for (const id of [0, -1, 1.5, "abc", null, undefined]) {
      assert.equal(parse({ type: "chat.message", id, message: "x" }), null, String(id));
    }
    assert.equal(parse({ type: "chat.message", id: "17", message: "x" }).id, 17);
  });

  test("wrong field types are made harmless", () => {
    const f = parse({ type: "chat.message", id: 1, user: 5, message: 42, ts: {}, client_id: [], edited_at: 9 });
    assert.equal(f.user, "");
    assert.equal(f.message, "42");
    assert.equal(f.ts, "");
    assert.equal(f.client_id, "");
    assert.equal(f.edited_at, null);
    assert.equal(parse({ type: "chat.message", id: 1 }).message, "");
  });

  test("edits and deletes", () => {
    assert.deepEqual(parse({ type: "chat.edit", id: 4, message: "new", edited_at: "2025-01-01T00:00:00Z" }), {
      type: "chat.edit",
      id: 4,
      message: "new",
      edited_at: "2025-01-01T00:00:00Z",
    });
    assert.equal(parse({ type: "chat.edit", id: 4 }).message, null);
    assert.equal(parse({ type: "chat.edit", id: "x" }), null);
    assert.deepEqual(parse({ type: "chat.delete", id: 9 }), { type: "chat.delete", id: 9 });
    assert.equal(parse({ type: "chat.delete" }), null);
  });

  test("hello: room, user, online, names, items, flags", () => {
    const f = parse({
      type: "hello",
      room: { slug: "general", name: "General", topic: "Anything goes", is_private: false },
      user: { username: "alice", display_name: "Alice" },
      online: ["alice", "bob", 3, ""],
      names: { alice: "Alice", bob: 7 },
      messages: [
        { type: "chat.message", id: 1, user: "bob", message: "a" },
        { type: "chat.edit", id: 1, message: "b", edited_at: "2025-01-01T00:00:00Z" },
        { type: "chat.delete", id: 2 },
        { type: "chat.message", id: 0, message: "bad id" },
        { type: "who.knows", id: 3 },
        "junk",
        { id: 5, message: "no type: a message" },
      ],
      has_more: 1,
      last_read: "9",
      truncated: "yes",
    });
    assert.deepEqual(f.room, { slug: "general", name: "General", topic: "Anything goes", is_private: false });
    assert.deepEqual(f.user, { username: "alice", display_name: "Alice" });
    assert.deepEqual(f.online, ["alice", "bob"]);
    assert.deepEqual(f.names, { alice: "Alice", bob: "" });
    assert.deepEqual(
      f.messages.map((m) => [m.type, m.id]),
      [
        ["chat.message", 1],
        ["chat.edit", 1],
        ["chat.delete", 2],
        ["chat.message", 5],
      ]
    );
    assert.equal(f.has_more, true);
    assert.equal(f.last_read, 9);
    assert.equal(f.truncated, false, "only true is true");
  });

  test("a bare hello has safe defaults", () => {
    assert.deepEqual(parse({ type: "hello" }), {
      type: "hello",
      room: null,
      user: null,
      online: [],
      names: {},
      messages: [],
      has_more: false,
      last_read: 0,
      truncated: false,
    });
    assert.equal(parse({ type: "hello", user: { username: "" } }).user, null);
  });

  test("presence, typing, history, error, closed", () => {
    assert.deepEqual(parse({ type: "presence", user: "bob", status: "join", online: ["bob"], names: { bob: "Bob" } }), {
      type: "presence",
      user: "bob",
      status: "join",
      online: ["bob"],
      names: { bob: "Bob" },
    });
    assert.deepEqual(parse({ type: "presence" }).online, []);
    assert.deepEqual(parse({ type: "typing", user: "bob", display_name: "Bob", active: 1 }), {
      type: "typing",
      user: "bob",
      display_name: "Bob",
      active: true,
    });
    assert.equal(parse({ type: "typing", active: true }), null);
    assert.deepEqual(parse({ type: "history", messages: [{ type: "chat.message", id: 2 }] }).messages.length, 1);
    assert.equal(parse({ type: "history" }).has_more, false);
    assert.deepEqual(parse({ type: "error", code: "unavailable", detail: "later", client_id: "c-1" }), {
      type: "error",
      code: "unavailable",
      detail: "later",
      id: 0,
      client_id: "c-1",
    });
    assert.equal(parse({ type: "error", code: "not_found", id: 5 }).id, 5);
    assert.deepEqual(parse({ type: "closed", reason: "kicked" }), { type: "closed", reason: "kicked" });
    assert.deepEqual(parse({ type: "closed" }), { type: "closed", reason: "" });
  });

  test("room: the room's new name and topic", () => {
    const f = parse({ type: "room", room: { slug: "general", name: "General", topic: "Anything goes", is_private: false } });
    assert.deepEqual(f, {
      type: "room",
      room: { slug: "general", name: "General", topic: "Anything goes", is_private: false },
    });
    assert.equal(parse({ type: "room" }), null);
    assert.equal(parse({ type: "room", room: "General" }), null);
    assert.equal(parse({ type: "room", room: [] }), null);
    assert.deepEqual(parse({ type: "room", room: { name: 5, topic: null } }).room, {
      slug: "",
      name: "",
      topic: null,
      is_private: null,
    });
  });
});
