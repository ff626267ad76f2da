"""`make soak`: many signed-in sockets on one uvicorn process, steady chat, faults in the middle.

Not part of CI (issue 10). One uvicorn process with the production flags
(deploy/servers.py) on PostgreSQL + Redis: a fresh database (dropped at the
end) reached only through our own TCP proxy (tests.faults.TcpProxy), and our
own redis-server on a free port (tests.faults.RedisServer); the machine's
shared PostgreSQL and Redis are never stopped nor flushed. Users and rooms
come from bench/seed.py; sessions from the real sign-in form.

Load: --sockets signed-in sockets over --rooms rooms, in two client processes
(asyncio + websockets on uvloop), --rate messages/s in all, each with a
unique client_id, for --minutes. Every socket behaves like the browser client
(static/chat/chat.js, docs/protocol.md): on any close but 4403, or a failed
handshake, it reconnects with backoff (0.5 s doubling to 10 s, each wait
between half and all of it) with `?after=<highest id seen>` and applies
`hello.messages`; a message not echoed within 10 s, or answered with error
`unavailable`, is sent again with the same client_id (after a reconnect too)
until its echo arrives. Every socket records every message id it sees.

Faults: at 40 % of the run Redis is killed (kill -9) and started again on the
same port 3 s later; at 70 % the database proxy is cut for 5 s. For each the
time to heal is measured from the fault's end: until /healthz answers 200, and
until every socket is connected again and has received a message first sent
after the fault's end; and which close codes the fault caused.

At the end the sending stops, the clients wait (bounded) for their echoes,
and the database is the reference: every echoed message is stored exactly
once; every stored message of a room above a socket's first hello was seen by
that socket (lost); no socket saw an id twice (duplicated). The server's RSS
is sampled every second: start, end and slope (least squares over the steady
parts, without the minute after each fault).

    python bench/soak.py [--minutes 10] [--sockets 1000] [--rooms 20] [--rate 20] [--quick]

--quick: 200 sockets for 2 minutes, the same faults (the RSS slope then leaves
out 15 s after each fault, not 60). Prints a summary; writes
bench/results/soak-<time>.json and the server's log under
bench/results/logs/soak-<time>/ (git-ignored). Stops by itself: at most
--minutes + 3 minutes in all. Exit status 1 when anything was lost, stored
twice, duplicated or did not heal.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import re
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
import uuid
from array import array
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import psutil

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import harness  # noqa: E402
from bench.harness import PG_URL, RESULTS, ServerProc, log, settle, stop_all  # noqa: E402
from bench.loadclient import PipeWorker, cpu_seconds, run_loop  # noqa: E402
from tests.faults import RedisServer, TcpProxy  # noqa: E402
from tests.live import free_port, fresh_database  # noqa: E402

# The browser client's timings (static/chat/chat.js), the backoff capped at 10 s here.
SEND_TIMEOUT_S = 10.0  # no echo by then: send it again (same client_id)
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.5, 10.0  # reconnect: doubling, each wait in [cap/2, cap]
RETRY_MIN_S, RETRY_MAX_S = 1.0, 15.0  # after `unavailable`: doubling, each wait in [0.8, 1] x
OPEN_TIMEOUT_S = 10.0  # handshake
HELLO_TIMEOUT_S = 10.0  # from the handshake to hello
HANDSHAKES_IN_FLIGHT = 50  # per client process
RECONNECT_CODES = "any close but 4403 (4012, 4008, 1013, 1011, 1006 ...), or a failed handshake"
EVENTS_CAP = 200_000  # events kept per client process (closes, refusals, errors, resends)
SAMPLES_CAP = 20  # examples kept of each anomaly
LOG_EVERY_S = 30.0


@dataclass
class Params:
    minutes: float = 10.0
    sockets: int = 1000
    rooms: int = 20
    rate: float = 20.0  # messages/s across every room
    users: int = 0  # 0: sockets / rooms, one socket per user per room
    workers: int = 2  # client processes
    redis_at: float = 0.40  # fraction of the chat phase
    redis_down_s: float = 3.0
    db_at: float = 0.70
    db_down_s: float = 5.0
    after_fault_s: float = 60.0  # left out of the RSS slope after each fault's end
    heal_limit_s: float = 120.0  # most waited for a fault to heal
    connect_limit_s: float = 120.0  # most waited for the first connects
    drain_s: float = 45.0  # most waited for the last echoes
    verify_s: float = 30.0  # most waited for the last deliveries
    budget_extra_s: float = 180.0  # everything else: the run stops by itself past minutes + this


def now_ns() -> int:
    return time.monotonic_ns()  # CLOCK_MONOTONIC: one clock for every process of the machine


def pct(values: list, q: float):
    if not values:
        return None
    values = sorted(values)
    k = min(len(values) - 1, max(0, math.ceil(q / 100 * len(values)) - 1))
    return values[k]


# --- The client processes ------------------------------------------------------------------


class Entry:
    """One message of a socket's outbox: sent and not echoed yet (or not sent yet)."""

    __slots__ = ("cid", "text", "sock", "created_ns", "sent_ns", "sends", "retry_at", "fails")

    def __init__(self, cid: str, text: str, sock: int, created_ns: int):
        self.cid = cid
        self.text = text
        self.sock = sock
        self.created_ns = created_ns
        self.sent_ns = 0  # when it went out on the current socket; 0: not out
        self.sends = 0
        self.retry_at = 0  # after an error: not before this
        self.fails = 0


class Sock:
    """One socket of one person in one room, across its reconnects."""

    __slots__ = (
        "idx",
        "room",
        "url",
        "cookie",
        "ws",
        "ready",
        "stopped",
        "hello_seen",
        "seen",
        "hello_ids",
        "max_id",
        "floor0",
        "outbox",
        "own_resent",
        "attempt",
        "connected_ns",
        "first_hello_ns",
        "heal_ns",
        "heal_live_ns",
        "heal_buf",
        "hellos",
        "truncated",
        "own",
        "after",
        "hello_size",
        "hello_floor",
        "task",
    )

    def __init__(self, idx: int, room: str, url: str, cookie: str):
        self.idx = idx
        self.room = room
        self.url = url
        self.cookie = cookie
        self.ws = None
        self.ready = False  # hello received, socket open
        self.stopped = False  # closed with 4403: does not reconnect
        self.hello_seen = False
        self.seen: set[int] = set()
        self.hello_ids: set[int] = set()  # ids first seen in a hello
        self.max_id = 0
        self.floor0 = 0  # highest id of the first hello: every later id must be seen
        self.outbox: dict[str, Entry] = {}
        self.own_resent: set[str] = set()  # own client_ids sent more than once
        self.attempt = 0
        self.connected_ns = 0  # hello of the current connection
        self.first_hello_ns = 0
        self.heal_ns = 0  # first message sent after the fault's end, in a hello or live
        self.heal_live_ns = 0  # the same, live
        self.heal_buf: list[tuple[int, int, bool]] = []
        self.hellos = 0
        self.truncated = 0
        self.own: set[str] = set()  # client_ids this socket sent
        self.after = 0  # ?after= of the current connection
        self.hello_size = 0  # chat.message items in its hello
        self.hello_floor = 0  # their highest id
        self.task: asyncio.Task | None = None


