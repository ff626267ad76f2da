// The room frame ({"type": "room", "room": {...}}): the page shows the
// room's new name and topic live, in the heading, the topic line and the
// document title (static/chat/room.js).

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { parseFrame } from "../../static/chat/frames.js";
import { createRoomHeader, roomChanges, titleSuffix } from "../../static/chat/room.js";

function page({ name = "General", topic = "Anything goes", title = "General · Chat" } = {}) {
  const ui = {
    roomName: { textContent: name },
    roomTopic: { textContent: topic, hidden: !topic },
  };
  const doc = { title };
  return { ui, doc, header: createRoomHeader({ ui, doc, slug: "general" }) };
}

const roomFrame = (room) => parseFrame(JSON.stringify({ type: "room", room }));

describe("the room frame", () => {
  test("a rename changes the heading and the title", () => {
    const { ui, doc, header } = page();
    const f = roomFrame({ slug: "general", name: "Town Square", topic: "Anything goes", is_private: false });
    assert.deepEqual(header.update(f.room), { name: "Town Square" });
    assert.equal(ui.roomName.textContent, "Town Square");
    assert.equal(doc.title, "Town Square · Chat");
    assert.equal(ui.roomTopic.textContent, "Anything goes");
    assert.equal(ui.roomTopic.hidden, false);
  });

  test("a new topic shows; an empty one hides the line; a topic appears on a page that had none", () => {
    const { ui, header } = page();
    header.update(roomFrame({ slug: "general", name: "General", topic: "Release day" }).room);
    assert.equal(ui.roomTopic.textContent, "Release day");
    header.update(roomFrame({ slug: "general", name: "General", topic: "" }).room);
    assert.equal(ui.roomTopic.hidden, true);
    header.update(roomFrame({ slug: "general", name: "General", topic: "Back" }).room);
    assert.equal(ui.roomTopic.hidden, false);
    assert.equal(ui.roomTopic.textContent, "Back");

    const bare = page({ topic: "" });
    assert.equal(bare.ui.roomTopic.hidden, true);
    bare.header.update(roomFrame({ slug: "general", name: "General", topic: "New" }).room);
    assert.equal(bare.ui.roomTopic.hidden, false);
    assert.equal(bare.ui.roomTopic.textContent, "New");
  });

  test("names and topics are text: markup stays as typed", () => {
    const { ui, doc, header } = page();
    header.update(roomFrame({ slug: "general", name: "<b>Bold</b>", topic: "<img src=x onerror=alert(1)>" }).room);
    assert.equal(ui.roomName.textContent, "<b>Bold</b>");
    assert.equal(doc.title, "<b>Bold</b> · Chat");
    assert.equal(ui.roomTopic.textContent, "<img src=x onerror=alert(1)>");
  });

  test("an empty name or a missing topic changes nothing of them", () => {
    const { ui, doc, header } = page();
    assert.deepEqual(header.update(roomFrame({ slug: "general", name: "", topic: null }).room), {});
    assert.equal(ui.roomName.textContent, "General");
    assert.equal(doc.title, "General · Chat");
    assert.equal(ui.roomTopic.textContent, "Anything goes");
    assert.equal(ui.roomTopic.hidden, false);
  });

  test("another room's frame is ignored", () => {
    const { ui, header } = page();
    assert.equal(header.update(roomFrame({ slug: "random", name: "Random", topic: "x" }).room), null);
    assert.equal(ui.roomName.textContent, "General");
  });

  test("a frame without a slug is taken as this room's", () => {
    const { ui, header } = page();
    header.update(roomFrame({ name: "Renamed" }).room);
    assert.equal(ui.roomName.textContent, "Renamed");
  });

  test("the same values twice change nothing the second time", () => {
    const { header } = page();
    const room = roomFrame({ slug: "general", name: "New", topic: "T" }).room;
    assert.deepEqual(header.update(room), { name: "New", topic: "T" });
    assert.deepEqual(header.update(room), {});
    assert.deepEqual(header.current(), { name: "New", topic: "T" });
  });
});

describe("the title", () => {
  test("keeps what follows the room's name", () => {
    assert.equal(titleSuffix("General · Chat", "General"), " · Chat");
    assert.equal(titleSuffix("Something else · Chat", "General"), " · Chat");
    assert.equal(titleSuffix("Chat", "General"), "");
  });

  test("roomChanges reports only what differs", () => {
    const current = { name: "General", topic: "Anything goes" };
    assert.deepEqual(roomChanges({ slug: "general", name: "General", topic: "Anything goes" }, current, "general"), {});
    assert.deepEqual(roomChanges({ slug: "general", name: "G", topic: "" }, current, "general"), { name: "G", topic: "" });
    assert.equal(roomChanges(null, current, "general"), null);
  });
});
