// The connection badge (static/chat/notices.js): its text, the countdown
// while it waits to reconnect (out of the live region's spoken text), and
// the "Reconnect now" button shown only while the wait runs.

import assert from "node:assert/strict";
import { beforeEach, describe, test } from "node:test";

import { createNotices, statusText } from "../../static/chat/notices.js";
import { createStore, readConfig } from "../../static/chat/store.js";
import { fakeDocument, markup } from "./fake-dom.js";

let doc;
let store;
let badge; // #chat-status, role="status"
let button; // #chat-reconnect
let notices;

beforeEach(() => {
  doc = fakeDocument();
  store = createStore(readConfig("{}"));
  badge = doc.createElement("span");
  button = doc.createElement("button");
  button.hidden = true;
  doc.body.append(badge, button);
  notices = createNotices({ store, ui: { status: badge, reconnect: button }, doc });
});

/* The text a screen reader gets from the badge: aria-hidden parts left out. */
function spoken(node) {
  if (node.nodeType !== 1) return node.textContent;
  if (node.getAttribute("aria-hidden") === "true") return "";
  return node.childNodes.map(spoken).join("");
}

describe("the connection badge", () => {
  test("says each phase, and the seconds until the next try", () => {
    assert.equal(statusText("connecting"), "Connecting…");
    assert.equal(statusText("connected"), "Connected");
    assert.equal(statusText("reconnecting", 8), "Reconnecting in 8 s…");
    assert.equal(statusText("reconnecting"), "Reconnecting…");
    assert.equal(statusText("disconnected"), "Disconnected");
  });

  test("counts down once a second without changing what a screen reader hears", () => {
    notices.setStatus("connected");
    notices.setStatus("reconnecting", 8);
    assert.equal(badge.textContent, "Reconnecting in 8 s…");
    assert.equal(spoken(badge), "Reconnecting…");
    const phaseNodes = badge.childNodes.slice();
    notices.setStatus("reconnecting", 7);
    assert.equal(badge.textContent, "Reconnecting in 7 s…");
    assert.equal(spoken(badge), "Reconnecting…");
    // Only the hidden countdown changed: the live text nodes are the same ones.
    assert.deepEqual(badge.childNodes, phaseNodes);
    assert.equal(
      markup(badge),
      '<span class="text-bg-warning">Reconnecting' +
        '<span class="chat-status-wait" aria-hidden="true"> in 7 s</span>…</span>'
    );
    assert.equal(badge.dataset.state, "reconnecting");
    assert.equal(store.connection, "reconnecting");
  });

  test("Reconnect now shows only while a wait runs", () => {
    notices.setStatus("connecting");
    assert.equal(button.hidden, true);
    notices.setStatus("reconnecting", 3);
    assert.equal(button.hidden, false);
    notices.setStatus("connecting");
    assert.equal(button.hidden, true);
    assert.equal(badge.textContent, "Connecting…");
    notices.setStatus("reconnecting", 1);
    notices.setStatus("disconnected");
    assert.equal(button.hidden, true);
    assert.equal(badge.textContent, "Disconnected");
  });
});