class Worker(PipeWorker):
    """A client process: its sockets, its share of the sending, driven over a pipe."""

    def __init__(self, conn):
        super().__init__(conn)
        self.wid = 0
        self.tag = ""
        self.origin = ""
        self.socks: list[Sock] = []
        self.by_room: dict[str, list[Sock]] = {}
        self.pending: dict[str, Entry] = {}  # client_id -> entry, not echoed yet
        self.echoed: dict[str, int] = {}  # client_id -> message id
        self.created = 0
        self.events: list[tuple] = []  # (t_ns, kind, socket, detail, was_open)
        self.errors: Counter = Counter()
        self.resends: Counter = Counter()
        self.refused: Counter = Counter()
        self.closes: Counter = Counter()
        self.closed_reasons: Counter = Counter()
        self.other_frames: Counter = Counter()
        self.dups: Counter = Counter()
        self.dup_samples: list[dict] = []
        self.dup_records: list[tuple[str, str, int]] = []  # (kind, client_id, first sent ns)
        self.client_errors: list[str] = []
        self.lat_sent = array("q")  # first send time of a message seen live (first time)
        self.lat_us = array("q")  # and its delivery delay, microseconds
        self.marking = False
        self.mark_ns: int | None = None
        self.gate: asyncio.Semaphore | None = None
        self.stopping = False
        self.sending = False
        self.sender: asyncio.Task | None = None
        self.scanner: asyncio.Task | None = None
        self.behind_ns = 0
        self.start_ns = 0
        self.sends_of: dict[str, int] = {}  # client_id -> sends, for those sent more than once

    # --- records ---------------------------------------------------------------------

    def event(self, kind: str, sock: Sock, detail, was_open: bool = False) -> None:
        if len(self.events) < EVENTS_CAP:
            self.events.append((now_ns(), kind, sock.idx, detail, was_open))

    def client_error(self, text: str) -> None:
        if len(self.client_errors) < SAMPLES_CAP:
            self.client_errors.append(text)

    # --- one socket --------------------------------------------------------------------

    async def run_socket(self, s: Sock) -> None:
        """Connect, read, and reconnect with backoff, like the browser client, until stopped."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidStatus

        while not self.stopping:
            s.after = s.max_id if s.hello_seen else 0
            url = s.url + (f"?after={s.after}" if s.after > 0 else "")
            ws = None
            code = None
            refused = None
            try:
                async with self.gate:
                    ws = await connect(
                        url,
                        origin=self.origin,
                        additional_headers=[("Cookie", s.cookie)],
                        compression=None,
                        proxy=None,
                        open_timeout=OPEN_TIMEOUT_S,
                        ping_interval=None,  # the server pings; websockets answers
                        close_timeout=2,
                        max_size=2**22,
                        max_queue=None,
                        user_agent_header=None,
                    )
                    try:
                        async with asyncio.timeout(HELLO_TIMEOUT_S):
                            first = await ws.recv()
                    except TimeoutError:
                        refused = "no hello within 10 s"
                        raise
                self.on_hello(s, ws, first)
                await self.flush(s)
                async for raw in ws:
                    self.on_frame(s, raw)
                code = ws.close_code if ws.close_code is not None else 1006
            except asyncio.CancelledError:
                if ws is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(ws.close(), 2)
                raise
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else 1006
            except InvalidStatus as exc:
                refused = f"HTTP {exc.response.status_code}"
            except TimeoutError:
                refused = refused or "handshake timeout"
            except OSError as exc:
                refused = type(exc).__name__
            except Exception as exc:
                refused = f"{type(exc).__name__}"
                self.client_error(f"socket {s.idx}: {type(exc).__name__}: {exc}"[:300])
            was_open = s.ready
            s.ready = False
            s.ws = None
            for entry in s.outbox.values():
                entry.sent_ns = 0  # held: sent again after the next hello
            if ws is not None and refused is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 2)
            if code is not None:
                self.closes[code] += 1
                self.event("close", s, code, was_open)
            else:
                self.refused[refused] += 1
                self.event("refused", s, refused, was_open)
            if self.stopping:
                return
            if code == 4403:
                s.stopped = True
                return
            cap = min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2**s.attempt)
            s.attempt += 1
            await asyncio.sleep(cap / 2 + random.random() * cap / 2)  # noqa: S311

    def on_hello(self, s: Sock, ws, raw) -> None:
        frame = orjson.loads(raw)
        if frame.get("type") != "hello":
            raise RuntimeError(f"first frame was {frame.get('type')!r}, not hello")
        t = now_ns()
        if frame.get("truncated"):
            s.truncated += 1
        first = not s.hello_seen
        top = size = 0
        for item in frame.get("messages", ()):
            if item.get("type") == "chat.message":
                self.on_message(s, item, t, live=False)
                top = max(top, item["id"])
                size += 1
        s.hello_size, s.hello_floor = size, top
        if first:
            s.floor0 = top
            s.hello_seen = True
            s.first_hello_ns = t
        s.hellos += 1
        s.ws = ws
        s.ready = True
        s.attempt = 0
        s.connected_ns = t

    def on_frame(self, s: Sock, raw) -> None:
        frame = orjson.loads(raw)
        kind = frame.get("type")
        if kind == "chat.message":
            self.on_message(s, frame, now_ns(), live=True)
        elif kind == "error":
            self.on_error(s, frame)
        elif kind == "closed":
            self.closed_reasons[str(frame.get("reason"))] += 1
        else:
            self.other_frames[kind] += 1

    def on_message(self, s: Sock, m: dict, t: int, live: bool) -> None:
        mid = m["id"]
        cid = m.get("client_id") or ""
        if mid in s.seen:
            if not live:
                kind = "twice_in_hellos"
            elif cid in s.own_resent:
                kind = "answer_to_own_resend"
            elif mid in s.hello_ids:
                kind = "hello_then_live"
            else:
                kind = "live_twice"
            self.dups[kind] += 1
            sent_ns = 0
            with contextlib.suppress(ValueError, IndexError):
                sent_ns = int((m.get("message") or "").rsplit(" ", 1)[1])
            if len(self.dup_records) < 100_000:
                self.dup_records.append((kind, cid, sent_ns))
            if len(self.dup_samples) < SAMPLES_CAP:
                self.dup_samples.append(
                    {
                        "kind": kind,
                        "room": s.room,
                        "socket": s.idx,
                        "id": mid,
                        "client_id": cid,
                        "sent_at_s": (sent_ns - self.start_ns) / 1e9 if sent_ns else None,
                        "seen_again_at_s": (t - self.start_ns) / 1e9,
                        "own_message": cid in s.own,
                        "sends": self.sends_of.get(cid, 1) if cid in s.own else None,
                        "socket_max_id": s.max_id,
                        "hellos": s.hellos,
                        "after": s.after,
                        "hello_messages": s.hello_size,
                        "hello_highest_id": s.hello_floor,
                        "since_hello_ms": (t - s.connected_ns) / 1e6 if s.connected_ns else None,
                    }
                )
            return
        s.seen.add(mid)
        if not live:
            s.hello_ids.add(mid)
        if mid > s.max_id:
            s.max_id = mid
        sent_ns = 0
        text = m.get("message") or ""
        if text.startswith("soak "):
            with contextlib.suppress(ValueError):
                sent_ns = int(text.rsplit(" ", 1)[1])
        if sent_ns:
            if live:
                self.lat_sent.append(sent_ns)
                self.lat_us.append((t - sent_ns) // 1000)
            if self.marking and not s.heal_live_ns:
                if self.mark_ns is None:
                    if len(s.heal_buf) < 1000:
                        s.heal_buf.append((sent_ns, t, live))
                elif sent_ns >= self.mark_ns:
                    s.heal_ns = s.heal_ns or t
                    if live:
                        s.heal_live_ns = t
        if cid:
            entry = s.outbox.pop(cid, None)
            if entry is not None:
                self.pending.pop(cid, None)
                self.echoed[cid] = mid
                if entry.sends > 1:
                    self.sends_of[cid] = entry.sends

    def on_error(self, s: Sock, frame: dict) -> None:
        code = str(frame.get("code"))
        cid = frame.get("client_id") or ""
        self.errors[code] += 1
        self.event("error", s, code, s.ready)
        entry = s.outbox.get(cid) if cid else None
        if entry is None:
            if code != "unavailable":
                self.client_error(f"error frame on socket {s.idx}: {frame}"[:300])
            return
        # Not stored (unavailable), or failed: held, sent again after a backoff.
        entry.fails += 1
        wait = min(RETRY_MAX_S, RETRY_MIN_S * 2 ** (entry.fails - 1))
        entry.retry_at = now_ns() + int(wait * (0.8 + 0.2 * random.random()) * 1e9)  # noqa: S311
        entry.sent_ns = 0
        if code != "unavailable":
            self.client_error(f"message {cid} refused: {frame}"[:300])

    async def send_entry(self, s: Sock, entry: Entry, reason: str) -> None:
        from websockets.exceptions import ConnectionClosed

        ws = s.ws
        if ws is None or not s.ready:
            return
        entry.sends += 1
        if entry.sends > 1:
            s.own_resent.add(entry.cid)
            self.sends_of[entry.cid] = entry.sends
            self.resends[reason] += 1
            self.event("resend", s, reason, True)
        entry.sent_ns = now_ns()
        entry.retry_at = 0
        frame = orjson.dumps(
            {"type": "chat.message", "message": entry.text, "client_id": entry.cid}
        ).decode()
        try:
            await ws.send(frame)
        except ConnectionClosed:
            entry.sent_ns = 0  # the reader sees the close; sent again after the next hello
        except Exception as exc:
            entry.sent_ns = 0
            self.client_error(f"send on socket {s.idx}: {type(exc).__name__}: {exc}"[:300])

    async def flush(self, s: Sock) -> None:
        """After a hello: what the hello did not echo goes again, in order, at once."""
        for entry in list(s.outbox.values()):
            if s.outbox.get(entry.cid) is entry and s.ready:
                await self.send_entry(s, entry, "after_reconnect" if entry.sends else "queued")

    async def scan(self) -> None:
        """Resend what timed out (10 s without echo) or what is due after an error."""
        timeout_ns = int(SEND_TIMEOUT_S * 1e9)
        while not self.stopping:
            await asyncio.sleep(0.2)
            t = now_ns()
            for entry in list(self.pending.values()):
                s = self.socks[entry.sock]
                if not s.ready or s.outbox.get(entry.cid) is not entry:
                    continue
                if entry.sent_ns == 0:
                    if entry.retry_at and t < entry.retry_at:
                        continue
                    await self.send_entry(s, entry, "after_error" if entry.retry_at else "queued")
                elif t - entry.sent_ns > timeout_ns:
                    await self.send_entry(s, entry, "no_echo_10s")

    async def send_loop(self, start_ns: int, end_ns: int, rate: float, rooms: list[str]) -> None:
        """A fixed rate, rooms in turn, from a random connected socket of the room."""
        interval = 1e9 / rate
        for k in range(10_000_000):  # bounded by end_ns long before this
            target = start_ns + int(k * interval)
            if target >= end_ns or not self.sending:
                break
            t = now_ns()
            if t < target:
                await asyncio.sleep((target - t) / 1e9)
                if not self.sending:
                    break
            else:
                self.behind_ns = max(self.behind_ns, t - target)
            room = rooms[k % len(rooms)]
            members = [s for s in self.by_room[room] if not s.stopped]
            if not members:
                continue
            ready = [s for s in members if s.ready]
            s = random.choice(ready or members)  # noqa: S311
            t = now_ns()
            cid = f"{self.tag}-{self.wid}-{k}"
            entry = Entry(cid, f"soak {cid} {t}", s.idx, t)
            s.outbox[cid] = entry
            s.own.add(cid)
            self.pending[cid] = entry
            self.created += 1
            if s.ready:
                await self.send_entry(s, entry, "new")

    # --- commands ---------------------------------------------------------------------------

    async def op_setup(self, wid: int, tag: str, origin: str, specs: list[dict]):
        self.wid, self.tag, self.origin = wid, tag, origin
        self.gate = asyncio.Semaphore(HANDSHAKES_IN_FLIGHT)
        for spec in specs:
            s = Sock(len(self.socks), spec["room"], spec["url"], spec["cookie"])
            self.socks.append(s)
            self.by_room.setdefault(s.room, []).append(s)
        return {"sockets": len(self.socks), "rooms": len(self.by_room)}

    async def op_connect(self, limit_s: float):
        t0 = now_ns()
        for s in self.socks:
            s.task = asyncio.create_task(self.run_socket(s))
        self.scanner = asyncio.create_task(self.scan())
        deadline = t0 + int(limit_s * 1e9)
        # Polled (bounded): the sockets' own tasks change the state.
        while now_ns() < deadline and not all(s.hello_seen or s.stopped for s in self.socks):  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        times = [(s.first_hello_ns - t0) / 1e6 for s in self.socks if s.hello_seen]
        return {
            "connected": sum(s.ready for s in self.socks),
            "never": sum(not s.hello_seen for s in self.socks),
            "connect_p50_ms": pct(times, 50),
            "connect_max_ms": max(times, default=None),
            "refused": dict(self.refused),
            "closes": dict(self.closes),
        }

    async def op_start(self, start_ns: int, end_ns: int, rate: float):
        self.start_ns = start_ns
        rooms = sorted(self.by_room)
        self.sending = True
        if rate > 0 and rooms:
            self.sender = asyncio.create_task(self.send_loop(start_ns, end_ns, rate, rooms))
        return {"rooms": len(rooms), "rate": rate}

    async def op_stop_sending(self):
        self.sending = False
        if self.sender is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.sender, 5)
        return {"created": self.created, "behind_ms": self.behind_ns / 1e6}

    async def op_mark_reset(self):
        """A fault starts: record what arrives, until its end is known."""
        self.marking, self.mark_ns = True, None
        for s in self.socks:
            s.heal_ns, s.heal_live_ns, s.heal_buf = 0, 0, []
        return {}

    async def op_mark(self, mark_ns: int):
        """The fault ended at mark_ns: a socket heals with its first message sent since."""
        self.mark_ns = mark_ns
        for s in self.socks:
            for sent, received, live in s.heal_buf:
                if sent >= mark_ns:
                    s.heal_ns = s.heal_ns or received
                    if live:
                        s.heal_live_ns = received
                        break
            s.heal_buf = []
        return {}

    async def op_status(self):
        live = [s for s in self.socks if not s.stopped]
        return {
            "sockets": len(self.socks),
            "ready": sum(s.ready for s in live),
            "stopped": len(self.socks) - len(live),
            "healed": sum(1 for s in live if s.heal_ns),
            "heal_ns": [s.heal_ns for s in live],
            "healed_live": sum(1 for s in live if s.heal_live_ns),
            "heal_live_ns": [s.heal_live_ns for s in live],
            "connected_ns": [s.connected_ns if s.ready else 0 for s in live],
            "pending": len(self.pending),
            "created": self.created,
            "echoed": len(self.echoed),
            "dups": dict(self.dups),
            "cpu_s": cpu_seconds(),
        }

    async def op_events(self, since_ns: int, until_ns: int):
        """What happened to the sockets in a window: closes, refused handshakes, errors, resends."""
        first_close: dict[int, object] = {}
        closes: Counter = Counter()
        refused: Counter = Counter()
        errors: Counter = Counter()
        resends: Counter = Counter()
        timeline: Counter = Counter()  # (second since since_ns, kind, detail, after hello)
        for t, kind, idx, detail, was_open in self.events:
            if t < since_ns or t > until_ns:
                continue
            if kind in ("close", "refused"):
                timeline[((t - since_ns) // 1_000_000_000, kind, str(detail), was_open)] += 1
            if kind == "close":
                closes[detail] += 1
                if was_open and idx not in first_close:
                    first_close[idx] = detail
            elif kind == "refused":
                refused[detail] += 1
                if was_open and idx not in first_close:
                    first_close[idx] = detail
            elif kind == "error":
                errors[detail] += 1
            elif kind == "resend":
                resends[detail] += 1
        return {
            "sockets_closed": len(first_close),
            "first_close_codes": dict(Counter(first_close.values())),
            "closes": dict(closes),
            "refused_handshakes": dict(refused),
            "errors": dict(errors),
            "resends": dict(resends),
            "timeline": [[*k, n] for k, n in sorted(timeline.items())],
        }

    async def op_drain(self, deadline_ns: int):
        while self.pending and now_ns() < deadline_ns:  # noqa: ASYNC110 - polled, bounded
            await asyncio.sleep(0.1)
        left = [
            {
                "client_id": e.cid,
                "room": self.socks[e.sock].room,
                "socket": e.sock,
                "sends": e.sends,
                "socket_open": self.socks[e.sock].ready,
                "socket_stopped": self.socks[e.sock].stopped,
            }
            for e in list(self.pending.values())[:SAMPLES_CAP]
        ]
        return {"pending": len(self.pending), "samples": left}

    async def op_echoed(self):
        """The echoes so far: client_id -> message id (before the database is read)."""
        return {"echoed": dict(self.echoed)}

    async def op_verify(self, stored: dict, deadline_ns: int):
        """Wait (bounded) until each socket has every stored id of its room past its first hello."""
        stored_sets = {room: set(ids) for room, ids in stored.items()}

        def missing(s: Sock) -> list[int]:
            return [i for i in stored.get(s.room, ()) if i > s.floor0 and i not in s.seen]

        while now_ns() < deadline_ns:
            if not any(missing(s) for s in self.socks if s.ready):
                break
            await asyncio.sleep(0.2)
        lost = lost_closed = phantom = 0
        sockets_with_loss = 0
        samples = []
        per_room: Counter = Counter()
        missed_ids: Counter = Counter()
        for s in self.socks:
            gone = missing(s)
            if s.ready:
                missed_ids.update(gone)
            phantom += sum(1 for i in s.seen if i not in stored_sets.get(s.room, ()))
            if not gone:
                continue
            if s.ready:
                lost += len(gone)
                sockets_with_loss += 1
                per_room[s.room] += len(gone)
            else:
                lost_closed += len(gone)
            if len(samples) < SAMPLES_CAP:
                samples.append(
                    {
                        "room": s.room,
                        "socket": s.idx,
                        "open": s.ready,
                        "stopped": s.stopped,
                        "missing": gone[:20],
                        "missing_count": len(gone),
                        "floor0": s.floor0,
                        "max_id": s.max_id,
                        "hellos": s.hellos,
                    }
                )
        return {
            "open_sockets": sum(s.ready for s in self.socks),
            "closed_sockets": sum(not s.ready for s in self.socks),
            "lost": lost,
            "lost_on_closed_sockets": lost_closed,
            "sockets_with_loss": sockets_with_loss,
            "lost_by_room": dict(per_room),
            "phantom": phantom,
            "samples": samples,
            "missed_ids": {str(k): n for k, n in missed_ids.items()},
        }

    async def op_report(self, windows: list):
        """Everything counted over the run; latencies overall and outside the fault windows."""
        lat = list(self.lat_us)
        steady = [
            us
            for sent, us in zip(self.lat_sent, self.lat_us, strict=True)
            if not any(a <= sent <= b for a, b in windows)
        ]

        def stats(values: list) -> dict:
            return {
                "count": len(values),
                "p50_ms": (pct(values, 50) or 0) / 1000,
                "p99_ms": (pct(values, 99) or 0) / 1000,
                "max_ms": max(values, default=0) / 1000,
                "over_1s": sum(1 for v in values if v > 1_000_000),
            }

        buckets: dict[int, list] = {}
        for sent, us in zip(self.lat_sent, self.lat_us, strict=True):
            buckets.setdefault(max(0, (sent - self.start_ns) // 10_000_000_000), []).append(us)
        return {
            "created": self.created,
            "echoed_count": len(self.echoed),
            "sends_of": self.sends_of,
            "latency_by_10s": {
                k: [len(v), (pct(v, 50) or 0) / 1000, (pct(v, 99) or 0) / 1000, max(v) / 1000]
                for k, v in sorted(buckets.items())
            },
            "pending": len(self.pending),
            "dups": dict(self.dups),
            "dup_samples": self.dup_samples,
            "dup_records": self.dup_records,
            "errors": dict(self.errors),
            "resends": dict(self.resends),
            "refused": dict(self.refused),
            "closes": {str(k): v for k, v in self.closes.items()},
            "closed_reasons": dict(self.closed_reasons),
            "other_frames": dict(self.other_frames),
            "hellos": sum(s.hellos for s in self.socks),
            "truncated_hellos": sum(s.truncated for s in self.socks),
            "stopped_sockets": sum(s.stopped for s in self.socks),
            "client_errors": self.client_errors,
            "latency_all": stats(lat),
            "latency_steady": stats(steady),
            "behind_ms": self.behind_ns / 1e6,
            "cpu_s": cpu_seconds(),
            "events_dropped": len(self.events) >= EVENTS_CAP,
        }

    async def shutdown(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.sending = False
        tasks = [s.task for s in self.socks if s.task is not None]
        tasks += [t for t in (self.sender, self.scanner) if t is not None]
        for task in tasks:
            task.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await asyncio.gather(*tasks, return_exceptions=True)


def worker_main(conn) -> None:
    """Entry point of a client process."""
    harness.raise_nofile()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    run_loop(Worker(conn).serve())


# --- Sampling the server ----------------------------------------------------------------------


class Sampler(threading.Thread):
    """The server's RSS, CPU time and open files, every second."""

    def __init__(self, server: ServerProc):
        super().__init__(daemon=True)
        self.server = server
        self.samples: list[tuple[int, int, float, int]] = []  # t_ns, rss, cpu_s, fds
        self.halt = threading.Event()

    def run(self) -> None:
        for _ in range(7200):  # bounded: two hours
            if not self.server.alive():
                break
            fds = 0
            with contextlib.suppress(psutil.Error):
                fds = self.server.ps.num_fds()
            self.samples.append((now_ns(), self.server.rss(), self.server.cpu_s(), fds))
            if self.halt.wait(1.0):
                break

    def at(self, t_ns: int) -> tuple | None:
        before = [s for s in self.samples if s[0] <= t_ns]
        return before[-1] if before else (self.samples[0] if self.samples else None)

    def stop(self) -> None:
        self.halt.set()
        self.join(5)


