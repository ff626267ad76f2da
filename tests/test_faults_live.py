"""Real server processes under real faults (chatrooms/hub.py, chatrooms/consumers.py):
uvicorn, the production server, with real websockets clients, after a long
quiet spell, while Redis dies and comes back, and while PostgreSQL is cut off.

Faults go through our own redis-server and our own TCP proxy in front of
PostgreSQL (tests/faults.py): the machine's shared Redis and PostgreSQL are
never stopped. As in tests/test_multiprocess.py, the fixtures skip a test when
a service it needs is missing, and fail it when CI=true.

The clients behave as docs/protocol.md asks of one: each keeps the highest
message id it has, reconnects with ?after=<that id>, and sends again, with
the same client_id, every message it does not know stored.
"""

# Fixtures imported from tests.faults are "redefined" by the test parameters that request them.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request

import pytest
import websockets

from tests.faults import own_redis, pg_proxy  # noqa: F401
from tests.live import (
    PYTHON,
    ROOT,
    Browserless,
    Server,
    fresh_database,
    recv_json,
    server_env,
    servers_running,
)

PRESENCE_TIMEOUT = 6  # seconds; production default is 30
QUIET_SECONDS = 20  # longer than redis-py's 15 s health check and our 15 s keep-alive
HEAL_WITHIN = 5.0  # seconds from Redis back to every process healthy and every room working
REFUSED_WITHIN = 2.5  # seconds for a handshake refused (1013) while a dependency is down
RETRY_EVERY = 0.2  # seconds between a client's attempts while the server is unavailable
# psycopg_pool retries a lost connection after 1 s, 2 s, 4 s, … (uncapped): after an outage
# of T seconds the pool may take up to about T more to connect again. Here T is about 8 s.
STORAGE_BACK_WITHIN = 20.0


# --- Helpers -------------------------------------------------------------------------


def _health(server: Server) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(server.base + "/healthz", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def health(server: Server) -> tuple[int, dict]:
    """GET /healthz off the event loop: (status, body)."""
    return await asyncio.to_thread(_health, server)


async def wait_health(server: Server, status: int, within: float) -> tuple[float, dict]:
    """Poll /healthz until it answers `status`: (seconds it took, body)."""
    started = time.monotonic()
    while True:
        code, body = await health(server)
        took = time.monotonic() - started
        if code == status:
            return took, body
        if took > within:
            pytest.fail(f"/healthz of :{server.port} still {code} {body} after {took:.1f} s")
        await asyncio.sleep(0.1)


def stored_messages(database_url: str) -> dict[str, list[tuple[int, str, str]]]:
    """Per room slug, the live messages in storage: (id, username, client_id), by id."""
    query = (
        "SELECT r.slug, m.id, u.username, m.client_id FROM chatrooms_message m"
        " JOIN chatrooms_room r ON r.id = m.room_id"
        " LEFT JOIN accounts_user u ON u.id = m.author_id"
        " WHERE m.deleted_at IS NULL ORDER BY m.id"
    )
    if database_url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(database_url[len("sqlite:///") :])) as conn:
            rows = conn.execute(query).fetchall()
    else:
        import psycopg

        with psycopg.connect(database_url, connect_timeout=5) as conn:
            rows = conn.execute(query).fetchall()
    rooms: dict[str, list[tuple[int, str, str]]] = {}
    for slug, message_id, username, client_id in rows:
        rooms.setdefault(slug, []).append((message_id, username, client_id))
    return rooms


def log_text(server: Server) -> str:
    return server.log_path.read_text(errors="replace") if server.log_path.exists() else ""


def log_lines(server: Server, *needles: str) -> str:
    """The log lines of `server` naming any of `needles` (for failure messages)."""
    return "\n".join(
        line for line in log_text(server).splitlines() if any(n in line for n in needles)
    )


def log_trouble(server: Server) -> str:
    """The server's log from its first traceback on, else its end (for failure messages)."""
    lines = log_text(server).splitlines()
    first = next((n for n, line in enumerate(lines) if "Traceback" in line), len(lines) - 40)
    return "\n".join(lines[max(first, 0) : max(first, 0) + 40]) or "(nothing)"


