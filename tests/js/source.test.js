// Rules of the client's source (static/chat/*.js), checked on the files:
// text reaches the page as text, imports stay inside static/chat/ and are
// all in the page's import map, state lives in functions (no module-level
// variables), and the pure modules never touch the DOM.

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const CHAT = join(ROOT, "static", "chat");
const TEMPLATE = join(ROOT, "templates", "chatrooms", "room_detail.html");
const files = readdirSync(CHAT).filter((f) => f.endsWith(".js"));
const source = Object.fromEntries(files.map((f) => [f, readFileSync(join(CHAT, f), "utf8")]));
const code = (f) => source[f].replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, ""); // comments out

const IMPORT = /^import\s+(?:\{[^}]*\}|\*\s+as\s+\w+|\w+)\s+from\s+"([^"]+)";$/gm;
const importsOf = (f) => Array.from(code(f).matchAll(IMPORT), (m) => m[1]);

test("no HTML is ever built from strings", () => {
  for (const f of files) {
    assert.doesNotMatch(code(f), /innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function/, f);
  }
});

test("imports are ./x.js files of static/chat, one per line, ending in a semicolon", () => {
  for (const f of files) {
    const all = code(f).match(/^\s*import\b.*$/gm) || [];
    assert.equal(all.length, importsOf(f).length, `${f}: an import in another shape`);
    for (const spec of importsOf(f)) {
      assert.match(spec, /^\.\/[a-z-]+\.js$/, `${f} imports ${spec}`);
      assert.ok(files.includes(spec.slice(2)), `${f} imports ${spec}, which does not exist`);
    }
    assert.doesNotMatch(code(f), /\bimport\s*\(/, `${f}: no dynamic import`);
  }
});

test("every module is reachable from chat.js, without cycles", () => {
  const seen = new Set();
  const visit = (f, path) => {
    assert.ok(!path.includes(f), `import cycle: ${[...path, f].join(" -> ")}`);
    if (seen.has(f)) return;
    seen.add(f);
    importsOf(f).forEach((spec) => visit(spec.slice(2), [...path, f]));
  };
  visit("chat.js", []);
  assert.deepEqual([...seen].sort(), [...files].sort());
});

test("the room page maps and preloads every module, and loads chat.js as a module", () => {
  const html = readFileSync(TEMPLATE, "utf8");
  const map = html.match(/<script type="importmap" nonce="\{\{ CSP_NONCE \}\}">([\s\S]*?)<\/script>/);
  assert.ok(map, "an import map");
  const mapped = Array.from(
    map[1].matchAll(/"\{% get_static_prefix %\}chat\/([a-z-]+\.js)": "\{% static 'chat\/([a-z-]+\.js)' %\}"/g),
    (m) => {
      assert.equal(m[1], m[2]);
      return m[1];
    }
  );
  const modules = files.filter((f) => f !== "chat.js").sort();
  assert.deepEqual(mapped.sort(), modules);
  const preloaded = Array.from(html.matchAll(/<link rel="modulepreload" href="\{% static 'chat\/([a-z-]+\.js)' %\}">/g), (m) => m[1]);
  assert.deepEqual(preloaded.sort(), [...files].sort());
  assert.ok(html.indexOf('type="importmap"') < html.indexOf('rel="modulepreload"'), "the map comes first");
  assert.match(html, /<script type="module" src="\{% static 'chat\/chat\.js' %\}"><\/script>/);
});

test("no module keeps state of its own at the top level (it lives in store.js or in a factory)", () => {
  for (const f of files) {
    assert.doesNotMatch(code(f), /^(let|var)\s/m, f);
  }
});

test("the logic modules do not touch the DOM", () => {
  for (const f of ["backoff.js", "frames.js", "messages.js", "outbox.js", "store.js", "util.js", "history.js", "read.js", "connection.js"]) {
    assert.doesNotMatch(code(f), /\b(document|window)\b/, f);
  }
});