class Health(threading.Thread):
    """/healthz, every second; every 0.2 s while `fast` is set (during a fault and its heal)."""

    def __init__(self, base: str):
        super().__init__(daemon=True)
        self.base = base
        self.samples: list[tuple[int, int, int]] = []  # sent_ns, answered_ns, status
        self.bodies: Counter = Counter()  # failing answers
        self.fast = threading.Event()
        self.halt = threading.Event()

    def probe(self) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.base + "/healthz", timeout=5) as r:  # noqa: S310
                return r.status, ""
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")[:300]
        except Exception as exc:
            return 0, f"{type(exc).__name__}: {exc}"[:300]

    def run(self) -> None:
        for _ in range(100_000):  # bounded: far more than a run needs
            t0 = now_ns()
            status, body = self.probe()
            self.samples.append((t0, now_ns(), status))
            if status != 200:
                self.bodies[f"{status} {body}"] += 1
            if self.halt.wait(0.2 if self.fast.is_set() else 1.0):
                break

    def first_ok(self, after_ns: int) -> int | None:
        """When the first probe sent after after_ns was answered 200 (an upper bound)."""
        for sent, answered, status in self.samples:
            if sent >= after_ns and status == 200:
                return answered
        return None

    def first_failure(self, after_ns: int, before_ns: int) -> int | None:
        for sent, answered, status in self.samples:
            if after_ns <= sent <= before_ns and status != 200:
                return answered
        return None

    def stop(self) -> None:
        self.halt.set()
        self.join(10)