class Sockets:
    """Every socket a test opens, closed at its end whatever happened."""

    def __init__(self) -> None:
        self.opened: list = []

    async def connect(self, person: Browserless, slug: str, query: str = ""):
        ws = await person.socket(slug, query)
        self.opened.append(ws)
        return ws

    async def close_all(self) -> None:
        for ws in self.opened:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await ws.close()
            transport = getattr(ws, "transport", None)
            if transport is not None:
                transport.abort()


@pytest.fixture
async def sockets():
    registry = Sockets()
    try:
        yield registry
    finally:
        await registry.close_all()


class Chatter:
    """One person's client of one room (see the module docstring)."""

    def __init__(self, person: Browserless, slug: str, sockets: Sockets, name: str):
        self.person, self.slug, self.sockets, self.name = person, slug, sockets, name
        self.ws = None
        self.received: list[int] = []  # chat.message ids as they arrived, over every socket
        self.frames: list[tuple[float, dict]] = []  # every frame, with when it arrived
        self.pending: dict[str, str] = {}  # client_id -> text, not known stored yet
        self.client_ids: list[str] = []  # every client_id this client sent
        self.unavailable: list[str] = []  # client_ids answered `unavailable`
        self.refusals: list[str] = []  # why handshakes failed
        self.resent: list[str] = []  # client_ids sent again after a reconnect

    @property
    def highest(self) -> int:
        return max(self.received, default=0)

    def take(self, frame: dict) -> None:
        self.frames.append((time.monotonic(), frame))
        if frame["type"] == "hello":
            for message in frame["messages"]:
                if message["type"] == "chat.message":
                    self._got(message)
        elif frame["type"] == "chat.message":
            self._got(frame)
        elif frame["type"] == "error" and frame.get("client_id"):
            self.unavailable.append(frame["client_id"])

    def _got(self, message: dict) -> None:
        self.received.append(message["id"])
        self.pending.pop(message["client_id"], None)  # client_ids are unique per test

    async def connect(self) -> dict:
        """Open a socket (catching up from the highest id it has); its hello."""
        query = f"after={self.highest}" if self.received else ""
        self.ws = await self.sockets.connect(self.person, self.slug, query)
        hello = await recv_json(self.ws)
        assert hello["type"] == "hello", hello
        self.take(hello)
        return hello

    async def attempt(self) -> tuple[dict | None, int | None, float]:
        """One handshake: (hello, None, seconds), or (None, close code, seconds)."""
        started = time.monotonic()
        try:
            hello = await self.connect()
        except websockets.ConnectionClosed:
            return None, self.ws.close_code, time.monotonic() - started
        return hello, None, time.monotonic() - started

    async def reconnect(self, within: float) -> int:
        """Try every RETRY_EVERY seconds until a hello arrives; the number of attempts."""
        deadline = time.monotonic() + within
        attempts = 0
        while True:
            attempts += 1
            try:
                hello, code, _ = await self.attempt()
            except (websockets.InvalidHandshake, OSError, TimeoutError) as exc:
                hello, code = None, f"{type(exc).__name__}: {exc}"
            if hello is not None:
                return attempts
            self.refusals.append(str(code))
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name} got no hello in {within} s: {self.refusals}")
            await asyncio.sleep(RETRY_EVERY)

    async def send(self, text: str, client_id: str) -> None:
        """Send a message; a closed socket keeps it pending, to be sent again."""
        self.pending[client_id] = text
        self.client_ids.append(client_id)
        with contextlib.suppress(websockets.ConnectionClosed):
            await self.send_again(text, client_id)

    async def send_again(self, text: str, client_id: str) -> None:
        await self.ws.send(
            json.dumps({"type": "chat.message", "message": text, "client_id": client_id})
        )

    async def resend_pending(self, timeout: float = 5) -> None:  # noqa: ASYNC109
        """Send each pending message again, one by one, until it is known stored."""
        for client_id, text in list(self.pending.items()):
            self.resent.append(client_id)
            await self.send_again(text, client_id)
            await self.until_message(client_id, timeout)

    async def ping(self, timeout: float = 2) -> None:  # noqa: ASYNC109
        await self.ws.send(json.dumps({"type": "ping"}))
        await self.until(lambda f: f["type"] == "pong", timeout)

    async def until(self, predicate, timeout: float = 5) -> dict:  # noqa: ASYNC109
        """Read (and record) frames until one satisfies `predicate`; that frame."""
        async with asyncio.timeout(timeout):
            while True:
                try:
                    frame = json.loads(await self.ws.recv())
                except websockets.ConnectionClosed:
                    pytest.fail(
                        f"{self.name}'s socket closed with {self.ws.close_code}; the server's"
                        f" log says:\n{log_trouble(self.person.server)}"
                    )
                self.take(frame)
                if predicate(frame):
                    return frame

    async def until_message(self, client_id: str, timeout: float = 5) -> dict:  # noqa: ASYNC109
        return await self.until(
            lambda f: f["type"] == "chat.message" and f["client_id"] == client_id, timeout
        )

    async def until_closed(self, timeout: float) -> tuple[int, float]:  # noqa: ASYNC109
        """Read (and record) frames until the server closes: (close code, seconds)."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                while True:
                    self.take(json.loads(await self.ws.recv()))
        except websockets.ConnectionClosed:
            return self.ws.close_code, time.monotonic() - started
        except TimeoutError:
            pytest.fail(f"{self.name}'s socket still open {timeout} s later")

    async def drain(self, seconds: float) -> None:
        """Read (and record) frames for `seconds`; the socket must stay open."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while True:
                    try:
                        self.take(json.loads(await self.ws.recv()))
                    except websockets.ConnectionClosed:
                        pytest.fail(
                            f"{self.name}'s socket closed with {self.ws.close_code}; the"
                            f" server's log says:\n{log_trouble(self.person.server)}"
                        )

    def frames_since(self, since: float, kind: str) -> list[dict]:
        return [frame for at, frame in self.frames if at >= since and frame["type"] == kind]


