/*
 * A small stand-in for the browser's DOM, enough for the client's DOM
 * modules (static/chat/render.js, presence.js) to build their elements under
 * Node: elements, text nodes, fragments, classes, attributes, dataset,
 * textContent, insertion and removal, querySelector by tag and class, and
 * event listeners (`dispatch(type)` runs them).
 * No layout: sizes and scroll positions are plain numbers a test may set.
 * `markup(node)` writes a tree out as HTML, escaped, for assertions.
 */

class FakeNode {
  constructor(doc) {
    this.ownerDocument = doc;
    this.parentNode = null;
    this.childNodes = [];
  }

  get firstChild() {
    return this.childNodes[0] || null;
  }

  get lastChild() {
    return this.childNodes[this.childNodes.length - 1] || null;
  }

  get nextSibling() {
    if (!this.parentNode) return null;
    const siblings = this.parentNode.childNodes;
    return siblings[siblings.indexOf(this) + 1] || null;
  }

  get isConnected() {
    let node = this;
    while (node.parentNode) node = node.parentNode;
    return node === this.ownerDocument;
  }

  get textContent() {
    return this.childNodes.map((child) => child.textContent).join("");
  }

  set textContent(value) {
    this.childNodes.forEach((child) => {
      child.parentNode = null;
    });
    this.childNodes = [];
    const text = String(value ?? "");
    if (text) this.appendChild(this.ownerDocument.createTextNode(text));
  }

  appendChild(node) {
    return this.insertBefore(node, null);
  }

  append(...nodes) {
    nodes.forEach((node) =>
      this.appendChild(typeof node === "string" ? this.ownerDocument.createTextNode(node) : node)
    );
  }

  insertBefore(node, ref) {
    if (node instanceof FakeFragment) {
      node.childNodes.slice().forEach((child) => this.insertBefore(child, ref));
      return node;
    }
    if (node.parentNode) node.parentNode.removeChild(node);
    const at = ref ? this.childNodes.indexOf(ref) : -1;
    if (ref && at < 0) throw new Error("insertBefore: the reference is not a child");
    if (at < 0) this.childNodes.push(node);
    else this.childNodes.splice(at, 0, node);
    node.parentNode = this;
    return node;
  }

  removeChild(node) {
    const at = this.childNodes.indexOf(node);
    if (at < 0) throw new Error("removeChild: not a child");
    this.childNodes.splice(at, 1);
    node.parentNode = null;
    return node;
  }

  remove() {
    if (this.parentNode) this.parentNode.removeChild(this);
  }

  contains(node) {
    for (let n = node; n; n = n.parentNode) if (n === this) return true;
    return false;
  }
}

class FakeText extends FakeNode {
  constructor(doc, data) {
    super(doc);
    this.nodeType = 3;
    this.data = String(data);
  }

  get textContent() {
    return this.data;
  }

  set textContent(value) {
    this.data = String(value);
  }
}

class FakeFragment extends FakeNode {}

function matches(el, selector) {
  const m = selector.match(/^([a-z]*)((?:\.[\w-]+)*)$/i);
  if (!m) throw new Error(`fake-dom: unsupported selector ${selector}`);
  if (m[1] && el.tagName !== m[1].toUpperCase()) return false;
  return m[2]
    .split(".")
    .filter(Boolean)
    .every((cls) => el.classList.contains(cls));
}

class FakeElement extends FakeNode {
  constructor(doc, tag) {
    super(doc);
    this.nodeType = 1;
    this.tagName = tag.toUpperCase();
    this.attributes = new Map();
    this.dataset = {};
    this.classes = [];
    this.hidden = false;
    this.disabled = false;
    this.scrollTop = 0;
    this.scrollHeight = 0;
    this.clientHeight = 0;
    this.style = {};
    this.value = "";
    this.listeners = {}; // type -> [fn]
    const el = this;
    this.classList = {
      add: (...names) => names.forEach((n) => el.classes.includes(n) || el.classes.push(n)),
      remove: (...names) => {
        el.classes = el.classes.filter((c) => !names.includes(c));
      },
      contains: (n) => el.classes.includes(n),
      toggle: (n, force) => {
        const on = force === undefined ? !el.classes.includes(n) : !!force;
        if (on) el.classList.add(n);
        else el.classList.remove(n);
        return on;
      },
    };
  }

  get className() {
    return this.classes.join(" ");
  }

  set className(value) {
    this.classes = String(value).split(/\s+/).filter(Boolean);
  }

  get children() {
    return this.childNodes.filter((n) => n instanceof FakeElement);
  }

  setAttribute(name, value) {
    this.attributes.set(name, String(value));
  }

  getAttribute(name) {
    return this.attributes.has(name) ? this.attributes.get(name) : null;
  }

  removeAttribute(name) {
    this.attributes.delete(name);
  }

  hasAttribute(name) {
    return this.attributes.has(name);
  }

  querySelectorAll(selector) {
    const found = [];
    const walk = (node) => {
      node.children.forEach((child) => {
        if (matches(child, selector)) found.push(child);
        walk(child);
      });
    };
    walk(this);
    return found;
  }

  querySelector(selector) {
    return this.querySelectorAll(selector)[0] || null;
  }

  focus() {
    this.ownerDocument.activeElement = this;
  }

  addEventListener(type, fn) {
    (this.listeners[type] = this.listeners[type] || []).push(fn);
  }

  /* Runs the listeners of `type` with a stand-in event; the event. */
  dispatch(type, props = {}) {
    const ev = { type, target: this, defaultPrevented: false, ...props };
    ev.preventDefault = () => {
      ev.defaultPrevented = true;
    };
    (this.listeners[type] || []).forEach((fn) => fn(ev));
    return ev;
  }

  getBoundingClientRect() {
    return { top: 0, bottom: 0, left: 0, right: 0, height: 0, width: 0 };
  }
}

class FakeDocument extends FakeNode {
  constructor() {
    super(null);
    this.ownerDocument = this;
    this.activeElement = null;
    this.title = "";
  }

  createElement(tag) {
    return new FakeElement(this, tag);
  }

  createTextNode(text) {
    return new FakeText(this, text);
  }

  createDocumentFragment() {
    return new FakeFragment(this);
  }
}

/* A new document; `doc.body` is an element already in it. */
export function fakeDocument() {
  const doc = new FakeDocument();
  doc.body = doc.createElement("body");
  doc.appendChild(doc.body);
  return doc;
}

const escape = (s) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/* The tree as HTML: tags with their class (and other attributes), text escaped. */
export function markup(node) {
  if (node instanceof FakeText) return escape(node.data);
  const inner = node.childNodes.map(markup).join("");
  if (!(node instanceof FakeElement)) return inner;
  const tag = node.tagName.toLowerCase();
  const attrs = [];
  if (node.classes.length) attrs.push(`class="${escape(node.className)}"`);
  node.attributes.forEach((v, k) => attrs.push(`${k}="${escape(v)}"`));
  return `<${tag}${attrs.length ? " " + attrs.join(" ") : ""}>${inner}</${tag}>`;
}

/* Every text node under `node` with the element that holds it. */
export function textNodes(node) {
  const found = [];
  const walk = (n) => {
    if (n instanceof FakeText) found.push({ text: n.data, parent: n.parentNode });
    else n.childNodes.forEach(walk);
  };
  walk(node);
  return found;
}