def slope_kib_per_min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, bytes) points, in KiB per minute."""
    if len(points) < 10:
        return None
    n = len(points)
    mt = sum(t for t, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var <= 0:
        return None
    cov = sum((t - mt) * (y - my) for t, y in points)
    return cov / var * 60 / 1024


def summarize_log(path: Path) -> dict:
    """Lines of the server's log by kind (numbers masked), tracebacks, the first traceback."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return {"path": str(path), "lines": 0}
    kinds: Counter = Counter()
    first_tb: list[str] = []
    tracebacks = 0
    for i, line in enumerate(lines):
        text = line.strip()
        if not text or line.startswith((" ", "\t")) or text.startswith(("^", "~")):
            continue
        if text.startswith("Traceback"):
            tracebacks += 1
            if not first_tb:
                first_tb = lines[max(0, i - 1) : i + 60]
            continue
        kinds[re.sub(r"\d+", "N", text)[:160]] += 1
    if first_tb:
        for j, line in enumerate(first_tb[2:], start=2):
            if line and not line.startswith((" ", "\t")) and not line.startswith("Traceback"):
                first_tb = first_tb[: j + 1]
                break
    return {
        "path": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
        "lines": len(lines),
        "tracebacks": tracebacks,
        "kinds": kinds.most_common(25),
        "first_traceback": first_tb,
    }


# --- The soak ------------------------------------------------------------------------------------