def check_exactly_once(chatters: list[Chatter], stored: list[tuple[int, str, str]]) -> None:
    """Every stored message reached every client, in id order; none lost, none stored twice."""
    ids = [message_id for message_id, _, _ in stored]
    sent = sorted(cid for chatter in chatters for cid in chatter.client_ids)
    assert sorted({client_id for _, _, client_id in stored}) == sorted(set(sent)), stored
    assert len({client_id for _, _, client_id in stored}) == len(stored), stored
    for chatter in chatters:
        assert chatter.pending == {}, (chatter.name, chatter.pending)
        # What a client shows: each id once (delivery is at least once: a
        # retried message, or one kept while Redis was down, can come twice,
        # and clients drop an id they have). First arrivals in id order: an
        # older id arriving after a newer one would have been a gap that
        # catch-up (?after=) could not fill.
        shown = list(dict.fromkeys(chatter.received))
        missing = sorted(set(ids) - set(shown))
        extra = sorted(set(shown) - set(ids))
        assert (missing, extra) == ([], []), (
            f"{chatter.name}: missing {missing}, not stored {extra}; "
            f"received {chatter.received}, stored {stored}"
        )
        assert shown == ids, f"{chatter.name} not in id order: {chatter.received}"


# --- 1. A process left with no socket for a while ------------------------------------------


@pytest.fixture
def quiet_server(tmp_path, redis_url):
    """One uvicorn process on the shared Redis (its own prefix), default keep-alive."""
    with fresh_database(tmp_path) as url:
        server = Server(server_env(url, redis_url), log=tmp_path / "server.log", kind="uvicorn")
        try:
            yield server.start()
        finally:
            server.stop()


async def test_quiet_process_serves_its_next_socket(quiet_server, sockets):
    server = quiet_server
    alice = Browserless(server).sign_up("alice")
    bob = Browserless(server).sign_up("bob")
    alice.post_form("/chats/enter/", {"name": "Quiet"})
    a = Chatter(alice, "quiet", sockets, "alice")
    await a.connect()
    await a.ws.close()

    await asyncio.sleep(QUIET_SECONDS)  # no socket on the process meanwhile

    a = Chatter(alice, "quiet", sockets, "alice")
    await a.connect()
    await a.send("after the quiet", "alice-1")
    await a.until_message("alice-1")
    await a.drain(3.0)  # stays open
    await a.ping()

    b = Chatter(bob, "quiet", sockets, "bob")
    hello = await b.connect()
    assert hello["online"] == ["alice", "bob"]
    join = await a.until(lambda f: f["type"] == "presence")
    assert (join["user"], join["status"]) == ("bob", "join")
    await b.send("me too", "bob-1")
    for chatter in (a, b):
        assert (await chatter.until_message("bob-1"))["message"] == "me too"
    await a.ping()
    await b.ping()

    log = log_text(server)
    assert "readuntil" not in log, log
    assert "subscription lost" not in log, log


