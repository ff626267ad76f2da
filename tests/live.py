"""Real servers for tests that need real sockets: daphne processes, a fresh
database they share, and clients that sign in through real sessions.

Used by the live-server, multi-process and browser tests. The database is a
fresh PostgreSQL database when DATABASE_URL names PostgreSQL (CI), else a
fresh SQLite file; both are removed at the end.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

from deploy.servers import command

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def server_command(kind: str, port: int) -> list[str]:
    """The command line of docs/deploy.md for `kind` ("daphne" or "uvicorn")."""
    return command(kind, port) + (
        ["--no-access-log", "--log-level", "warning"] if kind == "uvicorn" else []
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def fresh_database(tmp_path: Path):
    """Yield a DATABASE_URL for an empty, migrated database; drop it afterwards."""
    configured = os.environ.get("DATABASE_URL", "")
    if configured.startswith(("postgres://", "postgresql://")):
        import psycopg

        parsed = urllib.parse.urlparse(configured)
        name = f"chat_live_{uuid.uuid4().hex[:12]}"
        admin = parsed._replace(path="/postgres").geturl()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = parsed._replace(path=f"/{name}").geturl()
        try:
            migrate(url)
            yield url
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        url = f"sqlite:///{tmp_path / 'live.sqlite3'}"
        migrate(url)
        yield url


def server_env(database_url: str, redis_url: str = "", prefix: str = "", **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CHAT_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="project.settings",
        DJANGO_DEBUG="1",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        REDIS_PREFIX=prefix or f"chat-live-{uuid.uuid4().hex[:10]}",
        DJANGO_LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def migrate(database_url: str) -> None:
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=server_env(database_url),
        check=True,
        timeout=300,
    )


class Server:
    """One daphne process serving the project."""

    def __init__(
        self, env: dict, port: int | None = None, log: Path | None = None, kind: str = "daphne"
    ):
        self.kind = kind
        self.port = port or free_port()
        self.env = env
        self.log_path = log
        self.process: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_base(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> Server:
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            server_command(self.kind, self.port),
            cwd=ROOT,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(self.base + "/healthz", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (OSError, urllib.error.URLError):
                time.sleep(0.2)
        raise RuntimeError(f"{self.kind} did not answer /healthz within 30 s")

    def kill(self) -> None:
        """kill -9: no disconnect handlers run, as in a crash."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@contextlib.contextmanager
def servers_running(env: dict, folder: Path, n: int = 2, kind: str = "daphne"):
    """n server processes on one environment (logs server<i>.log in folder), stopped after."""
    servers = [Server(env, log=folder / f"server{i}.log", kind=kind) for i in range(n)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


class Browserless:
    """A person with a cookie jar: signs up and in through the real forms."""

    def __init__(self, server: Server):
        self.server = server
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def get(self, path: str) -> tuple[int, str]:
        try:
            with self.opener.open(self.server.base + path, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def post_form(self, path: str, data: dict, page: str | None = None) -> tuple[int, str]:
        """POST a form as a browser would, with the CSRF token of the page that shows it."""
        page = page or ("/chats/" if path.startswith("/chats/") else path)
        _, html = self.get(page)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
        body = urllib.parse.urlencode({**data, "csrfmiddlewaretoken": token}).encode()
        request = urllib.request.Request(
            self.server.base + path,
            data=body,
            headers={"Referer": self.server.base + page, "Origin": self.server.base},
        )
        try:
            with self.opener.open(request, timeout=10) as response:
                return response.status, response.geturl()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def sign_up(self, username: str, password: str = "a-long-test-passphrase") -> Browserless:
        status, where = self.post_form(
            "/accounts/signup/",
            {
                "username": username,
                "email": f"{username}@example.com",
                "password1": password,
                "password2": password,
            },
        )
        assert status == 200 and where.endswith("/chats/"), (status, where)
        return self

    def sign_in(self, login: str, password: str = "a-long-test-passphrase") -> Browserless:
        status, where = self.post_form("/accounts/login/", {"login": login, "password": password})
        assert status == 200 and where.endswith("/chats/"), (status, where)
        return self

    def moved_to(self, server: Server) -> Browserless:
        """The same person (session) talking to another process."""
        other = Browserless(server)
        other.jar = self.jar
        other.opener = self.opener
        return other

    @property
    def cookie_header(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.jar)

    async def socket(self, slug: str, query: str = "", origin: str | None = None):
        """An open websockets client connection to the room, hello not yet read."""
        import websockets

        url = f"{self.server.ws_base}/ws/chat/{slug}/" + (f"?{query}" if query else "")
        return await websockets.connect(
            url,
            origin=origin or self.server.base,
            additional_headers={"Cookie": self.cookie_header},
            open_timeout=10,
            max_size=2**20,
        )


async def recv_json(ws, kind: str | None = None, timeout: float = 5) -> dict:  # noqa: ASYNC109
    """The next frame (of that type, skipping others)."""
    import asyncio

    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            if kind is None or frame["type"] == kind:
                return frame
