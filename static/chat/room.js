/*
 * The room's name and topic wherever the page shows them: the heading, the
 * topic line under it and the document title ("<name> · Chat"). They change
 * live when hello or a room frame ({"type": "room", "room": {...}}, sent when
 * the room is renamed or its topic edited) says so.
 */

/* The part of the title after the room's name (" · Chat"), from the title as served. */
export function titleSuffix(title, name) {
  if (name && title.startsWith(name)) return title.slice(name.length);
  const i = title.lastIndexOf(" · ");
  return i >= 0 ? title.slice(i) : "";
}

/*
 * What a room description changes on a page that shows `current` ({name,
 * topic}) of room `slug`: {name?, topic?} with only what differs, or null
 * for a description of another room. An empty or missing name changes
 * nothing (a room always has one); a missing topic is left as it is; an
 * empty one hides the topic line.
 */
export function roomChanges(room, current, slug) {
  if (!room || typeof room !== "object") return null;
  if (slug && room.slug && room.slug !== slug) return null;
  const changes = {};
  if (typeof room.name === "string" && room.name && room.name !== current.name) changes.name = room.name;
  if (typeof room.topic === "string" && room.topic !== current.topic) changes.topic = room.topic;
  return changes;
}

/* ui: {roomName, roomTopic}; doc: the document, whose title follows the name. */
export function createRoomHeader({ ui, doc = globalThis.document, slug = "" }) {
  const current = {
    name: ui.roomName ? ui.roomName.textContent : "",
    topic: ui.roomTopic && !ui.roomTopic.hidden ? ui.roomTopic.textContent : "",
  };
  const suffix = titleSuffix(doc ? doc.title : "", current.name);

  return {
    current: () => ({ ...current }),
    /* hello.room or a room frame's room (frames.js normalizeRoom). */
    update(room) {
      const changes = roomChanges(room, current, slug);
      if (!changes) return null;
      if (changes.name !== undefined) {
        current.name = changes.name;
        if (ui.roomName) ui.roomName.textContent = changes.name;
        if (doc) doc.title = changes.name + suffix;
      }
      if (changes.topic !== undefined) {
        current.topic = changes.topic;
        if (ui.roomTopic) ui.roomTopic.textContent = changes.topic;
      }
      if (ui.roomTopic && typeof room.topic === "string") ui.roomTopic.hidden = !room.topic;
      return changes;
    },
  };
}
