"""The repo's nginx config, really run in front of two server processes:
pages, static files and WebSocket upgrades through it, sockets spread over
both processes, messages crossing between them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
import uuid

import pytest

from tests.live import (
    PYTHON,
    ROOT,
    Browserless,
    Server,
    free_port,
    fresh_database,
    recv_json,
    server_env,
)

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


@pytest.fixture
def nginx_cluster(tmp_path, redis_url, monkeypatch):
    # The servers' access logs say which process took each socket (off by default).
    monkeypatch.setenv("CHAT_ACCESS_LOG", "1")
    if not os.path.exists(NGINX):
        reason = "nginx is not installed (Debian: apt-get install nginx)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    static_root = tmp_path / "static"
    prefix = f"chat-nginx-{uuid.uuid4().hex[:10]}"
    with fresh_database(tmp_path) as url:
        env = server_env(url, redis_url, prefix, DJANGO_STATIC_ROOT=str(static_root))
        subprocess.run(
            [PYTHON, "manage.py", "collectstatic", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=120,
        )
        servers = [Server(env, log=tmp_path / f"server{n}.log").start() for n in range(2)]
        port = free_port()
        site = (ROOT / "deploy/nginx/chat.conf").read_text()
        site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
        site = site.replace("127.0.0.1:8001", f"127.0.0.1:{servers[0].port}")
        site = site.replace("127.0.0.1:8002", f"127.0.0.1:{servers[1].port}")
        site = site.replace("/srv/chat/staticfiles/", f"{static_root}/")
        (tmp_path / "chat.conf").write_text(site)
        (tmp_path / "nginx.conf").write_text(
            # Workers as root when the test runs as root: pytest's temporary
            # folders are private to their owner (nginx's default is nobody).
            f"daemon off;\nworker_processes 1;\n{'user root;' if os.geteuid() == 0 else ''}\n"
            f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log warn;\n"
            "events { worker_connections 1024; }\n"
            "http {\n  include /etc/nginx/mime.types;\n"
            f"  access_log {tmp_path}/access.log;\n"
            f"  client_body_temp_path {tmp_path}/body;\n  proxy_temp_path {tmp_path}/proxy;\n"
            f"  include {tmp_path}/chat.conf;\n}}\n"
        )
        proxy = subprocess.Popen(
            [NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
                    break
                except OSError:
                    assert proxy.poll() is None, proxy.stderr.read().decode()
                    assert time.monotonic() < deadline, "nginx did not start"
                    time.sleep(0.2)
            front = Server(env, port=port)  # addresses only; nginx is the front
            yield front, servers, tmp_path
        finally:
            proxy.terminate()
            proxy.wait(10)
            for server in servers:
                server.stop()


async def test_pages_static_and_sockets_through_nginx(nginx_cluster):
    front, servers, tmp_path = nginx_cluster
    people = [Browserless(front).sign_up(f"user{n}") for n in range(4)]
    people[0].post_form("/chats/enter/", {"name": "Proxied"})
    status, page = people[0].get("/chats/proxied/")
    assert status == 200
    script = re.search(r'src="(/static/chat/chat[^"]*\.js)"', page).group(1)
    with urllib.request.urlopen(f"{front.base}{script}", timeout=5) as response:
        assert response.status == 200
        assert "public" in response.headers["Cache-Control"]  # served by nginx itself

    sockets = [await person.socket("proxied") for person in people]
    for ws in sockets:
        await recv_json(ws, "hello")
    # least_conn spread the four sockets over both processes.
    connects = [
        (tmp_path / f"server{n}.log").read_text().count("WSCONNECT /ws/chat/proxied/")
        for n in range(2)
    ]
    assert sorted(connects) == [2, 2], connects
    await sockets[0].send(json.dumps({"type": "chat.message", "message": "through nginx"}))
    for ws in sockets:
        assert (await recv_json(ws, "chat.message"))["message"] == "through nginx"
    for ws in sockets:
        await ws.close()
