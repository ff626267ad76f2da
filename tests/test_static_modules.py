"""The chat client's ES modules still load after `collectstatic` (DJANGO_DEBUG=0).

The production storage (whitenoise's CompressedManifestStaticFilesStorage)
gives every file a hashed name but does not rewrite the modules' relative
imports (`import { x } from "./store.js";`): the room page's import map sends
each plain module address to its hashed file. Here: collectstatic as in
production into a temporary folder, the room page's script tags rendered with
that manifest, and every import of the hashed main module (and of the modules
it imports, in turn) followed to a hashed file that exists.
"""

from __future__ import annotations

import json
import posixpath
import re
import secrets
import subprocess

from tests.live import PYTHON, ROOT, server_env

# Renders the room page's head and body blocks (script and style tags) with
# the production storage; prints them with STATIC_URL and the storage used.
RENDER = """
import json
from django.conf import settings
from django.template import Context
from django.template.loader import get_template
from django.template.loader_tags import ExtendsNode

template = get_template("chatrooms/room_detail.html").template
blocks = template.nodelist.get_nodes_by_type(ExtendsNode)[0].blocks
html = "".join(
    blocks[name].nodelist.render(Context({"config": {}, "CSP_NONCE": "nonce"}))
    for name in ("extra_head", "extra_body")
)
print(json.dumps({
    "html": html,
    "static_url": settings.STATIC_URL,
    "storage": settings.STORAGES["staticfiles"]["BACKEND"],
}))
"""

IMPORT = re.compile(r"""^\s*import\s[^;]*?\sfrom\s*["'](\.{1,2}/[^"']+)["']\s*;""", re.M | re.S)


def test_hashed_modules_import_hashed_modules_that_exist(tmp_path):
    root = tmp_path / "static"
    env = server_env(
        "sqlite://",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_SECURE="0",
        DJANGO_STATIC_ROOT=str(root),
    )
    for command in (["collectstatic", "--noinput", "-v", "0"], ["shell", "-v", "0", "-c", RENDER]):
        done = subprocess.run(
            [PYTHON, "manage.py", *command],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
    page = json.loads(done.stdout)
    assert page["storage"].endswith("ManifestStaticFilesStorage"), page["storage"]
    static_url = page["static_url"]
    html = page["html"]
    manifest = json.loads((root / "staticfiles.json").read_text())["paths"]
    hashed = {static_url + name for name in manifest.values()}

    def on_disk(url: str):
        assert url.startswith(static_url), url
        return root / url.removeprefix(static_url)

    imports_map = json.loads(
        re.search(r'<script type="importmap"[^>]*>(.*?)</script>', html, re.S).group(1)
    )["imports"]
    for plain, target in imports_map.items():
        assert target in hashed and target != plain, (plain, target)
        assert on_disk(target).is_file(), target
    main = re.search(r'<script type="module" src="([^"]+)"></script>', html).group(1)
    assert main in hashed and main != f"{static_url}chat/chat.js", main
    for href in re.findall(r'<link rel="modulepreload" href="([^"]+)">', html):
        assert href in hashed and on_disk(href).is_file(), href

    # The browser's way: resolve each import against the importing file's
    # address, then through the import map.
    seen: set[str] = set()
    todo = [main]
    while todo:
        url = todo.pop()
        if url in seen:
            continue
        seen.add(url)
        specifiers = IMPORT.findall(on_disk(url).read_text())
        if url == main:
            assert specifiers, "the main module imports the others"
        for specifier in specifiers:
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(url), specifier))
            target = imports_map.get(resolved, resolved)
            assert target in hashed, f"{url}: {specifier} -> {target} is not a hashed file"
            assert on_disk(target).is_file(), f"{url}: {specifier} -> {target} is missing"
            todo.append(target)
    modules = {p.name for p in (ROOT / "static" / "chat").glob("*.js")}
    loaded = {posixpath.basename(url).split(".")[0] + ".js" for url in seen}
    assert loaded == modules, sorted(modules - loaded)
