/*
 * The one piece of state that several modules read: the page's settings,
 * who I am, the display names known, the connection's phase and who is
 * online. Everything else is private to the module that owns it; modules
 * reach each other's behaviour only through the functions chat.js wires.
 */

/* The page's #chat-config JSON, read with defaults and bounds; null if unreadable. */
export function readConfig(text) {
  let raw;
  try {
    raw = JSON.parse(text || "{}") || {};
  } catch (err) {
    return null;
  }
  if (typeof raw !== "object" || Array.isArray(raw)) return null;
  return {
    slug: typeof raw.slug === "string" ? raw.slug : "",
    wsPath: String(raw.wsPath || ""),
    lobbyUrl: typeof raw.lobbyUrl === "string" ? raw.lobbyUrl : "",
    username: String(raw.username || ""),
    displayName: String(raw.displayName || ""),
    maxChars: Math.max(1, Number(raw.maxChars) || 4000),
    historyPage: Math.min(100, Math.max(1, Number(raw.historyPage) || 50)),
  };
}

export function createStore(config, { canModerate = false } = {}) {
  const cfg = config || readConfig("{}");
  const store = {
    config: cfg,
    me: cfg.username,
    canModerate: !!canModerate,
    names: new Map(), // username -> display name
    connection: "connecting", // the status badge: connecting, connected, reconnecting, disconnected
    ready: false, // a hello arrived on the current socket
    stopped: false, // the server closed the room to this page for good
    unloading: false, // the page is being left
    helloSeen: false, // a hello arrived on some socket of this page
    online: [], // usernames, as the server sorted them
    namesDirty: false, // a display name of someone online changed: redraw the list
  };
  if (store.me) store.names.set(store.me, cfg.displayName || store.me);
  return store;
}

export function displayName(store, username) {
  return store.names.get(username) || username;
}

/* Learns a display name; true if it changed. */
export function rememberName(store, username, name) {
  if (typeof username !== "string" || !username) return false;
  const shown = typeof name === "string" && name ? name : username;
  if (store.names.get(username) === shown) return false;
  store.names.set(username, shown);
  if (store.online.includes(username)) store.namesDirty = true;
  return true;
}

export function rememberNames(store, map) {
  if (!map || typeof map !== "object") return;
  Object.keys(map).forEach((username) => rememberName(store, username, map[username]));
}

/*
 * How a person is shown, as {name, handle}: the display name with the
 * @username beside it, since only the username is unique (a display name
 * can copy another's, or look like it: "аlice" in Cyrillic); the @username
 * alone when there is no other name. Not a username (the "[deleted user]"
 * placeholder: usernames have no brackets or spaces): the name alone.
 */
export function shownAs(name, user) {
  const isUsername = typeof user === "string" && /^[^\s[\]]+$/.test(user);
  if (!isUsername) return { name: name || user || "Unknown", handle: "" };
  if (!name || name === user) return { name: "@" + user, handle: "" };
  return { name, handle: "@" + user };
}