class Soak:
    def __init__(self, p: Params, argv: list[str]):
        self.p = p
        self.argv = argv
        self.run_id = time.strftime("%Y%m%d-%H%M%S")
        self.logdir = RESULTS / "logs" / f"soak-{self.run_id}"
        self.secret = secrets.token_urlsafe(50)
        self.tag = "s" + uuid.uuid4().hex[:6]
        self.started = time.monotonic()
        self.deadline = self.started + p.minutes * 60 + p.budget_extra_s
        self.results: dict = {"params": asdict(p), "faults": [], "errors": [], "progress": []}
        self.server: ServerProc | None = None
        self.workers: harness.ClientPool | None = None
        self.sampler: Sampler | None = None
        self.health: Health | None = None
        self.redis: RedisServer | None = None
        self.proxy: TcpProxy | None = None
        self.static_root = ""
        self.room_worker: dict[str, int] = {}
        self.fault_spans: list[tuple[int, int]] = []  # (start_ns, end_ns): the fault itself
        self.fault_windows: list[tuple[int, int]] = []  # (start_ns, end of the heal watch)
        self.chat_start_ns = 0
        self.chat_end_ns = 0

    def left_s(self) -> float:
        return self.deadline - time.monotonic()

    # --- setup --------------------------------------------------------------------------

    def env(self, db_url: str, redis_url: str) -> dict:
        """The benchmark's server environment (production settings, limits off), INFO logs."""
        return harness.bench_env(
            db_url, redis_url, f"chat-soak-{self.tag}", self.secret, self.static_root, "INFO"
        )

    def layout(self) -> list[tuple[str, int]]:
        """(room slug, user number) per socket: rooms in turn, distinct users in a room."""
        p = self.p
        out = []
        for j in range(p.sockets):
            r, k = j % p.rooms, j // p.rooms
            out.append((f"soak_{r}", k % p.users))
        return out

    def connect(self, cookies: list[str]) -> dict:
        p = self.p
        per: list[list[dict]] = [[] for _ in range(p.workers)]
        for room, user in self.layout():
            w = int(room.rsplit("_", 1)[1]) % p.workers
            self.room_worker[room] = w
            per[w].append(
                {
                    "room": room,
                    "url": f"{self.server.ws_base}/ws/chat/{room}/",
                    "cookie": cookies[user],
                }
            )
        self.workers = harness.ClientPool(
            worker_main, p.workers, what="client process", join_s=15, tracebacks=True
        )
        self.workers.call(
            "setup",
            [
                {"wid": w, "tag": self.tag, "origin": self.server.base, "specs": specs}
                for w, specs in enumerate(per)
            ],
            60,
        )
        t0 = time.monotonic()
        limit = min(p.connect_limit_s, max(10.0, self.left_s() - p.minutes * 60 - 60))
        replies = self.workers.call("connect", {"limit_s": limit}, limit + 30)
        out = {
            "sockets": p.sockets,
            "connected": sum(r["connected"] for r in replies),
            "never_connected": sum(r["never"] for r in replies),
            "wall_s": time.monotonic() - t0,
            "connect_p50_ms": max((r["connect_p50_ms"] or 0) for r in replies),
            "connect_max_ms": max((r["connect_max_ms"] or 0) for r in replies),
            "refused": sum((Counter(r["refused"]) for r in replies), Counter()),
            "closes": sum((Counter(r["closes"]) for r in replies), Counter()),
        }
        log(
            f"connected {out['connected']}/{p.sockets} sockets in {out['wall_s']:.1f} s "
            f"(slowest first hello {out['connect_max_ms'] / 1000:.1f} s)"
            + (f"; refused {dict(out['refused'])}" if out["refused"] else "")
        )
        return out

    # --- during the run ----------------------------------------------------------------------

    def status(self) -> dict:
        replies = self.workers.call("status", {}, 30)
        heal = [t for r in replies for t in r["heal_ns"]]
        heal_live = [t for r in replies for t in r["heal_live_ns"]]
        connected = [t for r in replies for t in r["connected_ns"]]
        dups: Counter = Counter()
        for r in replies:
            dups.update(r["dups"])
        return {
            "sockets": sum(r["sockets"] for r in replies),
            "ready": sum(r["ready"] for r in replies),
            "stopped": sum(r["stopped"] for r in replies),
            "live": len(heal),
            "healed": sum(r["healed"] for r in replies),
            "heal_ns": heal,
            "healed_live": sum(r["healed_live"] for r in replies),
            "heal_live_ns": heal_live,
            "connected_ns": connected,
            "pending": sum(r["pending"] for r in replies),
            "created": sum(r["created"] for r in replies),
            "echoed": sum(r["echoed"] for r in replies),
            "dups": dict(dups),
            "client_cpu_s": [r["cpu_s"] for r in replies],
        }

    def progress(self, label: str = "") -> None:
        st = self.status()
        sample = self.sampler.samples[-1] if self.sampler.samples else None
        rss = sample[1] / 2**20 if sample else 0
        cpu = 0.0
        if len(self.sampler.samples) > 10:
            a, b = self.sampler.samples[-11], self.sampler.samples[-1]
            cpu = 100 * (b[2] - a[2]) / ((b[0] - a[0]) / 1e9)
        t = (now_ns() - self.chat_start_ns) / 1e9 if self.chat_start_ns else 0.0
        row = {
            "t_s": round(t, 1),
            "open": st["ready"],
            "stopped": st["stopped"],
            "created": st["created"],
            "echoed": st["echoed"],
            "pending": st["pending"],
            "rss_mib": round(rss, 1),
            "server_cpu_pct": round(cpu, 1),
            "fds": sample[3] if sample else 0,
            "dups": st["dups"],
        }
        self.results["progress"].append(row)
        log(
            f"{label}t={t:5.0f}s open {st['ready']}/{st['sockets']} sent {st['created']} "
            f"echoed {st['echoed']} pending {st['pending']} RSS {rss:.1f} MiB "
            f"CPU {cpu:.0f}% fds {row['fds']}" + (f" dups {st['dups']}" if st["dups"] else "")
        )

    def wait_until(self, t_ns: int) -> None:
        """Sleep to t_ns, logging progress; the server must stay up."""
        last = time.monotonic()
        while now_ns() < t_ns:
            if not self.server.alive():
                raise RuntimeError(f"the server exited with {self.server.process.returncode}")
            time.sleep(min(1.0, max(0.0, (t_ns - now_ns()) / 1e9)))
            if time.monotonic() - last >= LOG_EVERY_S:
                last = time.monotonic()
                self.progress()

    def fault(self, name: str, limit_ns: int) -> dict:
        """Inject one fault, then wait (bounded) until it heals; measure."""
        p = self.p
        self.workers.call("mark_reset", {}, 30)
        self.health.fast.set()
        st0 = self.status()
        start = now_ns()
        if name == "redis":
            log(f"FAULT redis: kill -9 our redis-server (port {self.redis.port}), start in 3 s")
            self.redis.kill()
            time.sleep(p.redis_down_s)
            self.redis.start()
            what = (
                "redis-server killed (SIGKILL), started again on the same port after "
                f"{p.redis_down_s:g} s"
            )
        else:
            log(f"FAULT database: proxy cut for {p.db_down_s:g} s")
            self.proxy.cut()
            time.sleep(p.db_down_s)
            self.proxy.restore()
            what = (
                f"PostgreSQL proxy cut (connections reset, new ones refused) for {p.db_down_s:g} s"
            )
        end = now_ns()
        self.workers.call("mark", {"mark_ns": end}, 30)
        log(f"  {name} back after {(end - start) / 1e9:.1f} s; waiting for it to heal")
        health_ns = sockets_ns = live_ns = connected_ns = None
        st = st0
        give_up = min(limit_ns, end + int(p.heal_limit_s * 1e9))
        last_log = time.monotonic()
        while now_ns() < give_up:
            if not self.server.alive():
                raise RuntimeError(f"the server exited with {self.server.process.returncode}")
            time.sleep(0.5)
            if health_ns is None:
                health_ns = self.health.first_ok(end)
            st = self.status()
            live = st["live"]
            if connected_ns is None and st["ready"] == live:
                connected_ns = max([t for t in st["connected_ns"] if t >= start], default=end)
            if sockets_ns is None and st["healed"] == live and st["ready"] == live:
                sockets_ns = max(st["heal_ns"], default=end)
            if live_ns is None and st["healed_live"] == live and st["ready"] == live:
                live_ns = max(st["heal_live_ns"], default=end)
            if time.monotonic() - last_log >= 5:
                last_log = time.monotonic()
                log(
                    f"  healing: healthz {'ok' if health_ns else 'not yet'}, open "
                    f"{st['ready']}/{live}, got a new message {st['healed']}/{live} "
                    f"(live {st['healed_live']}/{live}), "
                    f"pending {st['pending']}"
                )
            if health_ns is not None and sockets_ns is not None and live_ns is not None:
                break
        self.health.fast.clear()
        until = now_ns()
        self.fault_spans.append((start, end))
        self.fault_windows.append((start, until))
        events = self.workers.call("events", {"since_ns": start, "until_ns": until}, 30)
        merged: dict = {}
        for key in ("first_close_codes", "closes", "refused_handshakes", "errors", "resends"):
            c: Counter = Counter()
            for e in events:
                c.update({str(k): v for k, v in e[key].items()})
            merged[key] = dict(c)
        timeline: Counter = Counter()
        for e in events:
            for sec, kind, detail, was_open, n in e["timeline"]:
                timeline[(sec, kind, detail, "open" if was_open else "before hello")] += n
        heal_each = sorted((t - end) / 1e9 for t in st["heal_ns"] if t)
        detected = self.health.first_failure(start, until)
        rec = {
            "name": name,
            "what": what,
            "at_s": (start - self.chat_start_ns) / 1e9,
            "down_s": (end - start) / 1e9,
            "healthz_heal_s": (health_ns - end) / 1e9 if health_ns else None,
            "healthz_first_failure_after_start_s": (detected - start) / 1e9 if detected else None,
            "sockets_heal_s": (sockets_ns - end) / 1e9 if sockets_ns else None,
            "sockets_live_heal_s": (live_ns - end) / 1e9 if live_ns else None,
            "all_connected_s": (connected_ns - end) / 1e9 if connected_ns else None,
            "socket_heal_p50_s": pct(heal_each, 50),
            "socket_heal_p90_s": pct(heal_each, 90),
            "healed_sockets": st["healed"],
            "live_sockets": st["live"],
            "open_at_start": st0["ready"],
            "sockets_closed": sum(e["sockets_closed"] for e in events),
            **merged,
            # Closes and refused handshakes by second since the fault started: [s, kind,
            # code or reason, whether the socket had its hello, count].
            "close_timeline": [[*k, n] for k, n in sorted(timeline.items())],
            "watched_s": (until - end) / 1e9,
        }
        healed = rec["healthz_heal_s"] is not None and rec["sockets_heal_s"] is not None
        log(
            f"  {name} {'healed' if healed else 'DID NOT HEAL'}: healthz 200 after "
            f"{fmt_s(rec['healthz_heal_s'])}, every socket open after "
            f"{fmt_s(rec['all_connected_s'])} and with a new message after "
            f"{fmt_s(rec['sockets_heal_s'])} (live {fmt_s(rec['sockets_live_heal_s'])}); "
            f"{rec['sockets_closed']} sockets closed {rec['first_close_codes']}; "
            f"refused handshakes {rec['refused_handshakes']}; errors {rec['errors']}; "
            f"resends {rec['resends']}"
        )
        return rec

    # --- the end ------------------------------------------------------------------------------

    def stored_messages(self, db_url: str) -> dict:
        import psycopg

        with psycopg.connect(db_url, connect_timeout=10) as conn:
            rows = conn.execute(
                "select r.slug, m.id, m.client_id, m.deleted_at is not null, m.body "
                "from chatrooms_message m join chatrooms_room r on r.id = m.room_id "
                "where r.slug like 'soak%%' order by m.id"
            ).fetchall()
            twice = conn.execute(
                "select client_id, count(*) from chatrooms_message where client_id <> '' "
                "group by client_id having count(*) > 1 order by client_id"
            ).fetchall()
        return {"rows": rows, "twice": twice}

    def finish(self, db_url: str) -> None:
        p = self.p
        self.workers.call("stop_sending", {}, 30)
        self.chat_end_ns = now_ns()
        log("sending stopped; waiting for the last echoes")
        drain_s = max(5.0, min(p.drain_s, self.left_s() - 90))
        drained = self.workers.call(
            "drain", {"deadline_ns": now_ns() + int(drain_s * 1e9)}, drain_s + 30
        )
        pending = sum(d["pending"] for d in drained)
        # Echoes first, then the database: an echoed message must be stored by then.
        echoed: dict[str, int] = {}
        for r in self.workers.call("echoed", {}, 60):
            echoed.update(r["echoed"])
        stored = self.stored_messages(db_url)
        by_room: dict[str, list[int]] = {}
        for slug, mid, *_ in stored["rows"]:
            by_room.setdefault(slug, []).append(mid)
        verify_s = max(5.0, min(p.verify_s, self.left_s() - 60))
        log(f"{len(stored['rows'])} messages stored; checking every socket against them")
        per_worker = [
            {
                "stored": {r: ids for r, ids in by_room.items() if self.room_worker.get(r) == w},
                "deadline_ns": now_ns() + int(verify_s * 1e9),
            }
            for w in range(p.workers)
        ]
        verified = self.workers.call("verify", per_worker, verify_s + 60)
        reports = self.workers.call(
            "report", {"windows": [[a - int(10e9), b] for a, b in self.fault_windows]}, 120
        )
        stored_ids = {cid: mid for _, mid, cid, *_ in stored["rows"] if cid}
        ours = {cid for cid in stored_ids if cid.startswith(self.tag + "-")}
        echoed_not_stored = [c for c in echoed if c not in stored_ids]
        id_mismatch = [c for c, mid in echoed.items() if c in stored_ids and stored_ids[c] != mid]
        stored_not_echoed = sorted(ours - set(echoed))
        dups: Counter = Counter()
        sends_of: dict[str, int] = {}
        for r in reports:
            dups.update(r["dups"])
            sends_of.update(r["sends_of"])
        # Delivery is at least once (docs/protocol.md): a frame may repeat when
        # its sender retried it (the server broadcasts the stored message again)
        # or when it was sent around a fault (kept by the hub while Redis was
        # down, published when it is back). Clients drop an id they have. A
        # repeat of a message sent once, away from any fault, is unexplained.
        windows = [(a - int(2e9), b) for a, b in self.fault_windows]
        unexplained: Counter = Counter()
        for r in reports:
            for kind, cid, sent_ns in r["dup_records"]:
                retried = sends_of.get(cid, 1) > 1 or kind == "answer_to_own_resend"
                near_fault = any(a <= sent_ns <= b for a, b in windows)
                if not (retried or near_fault):
                    unexplained[kind] += 1
        # Each message some open socket missed: who sent it, when, how often, in which fault.
        missed: Counter = Counter()
        for v in verified:
            missed.update({int(k): n for k, n in v["missed_ids"].items()})
        rows = {row[1]: row for row in stored["rows"]}
        lost_messages = []
        for mid, n in sorted(missed.items())[:SAMPLES_CAP]:
            slug, _, cid, _, body = rows[mid]
            sent_ns = 0
            with contextlib.suppress(ValueError, IndexError):
                sent_ns = int(body.rsplit(" ", 1)[1])
            at = (sent_ns - self.chat_start_ns) / 1e9 if sent_ns else None
            lost_messages.append(
                {
                    "id": mid,
                    "room": slug,
                    "client_id": cid,
                    "missed_by_open_sockets": n,
                    "first_sent_at_s": at,
                    "sends": sends_of.get(cid, 1),
                    "echoed_to_sender_as": echoed.get(cid),
                    "during": [
                        f["name"]
                        for f in self.results["faults"]
                        if at is not None and f["at_s"] - 1 <= at <= f["at_s"] + f["down_s"] + 1
                    ],
                }
            )

        def merged(key: str) -> dict:
            c: Counter = Counter()
            for r in reports:
                c.update(r[key])
            return dict(c)

        def lat(key: str) -> dict:
            parts = [r[key] for r in reports]
            count = sum(x["count"] for x in parts)
            return {
                "count": count,
                "p50_ms_worst_process": max(x["p50_ms"] for x in parts),
                "p99_ms_worst_process": max(x["p99_ms"] for x in parts),
                "max_ms": max(x["max_ms"] for x in parts),
                "over_1s": sum(x["over_1s"] for x in parts),
            }

        self.results["delivery"] = {
            "created": sum(r["created"] for r in reports),
            "echoed": sum(r["echoed_count"] for r in reports),
            "echoed_before_the_check": len(echoed),
            "unechoed_at_end": pending,
            "unechoed_samples": [s for d in drained for s in d["samples"]][:SAMPLES_CAP],
            "stored": len(stored["rows"]),
            "stored_ours": len(ours),
            "stored_deleted": sum(1 for row in stored["rows"] if row[3]),
            "stored_twice": [[c, n] for c, n in stored["twice"]],
            "echoed_not_stored": echoed_not_stored[:SAMPLES_CAP],
            "echoed_not_stored_count": len(echoed_not_stored),
            "echo_id_mismatch": id_mismatch[:SAMPLES_CAP],
            "stored_not_echoed": stored_not_echoed[:SAMPLES_CAP],
            "stored_not_echoed_count": len(stored_not_echoed),
            "lost": sum(v["lost"] for v in verified),
            "lost_on_closed_sockets": sum(v["lost_on_closed_sockets"] for v in verified),
            "sockets_with_loss": sum(v["sockets_with_loss"] for v in verified),
            "lost_by_room": {k: v for x in verified for k, v in x["lost_by_room"].items()},
            "lost_samples": [s for v in verified for s in v["samples"]][:SAMPLES_CAP],
            "lost_messages": lost_messages,
            "phantom_ids": sum(v["phantom"] for v in verified),
            "open_at_end": sum(v["open_sockets"] for v in verified),
            "closed_at_end": sum(v["closed_sockets"] for v in verified),
            "duplicated": sum(dups.values()),
            "duplicated_unexpected": sum(unexplained.values()),
            "duplicates_unexplained_by_kind": dict(unexplained),
            "duplicates_by_kind": dict(dups),
            "duplicate_samples": [s for r in reports for s in r["dup_samples"]][:SAMPLES_CAP],
            "errors": merged("errors"),
            "resends": merged("resends"),
            "refused_handshakes": merged("refused"),
            "closes": merged("closes"),
            "closed_frames": merged("closed_reasons"),
            "other_frames": merged("other_frames"),
            "hellos": sum(r["hellos"] for r in reports),
            "truncated_hellos": sum(r["truncated_hellos"] for r in reports),
            "stopped_sockets": sum(r["stopped_sockets"] for r in reports),
            "client_errors": [e for r in reports for e in r["client_errors"]][:SAMPLES_CAP],
            "latency_all": lat("latency_all"),
            "latency_steady": lat("latency_steady"),
            # Per 10 s of first-send time: [deliveries, p50 ms, p99 ms, max ms], worst process.
            "latency_by_10s": {
                k: [
                    sum(r["latency_by_10s"].get(k, [0])[0] for r in reports),
                    *(
                        max(r["latency_by_10s"][k][i] for r in reports if k in r["latency_by_10s"])
                        for i in (1, 2, 3)
                    ),
                ]
                for k in sorted({k for r in reports for k in r["latency_by_10s"]}, key=int)
            },
            "sender_behind_ms": max(r["behind_ms"] for r in reports),
            "client_cpu_s": [r["cpu_s"] for r in reports],
        }

    def memory(self) -> dict:
        p = self.p
        s0, s1 = self.chat_start_ns, self.chat_end_ns or now_ns()
        chat = [s for s in self.sampler.samples if s0 <= s[0] <= s1]
        if not chat:
            return {}
        excluded = [(a, e + int(p.after_fault_s * 1e9)) for a, e in self.fault_spans]

        def steady(t: int) -> bool:
            return not any(a <= t <= b for a, b in excluded)

        points = [((t - s0) / 1e9, rss) for t, rss, _, _ in chat if steady(t)]
        segments = []
        seg: list = []
        for t, rss, _, _ in chat:
            if steady(t):
                seg.append(((t - s0) / 1e9, rss))
            elif seg:
                segments.append(seg)
                seg = []
        if seg:
            segments.append(seg)
        start, end = chat[0], chat[-1]
        cpu = 100 * (end[2] - start[2]) / ((end[0] - start[0]) / 1e9) if end[0] > start[0] else 0
        return {
            "rss_start_mib": start[1] / 2**20,
            "rss_end_mib": end[1] / 2**20,
            "rss_min_mib": min(s[1] for s in chat) / 2**20,
            "rss_max_mib": max(s[1] for s in chat) / 2**20,
            "slope_kib_per_min": slope_kib_per_min(points),
            "steady_samples": len(points),
            "excluded_windows_s": [[(a - s0) / 1e9, (b - s0) / 1e9] for a, b in excluded],
            "segments": [
                {
                    "from_s": seg[0][0],
                    "to_s": seg[-1][0],
                    "rss_from_mib": seg[0][1] / 2**20,
                    "rss_to_mib": seg[-1][1] / 2**20,
                    "slope_kib_per_min": slope_kib_per_min(seg),
                }
                for seg in segments
            ],
            "fds_start": start[3],
            "fds_end": end[3],
            "server_cpu_pct": cpu,
            "series": [
                [round((t - s0) / 1e9, 1), round(rss / 2**20, 2), fds] for t, rss, _, fds in chat
            ],
        }

    # --- the whole run ---------------------------------------------------------------------------

    def run(self) -> dict:
        self.results["meta"] = meta(self)
        with (
            tempfile.TemporaryDirectory(prefix="chat-soak-") as tmpdir,
            harness.database_url(PG_URL),
        ):
            tmp = Path(tmpdir)
            try:
                self.static_root = harness.collectstatic(tmp, self.secret)
                self.redis = RedisServer(tmp / "redis").start()
                pg = urlsplit(PG_URL)
                self.proxy = TcpProxy(pg.hostname or "127.0.0.1", pg.port or 5432).start()
                log(
                    f"own redis-server on port {self.redis.port}; "
                    f"database proxy on port {self.proxy.port}"
                )
                with fresh_database(tmp) as db_url:
                    self.results["meta"]["database"] = db_url.rsplit("/", 1)[-1]
                    try:
                        self.soak(db_url)
                    finally:
                        self.teardown()
                log("dropped the soak's database")
            finally:
                for thing in (self.proxy, self.redis):
                    if thing is not None:
                        with contextlib.suppress(Exception):
                            thing.stop()
                if self.redis is not None:
                    with contextlib.suppress(OSError):
                        self.logdir.mkdir(parents=True, exist_ok=True)
                        shutil.copy(self.redis.log_path, self.logdir / "redis.log")
        self.results["meta"]["wall_s"] = time.monotonic() - self.started
        return self.results

    def soak(self, db_url: str) -> None:
        p = self.p
        env = self.env(self.proxy.url_for(db_url), self.redis.url)
        # Seeding goes straight to PostgreSQL.
        harness.seed(self.p.users, self.layout(), self.env(db_url, self.redis.url))
        port = free_port()
        argv = harness.server_argv("ours-uvicorn", port)
        self.results["meta"]["server_argv"] = argv[1:]
        self.server = ServerProc("ours-uvicorn", argv, port, env, self.logdir / "server.log", True)
        self.server.start()
        self.sampler = Sampler(self.server)
        self.sampler.start()
        self.health = Health(self.server.base)
        self.health.start()
        cookies = harness.sign_in(self.server, self.p.users)
        self.results["connect"] = self.connect(cookies)
        waited = settle([self.server], limit_s=15)
        log(f"server settled in {waited:.1f} s")

        # The chat phase.
        duration_ns = int(p.minutes * 60e9)
        self.chat_start_ns = now_ns()
        end_ns = self.chat_start_ns + duration_ns
        rooms = Counter(self.room_worker.values())
        self.workers.call(
            "start",
            [
                {
                    "start_ns": self.chat_start_ns,
                    "end_ns": end_ns,
                    "rate": p.rate * rooms[w] / p.rooms,
                }
                for w in range(p.workers)
            ],
            30,
        )
        self.progress("chat starts: ")
        plan = [("redis", p.redis_at), ("database", p.db_at)]
        for i, (name, at) in enumerate(plan):
            self.wait_until(self.chat_start_ns + int(at * duration_ns))
            nxt = plan[i + 1][1] if i + 1 < len(plan) else 1.0
            limit = self.chat_start_ns + int(nxt * duration_ns) - int(2e9)
            self.results["faults"].append(self.fault(name, limit))
            self.progress()
        self.wait_until(end_ns)
        self.progress("chat ends: ")
        self.finish(db_url)

    def teardown(self) -> None:
        if self.workers is not None:
            with contextlib.suppress(Exception):
                self.workers.close()
        if self.sampler is not None:
            self.sampler.stop()
            self.results["memory"] = self.memory()
        if self.health is not None:
            self.health.stop()
            self.results["healthz_failures"] = self.health.bodies.most_common(10)
        if self.server is not None:
            alive = self.server.alive()
            self.server.stop()
            self.results["server_alive_at_end"] = alive
            self.results["server_log"] = summarize_log(self.server.log_path)
        stop_all()


