/*
 * The message list: the stored messages this page has, ordered by id, with
 * no duplicate, and what each frame changes in it. No DOM: every method
 * returns the change it made ({kind: "add" | "update" | "remove" | "clear" |
 * "none", ...}) for the renderer to show.
 *
 * A message can arrive more than once (in hello or history and live): the
 * first copy wins, a later copy only brings a newer edit. A deleted id is
 * remembered so that a late copy of it never comes back. hello on a fresh
 * connect (or a truncated catch-up) replaces the list; a catch-up hello
 * (?after=) merges its messages, edits and deletes in order.
 */

import { rememberName } from "./store.js";
import { dayKey, isNewer, parseTime } from "./util.js";

export const GROUP_MS = 5 * 60 * 1000; // a person's messages within 5 minutes form a group

const NONE = Object.freeze({ kind: "none", echo: "" });

export function createMessageList(store) {
  const recs = new Map(); // id -> record
  let order = []; // ids, ascending
  const deletedIds = new Set();

  const list = {
    maxSeenId: 0, // the highest id ever seen (for ?after=)
    minSeenId: 0, // the lowest id of the current list (for history's before)
    hasMore: false, // older messages exist on the server

    get size() {
      return order.length;
    },
    ids() {
      return order.slice();
    },
    get(id) {
      return recs.get(id) || null;
    },
    lastId() {
      return order.length ? order[order.length - 1] : 0;
    },
    /* The records in order. */
    records() {
      return order.map((id) => recs.get(id));
    },

    /* A chat.message frame (frames.js). `echo`: the client_id of one's own message. */
    addMessage(m) {
      const id = m.id;
      if (id > list.maxSeenId) list.maxSeenId = id;
      if (!list.minSeenId || id < list.minSeenId) list.minSeenId = id;
      rememberName(store, m.user, m.display_name);
      const echo = m.user && m.user === store.me && m.client_id ? m.client_id : "";
      if (deletedIds.has(id)) return { kind: "none", echo };

      const existing = recs.get(id);
      if (existing) {
        if (m.edited_at && isNewer(m.edited_at, existing.editedAt)) {
          existing.message = m.message;
          existing.editedAt = m.edited_at;
          return { kind: "update", rec: existing, echo };
        }
        return { kind: "none", echo };
      }

      const rec = {
        id,
        user: m.user,
        name: m.display_name || m.user || "Unknown",
        message: m.message,
        ts: m.ts,
        date: parseTime(m.ts) || new Date(),
        editedAt: m.edited_at || null,
        clientId: m.client_id,
      };
      let lo = 0;
      let hi = order.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (order[mid] < id) lo = mid + 1;
        else hi = mid;
      }
      order.splice(lo, 0, id);
      recs.set(id, rec);
      const nextId = order[lo + 1];
      return { kind: "add", rec, next: nextId === undefined ? null : recs.get(nextId), echo };
    },

    /* A chat.edit (live or in a catch-up); an older edit than the one shown is ignored. */
    applyEdit(f, now = () => new Date().toISOString()) {
      const rec = recs.get(f.id);
      if (!rec) return NONE;
      if (f.edited_at && rec.editedAt && isNewer(rec.editedAt, f.edited_at)) return NONE;
      if (typeof f.message === "string") rec.message = f.message;
      rec.editedAt = f.edited_at || rec.editedAt || now();
      return { kind: "update", rec, edit: true, echo: "" };
    },

    /* A chat.delete (live or in a catch-up); `deleted`: the id, shown or not. */
    applyDelete(id) {
      deletedIds.add(id);
      const rec = recs.get(id);
      if (!rec) return { kind: "none", echo: "", deleted: id };
      recs.delete(id);
      const idx = order.indexOf(id);
      if (idx >= 0) order.splice(idx, 1);
      return { kind: "remove", rec, echo: "", deleted: id };
    },

    /* One item of hello.messages or history.messages. */
    apply(item) {
      if (item.type === "chat.edit") return list.applyEdit(item);
      if (item.type === "chat.delete") return list.applyDelete(item.id);
      if (item.type === "chat.message") return list.addMessage(item);
      return NONE;
    },

    clear() {
      recs.clear();
      order = [];
      return { kind: "clear", echo: "" };
    },

    /*
     * A hello frame. `afterUsed`: the socket asked for ?after=. A catch-up
     * merges; anything else (a first connect, a truncated catch-up) starts
     * the list again from the latest page.
     */
    hello(f, afterUsed) {
      const catchup = !!afterUsed && f.truncated !== true;
      const changes = [];
      if (!catchup) {
        changes.push(list.clear());
        list.hasMore = !!f.has_more;
        list.minSeenId = 0;
      }
      f.messages.forEach((item) => changes.push(list.apply(item)));
      return { catchup, changes };
    },

    /* A history frame: an older page, merged. */
    history(f) {
      const changes = f.messages.map((item) => list.apply(item));
      list.hasMore = !!f.has_more;
      return changes;
    },

    /*
     * How the list is laid out: for each record, whether a day separator goes
     * before it, whether the "New messages" divider does, and whether it
     * continues the previous message's group.
     */
    layout(unreadAfter) {
      return layoutRecords(list.records(), unreadAfter);
    },
  };
  return list;
}

/* The id after which the "New messages" divider goes on a first hello, or null. */
export function unreadAfterFor(items, lastRead, me) {
  if (!(lastRead > 0)) return null;
  const later = items.some((m) => m.type === "chat.message" && m.id > lastRead && m.user !== me);
  return later ? lastRead : null;
}

export function layoutRecords(records, unreadAfter) {
  let dividerBefore = 0;
  if (unreadAfter !== null && unreadAfter !== undefined) {
    const first = records.find((rec) => rec.id > unreadAfter);
    if (first) dividerBefore = first.id;
  }
  let prev = null;
  return records.map((rec) => {
    const newDay = !prev || dayKey(prev.date) !== dayKey(rec.date);
    const divider = rec.id === dividerBefore;
    const cont =
      !!prev &&
      !newDay &&
      !divider &&
      prev.user === rec.user &&
      rec.date - prev.date >= 0 &&
      rec.date - prev.date < GROUP_MS;
    prev = rec;
    return { rec, newDay, divider, cont };
  });
}