# --- 2. Redis dies and comes back under two processes --------------------------------------


def production_settings(tmp_path) -> dict:
    """DJANGO_DEBUG=0 as deployed (docs/deploy.md), but over plain HTTP; static files collected."""
    settings = {
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_SECURE": "0",  # no TLS in front of the test's servers
        "DJANGO_STATIC_ROOT": str(tmp_path / "static"),
    }
    subprocess.run(
        [PYTHON, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=server_env("sqlite://", **settings),
        check=True,
        timeout=120,
    )
    return settings


@pytest.fixture(params=["debug", "production"])
def redis_cluster(request, tmp_path, own_redis):
    """Two uvicorn processes sharing a fresh database and our own Redis; DJANGO_DEBUG=1, then 0."""
    extra = production_settings(tmp_path) if request.param == "production" else {}
    with fresh_database(tmp_path) as url:
        env = server_env(url, own_redis.url, CHAT_PRESENCE_TIMEOUT=str(PRESENCE_TIMEOUT), **extra)
        with servers_running(env, tmp_path, kind="uvicorn") as servers:
            yield url, servers


async def test_redis_restart_heals_rooms_without_a_process_restart(
    redis_cluster, own_redis, sockets
):
    url, (first, second) = redis_cluster
    alice = Browserless(first).sign_up("alice")
    bob = Browserless(first).sign_up("bob").moved_to(second)
    carol = Browserless(first).sign_up("carol")
    dave = Browserless(first).sign_up("dave").moved_to(second)
    alice.post_form("/chats/enter/", {"name": "Ops"})
    alice.post_form("/chats/enter/", {"name": "Spare"})  # nobody opens it before the outage
    a = Chatter(alice, "ops", sockets, "alice")  # on the first process
    b = Chatter(bob, "ops", sockets, "bob")  # on the second
    c = Chatter(carol, "spare", sockets, "carol")  # first
    d = Chatter(dave, "spare", sockets, "dave")  # second
    await a.connect()
    await b.connect()
    for n in range(2):
        for sender in (a, b):
            await sender.send(f"{sender.name} says {n}", f"{sender.name}-{n}")
            for chatter in (a, b):
                await chatter.until_message(f"{sender.name}-{n}")

    # Redis dies with messages in flight on both processes.
    for sender in (a, b):
        await sender.send(f"{sender.name}, as Redis dies", f"{sender.name}-dying")
    killed = time.monotonic()
    own_redis.kill()
    for sender in (a, b):
        await sender.send(f"{sender.name}, once Redis died", f"{sender.name}-dead")
    for chatter in (a, b):
        code, _ = await chatter.until_closed(5)
        assert code == 4012, (chatter.name, code)
    all_closed = time.monotonic() - killed

    outage = {}
    for server in (first, second):
        _, body = await wait_health(server, 503, within=5)
        assert body["status"] == "error" and body["channel_layer"].startswith("error"), body
        outage[server.port] = body
    refused = {}
    for chatter in (c, d, a, b):  # the spare room is one nobody had joined on either process
        hello, code, took = await chatter.attempt()
        assert (hello, code) == (None, 1013), (chatter.name, hello, code)
        assert took <= REFUSED_WITHIN, (chatter.name, took)
        refused[f"{chatter.name}@{chatter.slug}"] = round(took, 3)
    for server in (first, second):
        code, body = await health(server)
        assert code == 503, body

    # Redis is back on the same port, empty: no process restarts.
    own_redis.start()
    back = time.monotonic()

    async def healthy(server: Server) -> float:
        took, _ = await wait_health(server, 200, within=HEAL_WITHIN)
        return took

    async def room_works(x: Chatter, y: Chatter) -> float:
        """Both reconnect (catching up), send what is pending, then a round trip each way."""
        await asyncio.gather(x.reconnect(HEAL_WITHIN), y.reconnect(HEAL_WITHIN))
        for chatter in (x, y):
            await chatter.resend_pending()
        await x.send(f"{x.name} in {x.slug}, healed", f"{x.name}-healed")
        for chatter in (x, y):
            await chatter.until_message(f"{x.name}-healed")
        first_round_trip = time.monotonic() - back
        await y.send(f"{y.name} in {y.slug}, healed", f"{y.name}-healed")
        for chatter in (x, y):
            await chatter.until_message(f"{y.name}-healed")
        return first_round_trip

    healthy_first, healthy_second, ops_trip, spare_trip = await asyncio.gather(
        healthy(first), healthy(second), room_works(a, b), room_works(c, d)
    )
    healed = time.monotonic() - back
    refusals = {chatter.name: chatter.refusals for chatter in (a, b, c, d)}
    resent = {chatter.name: chatter.resent for chatter in (a, b)}
    print(
        f"\nTIMING redis restart: every socket closed 4012 {all_closed:.2f} s after the kill;"
        f" outage /healthz {outage};"
        f" handshakes refused (1013) in {refused} s;"
        f" after Redis was back: /healthz 200 in {healthy_first:.2f} s and"
        f" {healthy_second:.2f} s, first round trip in ops (catch-up and resends first)"
        f" {ops_trip:.2f} s, in the spare room {spare_trip:.2f} s, both rooms both ways"
        f" {healed:.2f} s; reconnect refusals: {refusals}; sent again after reconnecting:"
        f" {resent}; answered unavailable: {[x.unavailable for x in (a, b)]}"
    )
    assert max(healthy_first, healthy_second, healed) <= HEAL_WITHIN

    # Whatever the sends raced with, storage and every client agree, each message once.
    for chatter in (a, b, c, d):
        await chatter.drain(1.0)  # a frame Redis refused is published late: it must not dup
    stored = stored_messages(url)
    check_exactly_once([a, b], stored["ops"])
    check_exactly_once([c, d], stored["spare"])
    for server in (first, second):
        assert "readuntil" not in log_text(server), log_lines(server, "readuntil")
        assert server.process.poll() is None


# --- 3. The database is unreachable ---------------------------------------------------------


@pytest.fixture
def proxied_server(pg_proxy, postgres_url, redis_url, tmp_path, monkeypatch):
    """One uvicorn process reaching a fresh PostgreSQL database through `pg_proxy`."""
    monkeypatch.setenv("DATABASE_URL", postgres_url)  # fresh_database's server
    with fresh_database(tmp_path) as url:
        env = server_env(pg_proxy.url_for(url), redis_url)
        server = Server(env, log=tmp_path / "server.log", kind="uvicorn")
        try:
            yield url, server.start()
        finally:
            server.stop()


async def test_database_outage_answers_unavailable_and_heals(proxied_server, pg_proxy, sockets):
    url, server = proxied_server
    alice = Browserless(server).sign_up("alice")
    bob = Browserless(server).sign_up("bob")
    alice.post_form("/chats/enter/", {"name": "Ops"})
    a = Chatter(alice, "ops", sockets, "alice")
    b = Chatter(bob, "ops", sockets, "bob")
    await a.connect()
    assert (await b.connect())["online"] == ["alice", "bob"]
    join = await a.until(lambda f: f["type"] == "presence")
    assert (join["user"], join["status"]) == ("bob", "join")
    await a.send("before", "alice-before")
    for chatter in (a, b):
        await chatter.until_message("alice-before")

    pg_proxy.cut()
    cut = time.monotonic()
    # The first tries may meet a pooled connection the cut broke (they fail at
    # once); later ones wait for the pool (DATABASE_POOL_TIMEOUT) and time out.
    answered = []
    await a.send("while storage is away", "alice-away")
    for attempt in range(3):
        if attempt:
            await a.send_again("while storage is away", "alice-away")  # the client's retry
        started = time.monotonic()
        error = await a.until(lambda f: f["type"] == "error", timeout=5)
        answered.append(round(time.monotonic() - started, 2))
        assert (error["code"], error["client_id"]) == ("unavailable", "alice-away"), error
        assert answered[-1] <= 3, answered
        await a.ping()  # still open
    await b.ping()

    refused = []
    for _ in range(2):  # bob opens the room in another tab, and that tab retries
        tab = Chatter(bob, "ops", sockets, "bob's second tab")
        hello, code, took = await tab.attempt()
        assert (hello, code) == (None, 1013), (hello, code)
        refused.append(round(took, 2))
        assert took <= REFUSED_WITHIN, refused
    status, body = await health(server)
    assert status == 503 and body["database"].startswith("error"), body
    await a.ping()
    await b.ping()
    for chatter in (a, b):  # nobody left or joined: no ghost, no spurious leave
        assert chatter.frames_since(cut, "presence") == [], chatter.frames_since(cut, "presence")

    pg_proxy.restore()
    restored = time.monotonic()
    attempts = 0
    while "alice-away" in a.pending:  # the client's retry, with the same client_id
        attempts += 1
        await a.send_again("while storage is away", "alice-away")
        frame = await a.until(
            lambda f: f.get("client_id") == "alice-away" and f["type"] in ("chat.message", "error")
        )
        if frame["type"] == "error":
            assert frame["code"] == "unavailable", frame
            assert time.monotonic() - restored < STORAGE_BACK_WITHIN, "storage still unavailable"
            await asyncio.sleep(RETRY_EVERY)
    stored_after = time.monotonic() - restored
    away = await b.until_message("alice-away")
    # Once more, as a client that never heard the answer would: the same message,
    # stored once and broadcast again (at least once; clients drop a known id).
    await a.send_again("while storage is away", "alice-away")
    assert (await a.until_message("alice-away"))["id"] == away["id"]
    assert (await b.until_message("alice-away"))["id"] == away["id"]
    await a.send("after", "alice-after")
    for chatter in (a, b):
        assert (await chatter.until(lambda f: f["type"] == "chat.message"))["client_id"] == (
            "alice-after"
        )
    stored = stored_messages(url)["ops"]
    ids = [message_id for message_id, _, _ in stored]
    assert [client_id for _, _, client_id in stored] == [
        "alice-before",
        "alice-away",
        "alice-after",
    ]
    assert sorted(set(b.received)) == ids  # each stored message reached bob, none other

    # No ghost after the outage: bob's last socket closing is seen as a leave.
    await b.ws.close()
    leave = await a.until(lambda f: f["type"] == "presence", timeout=5)
    assert (leave["user"], leave["status"], leave["online"]) == ("bob", "leave", ["alice"])
    print(
        f"\nTIMING database outage: `unavailable` in {answered} s; handshakes closed 1013"
        f" in {refused} s; /healthz {status} {body};"
        f" after restore the resend was stored in {stored_after:.2f} s"
        f" ({attempts} attempt(s))"
    )


@pytest.fixture
def proxied_daphne(pg_proxy, postgres_url, redis_url, tmp_path, monkeypatch):
    """The same with daphne, the development server."""
    monkeypatch.setenv("DATABASE_URL", postgres_url)
    with fresh_database(tmp_path) as url:
        env = server_env(pg_proxy.url_for(url), redis_url)
        server = Server(env, log=tmp_path / "server.log", kind="daphne")
        try:
            yield server.start()
        finally:
            server.stop()


async def test_daphne_closes_with_1013_too_while_the_database_is_away(
    proxied_daphne, pg_proxy, sockets
):
    """autobahn (daphne's engine) sends only 1000 and 3000-4999 from the application:
    1011 and 1013 raised inside daphne and the client saw 1006 (no reason to wait)."""
    server = proxied_daphne
    alice = Browserless(server).sign_up("alice")
    alice.post_form("/chats/enter/", {"name": "Ops"})
    pg_proxy.cut()
    try:
        for name in ("a tab", "the same tab, again"):
            hello, code, took = await Chatter(alice, "ops", sockets, name).attempt()
            assert (hello, code) == (None, 1013), (name, hello, code)
    finally:
        pg_proxy.restore()
    assert (await Chatter(alice, "ops", sockets, "after").connect())["type"] == "hello"
    log = server.log_path.read_text(errors="replace")
    assert "invalid close code" not in log and "Traceback" not in log, log[-3000:]