def fmt_s(v) -> str:
    return "-" if v is None else f"{v:.1f} s"


def meta(soak: Soak) -> dict:
    packages = harness.package_versions(
        ["Django", "channels", "redis", "uvicorn", "uvloop", "websockets", "psycopg"]
    )
    commit, dirty = harness.git_state(["chatrooms", "project", "accounts"])
    return {
        "run_id": soak.run_id,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "command": "python bench/soak.py " + " ".join(soak.argv),
        "commit": commit,
        "uncommitted": dirty.splitlines(),
        "nproc": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "packages": packages,
        "client": {
            "reconnect": f"on {RECONNECT_CODES}; backoff {BACKOFF_MIN_S:g} s doubling to "
            f"{BACKOFF_MAX_S:g} s, each wait between half and all of it; ?after=<highest id>",
            "resend": f"same client_id, after {SEND_TIMEOUT_S:g} s without echo, or after an "
            f"`unavailable` error ({RETRY_MIN_S:g} s doubling to {RETRY_MAX_S:g} s), "
            "and at once after each hello",
        },
    }


def report(results: dict) -> str:
    p = results["params"]
    lines = [
        "",
        f"SOAK {p['sockets']} sockets, {p['rooms']} rooms, {p['rate']:g} msg/s, "
        f"{p['minutes']:g} min on one uvicorn process (PostgreSQL via proxy + own Redis)",
    ]
    c = results.get("connect")
    if c:
        lines.append(
            f"connect: {c['connected']}/{c['sockets']} in {c['wall_s']:.1f} s, "
            f"slowest first hello {c['connect_max_ms'] / 1000:.1f} s"
        )
    m = results.get("memory") or {}
    if m:
        slope = m["slope_kib_per_min"]
        lines.append(
            f"server RSS: start {m['rss_start_mib']:.1f} MiB, end {m['rss_end_mib']:.1f} MiB "
            f"(min {m['rss_min_mib']:.1f}, max {m['rss_max_mib']:.1f}); slope over the steady "
            f"parts {'-' if slope is None else f'{slope:+.1f}'} KiB/min "
            f"({m['steady_samples']} samples); open files {m['fds_start']} -> {m['fds_end']}; "
            f"server CPU {m['server_cpu_pct']:.0f}%"
        )
        for seg in m["segments"]:
            s = seg["slope_kib_per_min"]
            lines.append(
                f"  steady {seg['from_s']:.0f}-{seg['to_s']:.0f} s: {seg['rss_from_mib']:.1f} -> "
                f"{seg['rss_to_mib']:.1f} MiB, {'-' if s is None else f'{s:+.1f}'} KiB/min"
            )
    for f in results.get("faults", []):
        lines.append(
            f"fault {f['name']} at {f['at_s']:.0f} s ({f['what']}): healthz 200 after "
            f"{fmt_s(f['healthz_heal_s'])}; every socket open after {fmt_s(f['all_connected_s'])}"
            f" and with a message sent after the fault after {fmt_s(f['sockets_heal_s'])} "
            f"(live {fmt_s(f['sockets_live_heal_s'])}; per socket p50 "
            f"{fmt_s(f['socket_heal_p50_s'])}, p90 {fmt_s(f['socket_heal_p90_s'])}; "
            f"{f['healed_sockets']}/{f['live_sockets']})"
        )
        lines.append(
            f"  {f['sockets_closed']} of {f['open_at_start']} open sockets closed, first codes "
            f"{f['first_close_codes']}; all closes {f['closes']}; refused handshakes "
            f"{f['refused_handshakes']}; error frames {f['errors']}; resends {f['resends']}"
        )
    d = results.get("delivery")
    if d:
        lines += [
            f"messages: {d['created']} sent, {d['echoed']} echoed, {d['unechoed_at_end']} never "
            f"echoed; {d['stored_ours']} stored ({len(d['stored_twice'])} client_ids stored twice,"
            f" {d['echoed_not_stored_count']} echoed but not stored, "
            f"{d['stored_not_echoed_count']} stored but never echoed)",
            f"LOST: {d['lost']} (on {d['sockets_with_loss']} of {d['open_at_end']} sockets open at "
            f"the end; {d['lost_on_closed_sockets']} on sockets closed at the end)",
            f"DUPLICATED (unexplained repeats): {d['duplicated_unexpected']} "
            f"{d['duplicates_unexplained_by_kind'] or ''}; repeated frames in all "
            f"{d['duplicated']} {d['duplicates_by_kind'] or ''} (a retried message, or one "
            "sent around a fault: delivery is at least once and clients drop an id they have)",
            f"resends {d['resends']}; error frames {d['errors']}; refused handshakes "
            f"{d['refused_handshakes']}; closes {d['closes']}; hellos {d['hellos']} "
            f"({d['truncated_hellos']} truncated); stopped sockets {d['stopped_sockets']}",
            f"latency (first send to live delivery): steady p50 "
            f"{d['latency_steady']['p50_ms_worst_process']:.1f} ms, p99 "
            f"{d['latency_steady']['p99_ms_worst_process']:.1f} ms; all p99 "
            f"{d['latency_all']['p99_ms_worst_process']:.0f} ms, max "
            f"{d['latency_all']['max_ms']:.0f} ms, {d['latency_all']['over_1s']} over 1 s",
        ]
        timeline = d.get("latency_by_10s") or {}
        if timeline:
            lines.append(
                "latency p99 ms per 10 s of sending: "
                + " ".join(
                    f"{v[2]:.0f}" for _, v in sorted(timeline.items(), key=lambda kv: int(kv[0]))
                )
            )
        for sample in d["duplicate_samples"][:5]:
            lines.append(f"  duplicate: {sample}")
        for sample in d["lost_messages"][:5]:
            lines.append(f"  lost: {sample}")
        if d["client_errors"]:
            lines.append(f"client errors: {d['client_errors'][:5]}")
    log_ = results.get("server_log")
    if log_:
        lines.append(
            f"server log ({log_['path']}): {log_['lines']} lines, {log_['tracebacks']} tracebacks"
        )
        lines += [f"  {n} x {text}" for text, n in log_.get("kinds", [])[:12]]
    if results.get("errors"):
        lines.append(f"ERRORS: {results['errors']}")
    return "\n".join(lines)


