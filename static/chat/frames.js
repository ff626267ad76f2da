/*
 * Server frames (docs/protocol.md), parsed and checked once: every field the
 * client reads comes out of here with the type it expects, so the rest of
 * the client never meets a malformed value. Unknown types come back as
 * {type} (a newer server's frames are ignored, not errors); what cannot be a
 * frame at all comes back as null.
 */

import { toId } from "./util.js";

const str = (v) => (typeof v === "string" ? v : "");
const strOrNull = (v) => (typeof v === "string" && v ? v : null);

export function parseFrame(data) {
  if (typeof data !== "string") return null;
  let raw;
  try {
    raw = JSON.parse(data);
  } catch (err) {
    return null;
  }
  return normalizeFrame(raw);
}

export function normalizeFrame(raw) {
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) return null;
  // The Channels tutorial's shape: no type, a message.
  const type = raw.type || (raw.message !== undefined ? "chat.message" : "");
  if (typeof type !== "string" || !type) return null;
  switch (type) {
    case "hello":
      return normalizeHello(raw);
    case "chat.message":
      return normalizeMessage(raw);
    case "chat.edit":
      return normalizeEdit(raw);
    case "chat.delete":
      return normalizeDelete(raw);
    case "presence":
      return {
        type,
        user: str(raw.user),
        status: str(raw.status),
        online: normalizeOnline(raw.online),
        names: normalizeNames(raw.names),
      };
    case "typing": {
      const user = str(raw.user);
      if (!user) return null;
      return { type, user, display_name: str(raw.display_name), active: !!raw.active };
    }
    case "history":
      return { type, messages: normalizeItems(raw.messages), has_more: !!raw.has_more };
    case "error":
      return {
        type,
        code: str(raw.code),
        detail: str(raw.detail),
        id: toId(raw.id),
        client_id: str(raw.client_id),
      };
    case "closed":
      return { type, reason: str(raw.reason) };
    case "room": {
      const room = normalizeRoom(raw.room);
      return room ? { type, room } : null;
    }
    default:
      return { type }; // pong, and anything newer than this client
  }
}

export function normalizeHello(raw) {
  const user =
    raw.user && typeof raw.user === "object" && typeof raw.user.username === "string" && raw.user.username
      ? { username: raw.user.username, display_name: str(raw.user.display_name) }
      : null;
  return {
    type: "hello",
    room: normalizeRoom(raw.room),
    user,
    online: normalizeOnline(raw.online),
    names: normalizeNames(raw.names),
    messages: normalizeItems(raw.messages),
    has_more: !!raw.has_more,
    last_read: toId(raw.last_read),
    truncated: raw.truncated === true,
  };
}

/* A chat.message (live, in hello or in history); null without a valid id. */
export function normalizeMessage(m) {
  if (!m || typeof m !== "object") return null;
  const id = toId(m.id);
  if (!id) return null;
  return {
    type: "chat.message",
    id,
    user: str(m.user),
    display_name: str(m.display_name),
    message: typeof m.message === "string" ? m.message : String(m.message ?? ""),
    ts: str(m.ts),
    client_id: str(m.client_id),
    edited_at: strOrNull(m.edited_at),
  };
}

export function normalizeEdit(m) {
  const id = toId(m && m.id);
  if (!id) return null;
  return {
    type: "chat.edit",
    id,
    message: typeof m.message === "string" ? m.message : null,
    edited_at: strOrNull(m.edited_at),
  };
}

export function normalizeDelete(m) {
  const id = toId(m && m.id);
  return id ? { type: "chat.delete", id } : null;
}

/* An item of hello.messages or history.messages: a message, or a catch-up edit or delete. */
export function normalizeItem(item) {
  if (!item || typeof item !== "object") return null;
  const type = item.type || "chat.message";
  if (type === "chat.message") return normalizeMessage(item);
  if (type === "chat.edit") return normalizeEdit(item);
  if (type === "chat.delete") return normalizeDelete(item);
  return null;
}

export function normalizeItems(list) {
  if (!Array.isArray(list)) return [];
  const items = [];
  list.forEach((item) => {
    const n = normalizeItem(item);
    if (n) items.push(n);
  });
  return items;
}

export function normalizeOnline(list) {
  return Array.isArray(list) ? list.filter((u) => typeof u === "string" && u) : [];
}

export function normalizeNames(map) {
  const names = {};
  if (!map || typeof map !== "object" || Array.isArray(map)) return names;
  Object.keys(map).forEach((username) => {
    if (username) names[username] = str(map[username]);
  });
  return names;
}

/* A room's description (hello.room, the room frame); null if it is not one. */
export function normalizeRoom(room) {
  if (!room || typeof room !== "object" || Array.isArray(room)) return null;
  return {
    slug: str(room.slug),
    name: str(room.name),
    topic: typeof room.topic === "string" ? room.topic : null, // null: not told
    is_private: typeof room.is_private === "boolean" ? room.is_private : null,
  };
}