def verdict(results: dict) -> list[str]:
    bad = list(results.get("errors", []))
    d = results.get("delivery")
    if not d:
        bad.append("no delivery check")
        return bad
    if d["lost"]:
        bad.append(f"lost {d['lost']}")
    if d["duplicated_unexpected"]:
        bad.append(f"duplicated {d['duplicated_unexpected']}")
    if d["stored_twice"]:
        bad.append(f"stored twice {len(d['stored_twice'])}")
    if d["echoed_not_stored_count"]:
        bad.append(f"echoed but not stored {d['echoed_not_stored_count']}")
    if d["unechoed_at_end"]:
        bad.append(f"never echoed {d['unechoed_at_end']}")
    for f in results.get("faults", []):
        if f["healthz_heal_s"] is None or f["sockets_heal_s"] is None:
            bad.append(f"{f['name']} did not heal")
    if len(results.get("faults", [])) < 2:
        bad.append("not every fault ran")
    return bad


# --- Entry point ------------------------------------------------------------------------------


def parse_args(argv=None) -> Params:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, help="length of the chat phase (10)")
    parser.add_argument("--sockets", type=int, help="signed-in sockets (1000)")
    parser.add_argument("--rooms", type=int, help="rooms they are spread over (20)")
    parser.add_argument("--rate", type=float, help="messages per second, all rooms (20)")
    parser.add_argument("--users", type=int, help="users signed in (sockets / rooms)")
    parser.add_argument("--quick", action="store_true", help="200 sockets, 2 minutes")
    args = parser.parse_args(argv)
    p = Params()
    if args.quick:
        p.minutes, p.sockets, p.after_fault_s = 2.0, 200, 15.0
    for name in ("minutes", "sockets", "rooms", "rate", "users"):
        if getattr(args, name) is not None:
            setattr(p, name, getattr(args, name))
    if p.sockets < 1 or p.rooms < 1 or p.rate <= 0 or p.minutes <= 0:
        parser.error("--sockets, --rooms, --rate and --minutes must be positive")
    p.rooms = min(p.rooms, p.sockets)
    if not p.users:
        p.users = math.ceil(p.sockets / p.rooms)
    p.workers = min(p.workers, p.rooms)
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = parse_args(argv)
    harness.raise_nofile()
    harness.interrupt_on_sigterm()
    soak = Soak(p, argv)

    # Stops by itself: past the budget the run is interrupted (and cleans up);
    # a minute later, if cleaning up hangs, the server and Redis are killed.
    def overtime() -> None:
        log("over the time budget: stopping")
        os.kill(os.getpid(), signal.SIGTERM)

    def hard_stop() -> None:
        log("cleanup did not finish: killing the server and Redis")
        with contextlib.suppress(Exception):
            if soak.server is not None and soak.server.process is not None:
                os.killpg(soak.server.process.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            soak.redis.kill()
        os._exit(3)

    timers = [
        threading.Timer(soak.deadline - time.monotonic(), overtime),
        threading.Timer(soak.deadline - time.monotonic() + 60, hard_stop),
    ]
    for timer in timers:
        timer.daemon = True
        timer.start()
    log(
        f"soak: {p.sockets} sockets, {p.rooms} rooms, {p.users} users, {p.rate:g} msg/s, "
        f"{p.minutes:g} min; stops by itself within {(soak.deadline - soak.started) / 60:.1f} min"
    )
    try:
        soak.run()
    except BaseException as exc:  # recorded, the results are still written
        traceback.print_exc()
        soak.results["errors"].append(f"{type(exc).__name__}: {exc}"[:500])
    finally:
        timers[0].cancel()
        stop_all()
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"soak-{soak.run_id}.json"
    out.write_text(json.dumps(soak.results, indent=1, default=str))
    print(report(soak.results))
    bad = verdict(soak.results)
    print("VERDICT: " + ("ok" if not bad else "; ".join(bad)))
    log(f"results: {out.relative_to(ROOT)}; total {(time.monotonic() - soak.started) / 60:.1f} min")
    timers[1].cancel()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
