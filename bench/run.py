"""`make bench`: our chat server against the Channels tutorial and a bare relay.

Same machine, same run, same load clients (bench/loadclient.py, two
processes). Servers:

    ours-daphne   project.asgi:application under daphne
    ours-uvicorn  project.asgi:application under uvicorn (uvloop, httptools)
    tutorial      the Channels tutorial's sync consumer (bench/tutorial/) under daphne
    relay         a bare `websockets` relay with uvloop (bench/relay.py)

Configurations: `prod` (PostgreSQL + Redis: a fresh database, a unique Redis
prefix) and `embedded` (SQLite file + in-memory channel layer). The relay
has neither and runs once. Workloads: fanout, ramp, idle, rooms, two (see
docs/performance.md). Writes docs/performance.md, docs/performance.png and
bench/results/bench-<time>.json; prints the tables.

    python bench/run.py [--quick] [--only fanout,ramp,...] [--servers ours-daphne,...]
                        [--configs prod,embedded] [--no-docs]
    python bench/run.py --render bench/results/bench-<time>.json   # docs from saved results
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import multiprocessing as mp
import os
import platform
import re
import resource
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import psutil

SELF = psutil.Process()

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import loadclient  # noqa: E402
from deploy.servers import command  # noqa: E402
from tests.live import Browserless, free_port, fresh_database, server_env  # noqa: E402

BIN = Path(sys.executable).parent
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs"
PG_URL = "postgres://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"
PASSWORD = "bench-passphrase-7291"  # noqa: S105 - throwaway users in a throwaway database

SERVERS = ["ours-daphne", "ours-uvicorn", "tutorial", "relay"]
CONFIGS = ["prod", "embedded"]
WORKLOADS = ["idle", "fanout", "ramp", "rooms", "two"]

RAMP_P99_MS = 250  # a ramp step fails above this p99, or on any loss
QUIET_PCT = 25  # before each server: wait (bounded) until others use less of a core than this
QUIET_WAIT = None  # set by Bench: waits (bounded) for the machine to be quiet
# Time that re-measuring disturbed phases may take: per server, and in all.
RETRY_BUDGET = {"left_s": 0.0, "total_left_s": 0.0}
# "ValueError: ...", "redis.exceptions.ConnectionError: ...", a warning class.
EXC_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Warning|Exit|Interrupt)\b:?")


@dataclass
class Params:
    users: int = 100
    fan_sockets: int = 50
    fan_senders: int = 5
    fan_rate: float = 20.0  # per sender
    fan_s: float = 8.0
    ramp_rates: tuple = (20, 50, 100, 200, 300, 400, 600, 800, 1000, 1200, 1600, 2000)
    ramp_senders: int = 10
    ramp_s: float = 2.5
    idle_users: int = 100
    idle_per_user: int = 10
    idle_hold_s: float = 6.0  # longer than redis-py's 5 s socket timeout
    rooms: int = 100
    room_size: int = 10
    room_rate: float = 3.0  # per room: 100 x 3 x 10 = 3,000 deliveries/s offered
    rooms_s: float = 6.0
    drain_s: float = 2.0
    warm_s: float = 1.5  # an unreported warm-up phase before the fan-out
    drain_after_overload_s: float = 15  # most waited for an overloaded server to drain
    connect_parallel: int = 25  # per load-client process
    budget_s: float = 20 * 60  # hard stop: later servers are skipped past this
    quiet_wait_s: float = 15  # most waited, per server, for other work on the machine to stop
    retry_per_server_s: float = 20  # most spent on re-measuring disturbed phases, per server
    retry_budget_s: float = 80  # and in all


QUICK = Params(
    users=20,
    fan_s=2.0,
    ramp_rates=(20, 100, 400, 1200),
    ramp_s=1.0,
    idle_users=10,
    idle_hold_s=1.0,
    rooms=20,
    rooms_s=1.5,
    warm_s=0.5,
    drain_s=1.0,
    drain_after_overload_s=4,
    budget_s=6 * 60,
    quiet_wait_s=10,
    retry_per_server_s=10,
    retry_budget_s=30,
)


def log(*parts) -> None:
    print(time.strftime("%H:%M:%S"), *parts, flush=True)


# --- Server processes ------------------------------------------------------------------

LIVE: set[ServerProc] = set()


class ServerProc:
    """A server in its own process group, with psutil samples of CPU and RSS."""

    def __init__(
        self, name: str, argv: list[str], port: int, env: dict, log_path: Path, health: bool
    ):
        self.name = name
        self.argv = argv
        self.port = port
        self.env = env
        self.log_path = log_path
        self.health = health
        self.process: subprocess.Popen | None = None
        self.ps: psutil.Process | None = None

    @property
    def base(self) -> str:  # for tests.live.Browserless
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_base(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, limit_s: float = 60) -> ServerProc:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killed whole at the end
        )
        out.close()
        LIVE.add(self)
        self.ps = psutil.Process(self.process.pid)
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}")
            if self.ready():
                return self
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer within {limit_s:.0f} s")

    def ready(self) -> bool:
        try:
            if self.health:
                with urllib.request.urlopen(self.base + "/healthz", timeout=2) as r:  # noqa: S310
                    return r.status == 200
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _procs(self) -> list[psutil.Process]:
        if not self.alive():
            return []
        try:
            return [self.ps, *self.ps.children(recursive=True)]
        except psutil.Error:
            return []

    def cpu_s(self) -> float:
        total = 0.0
        for proc in self._procs():
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def rss(self) -> int:
        total = 0
        for proc in self._procs():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def stop(self) -> None:
        """SIGTERM to its process group, SIGKILL after 3 s; then any child left over."""
        children: list[psutil.Process] = []
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(psutil.Error):
                children = self.ps.children(recursive=True)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(3)  # no need for a graceful shutdown here
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(8)
        for child in children:  # psutil checks it is still the same process
            with contextlib.suppress(psutil.Error):
                if child.is_running():
                    child.kill()
        LIVE.discard(self)


def stop_all() -> None:
    for server in list(LIVE):
        with contextlib.suppress(Exception):
            server.stop()


def cpu_of(servers: list[ServerProc]) -> float:
    return sum(s.cpu_s() for s in servers)


def rss_of(servers: list[ServerProc]) -> int:
    return sum(s.rss() for s in servers)


class Sampler:
    """Samples the servers' CPU time every 0.1 s in a thread, to read it for any window."""

    def __init__(self, servers: list[ServerProc]):
        import threading

        self.servers = servers
        self.samples: list[tuple[int, float]] = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self) -> None:
        for _ in range(20_000):  # bounded: at most about 30 minutes
            self.samples.append((time.monotonic_ns(), cpu_of(self.servers)))
            if self.stop_event.wait(0.1):
                break
        self.samples.append((time.monotonic_ns(), cpu_of(self.servers)))

    def __enter__(self) -> Sampler:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        self.thread.join(5)

    def at(self, t_ns: int) -> float:
        """CPU seconds at time t_ns, interpolated between samples."""
        s = self.samples
        if not s:
            return 0.0
        if t_ns <= s[0][0]:
            return s[0][1]
        for (t0, c0), (t1, c1) in zip(s, s[1:], strict=False):
            if t0 <= t_ns <= t1:
                return c0 + (c1 - c0) * (t_ns - t0) / max(1, t1 - t0)
        return s[-1][1]


def settle(servers: list[ServerProc], below: float = 5.0, limit_s: float = 15.0) -> float:
    """Wait (bounded) until the servers use under `below` % of a core; returns the wait."""
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        c0, t0 = cpu_of(servers), time.monotonic()
        time.sleep(0.3)
        if (cpu_of(servers) - c0) / (time.monotonic() - t0) * 100 < below:
            break
    return time.monotonic() - start


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (every core), since boot."""
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0)


def pids_cpu(pids) -> dict[int, float]:
    out = {}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(pid).cpu_times()
            out[pid] = t.user + t.system
    return out


def pg_backends(db_name: str) -> list[int]:
    """The PostgreSQL backend processes serving our benchmark database."""
    if not db_name:
        return []
    try:
        import psycopg

        with psycopg.connect(PG_URL, connect_timeout=3) as conn:
            rows = conn.execute(
                "select pid from pg_stat_activity where datname = %s", (db_name,)
            ).fetchall()
        return [r[0] for r in rows]
    except Exception:
        return []


def busiest_others(exclude: set[int], window_s: float = 1.0, top: int = 4) -> tuple[float, list]:
    """CPU % (of one core) of processes outside the benchmark over a window, and the top ones."""

    def snap() -> dict[int, tuple[str, float]]:
        out = {}
        for proc in psutil.process_iter(["name", "cpu_times"]):
            with contextlib.suppress(Exception):
                t = proc.info["cpu_times"]
                out[proc.pid] = (proc.info["name"], t.user + t.system)
        return out

    before, busy0 = snap(), machine_busy_s()
    time.sleep(window_s)
    after, busy1 = snap(), machine_busy_s()
    per: Counter = Counter()
    for pid, (name, cpu) in after.items():
        if pid in exclude or pid not in before:
            continue
        delta = cpu - before[pid][1]
        if delta > 0:
            per[name] += delta
    ours = sum(
        cpu - before[pid][1] for pid, (_, cpu) in after.items() if pid in exclude and pid in before
    )
    others = max(0.0, (busy1 - busy0) - ours)
    return 100 * others / window_s, [
        (n, round(100 * c / window_s)) for n, c in per.most_common(top)
    ]


def redis_cpu_s() -> float | None:
    try:
        import redis

        info = redis.Redis.from_url(REDIS_URL, socket_timeout=2).info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    except Exception:
        return None


def redis_cleanup(prefixes: list[str]) -> int:
    """Delete this run's keys, by their unique prefix (never FLUSHDB)."""
    import redis

    deleted = 0
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    for prefix in prefixes:
        keys = []
        for n, key in enumerate(client.scan_iter(match=f"{prefix}*", count=1000)):
            keys.append(key)
            if n > 200_000:
                break
        for i in range(0, len(keys), 1000):
            deleted += client.delete(*keys[i : i + 1000])
    return deleted


# --- Load-client processes -------------------------------------------------------------


class Clients:
    """Two load-client processes (bench/loadclient.py), driven over pipes."""

    def __init__(self, n: int = 2):
        self.n = n
        self.conns = []
        self.procs = []
        ctx = mp.get_context("spawn")
        for _ in range(n):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=loadclient.worker_main, args=(child,), daemon=True)
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)

    def call(self, op: str, args: list[dict] | dict, limit_s: float) -> list[dict]:
        per = args if isinstance(args, list) else [args] * self.n
        for conn, a in zip(self.conns, per, strict=True):
            conn.send({"op": op, "args": a})
        deadline = time.monotonic() + limit_s
        replies = []
        for conn in self.conns:
            if not conn.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"a load client did not answer {op!r} within {limit_s:.0f} s")
            reply = conn.recv()
            if "error" in reply:
                raise RuntimeError(f"load client {op}: {reply['error']}")
            replies.append(reply)
        return replies

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(Exception):
                conn.send({"op": "quit"})
        for proc in self.procs:
            proc.join(8)
            if proc.is_alive():
                proc.kill()
                proc.join(3)
        for conn in self.conns:
            conn.close()


# --- Targets ------------------------------------------------------------------------


@dataclass
class Target:
    """One server kind in one configuration, as the workloads see it."""

    name: str  # ours-daphne, ours-uvicorn, tutorial, relay
    config: str  # prod, embedded, none (relay)
    servers: list[ServerProc]
    cookies: list[str] = field(default_factory=list)  # per user number (ours)
    label: str = ""  # room-name prefix of ours
    db_name: str = ""  # our PostgreSQL database, to count its backends' CPU

    @property
    def proto(self) -> str:
        return "ours" if self.name.startswith("ours") else self.name

    def room(self, base: str) -> str:
        return f"{self.label}_{base}" if self.proto == "ours" else base

    def spec(self, base: str, user: int, sid: int | None, server: int = 0) -> dict:
        srv = self.servers[server % len(self.servers)]
        room = self.room(base)
        spec = {"url": f"{srv.ws_base}/ws/chat/{room}/", "room": room, "sid": sid}
        if self.proto == "ours":
            spec["origin"] = srv.base
            spec["headers"] = [("Cookie", self.cookies[user])]
        return spec


# Socket layouts: (room base name, user number, is a sender) per socket. The
# same layouts seed our rooms' memberships and open the sockets.


def fan_layout(p: Params, base: str = "fan") -> list[tuple[str, int, bool]]:
    senders = max(p.fan_senders, p.ramp_senders)
    return [(base, j % p.users, j < senders) for j in range(p.fan_sockets)]


def idle_layout(p: Params) -> list[tuple[str, int, bool]]:
    return [(f"idle_{k}", u, False) for k in range(p.idle_per_user) for u in range(p.idle_users)]


def rooms_layout(p: Params) -> list[tuple[str, int, bool]]:
    return [
        (f"r_{r}", (r * p.room_size + k) % p.users, k == 0)
        for r in range(p.rooms)
        for k in range(p.room_size)
    ]


def seed_spec(p: Params, labels: list[str]) -> dict:
    rooms: dict[str, set[int]] = {}
    layouts = fan_layout(p) + fan_layout(p, "two") + idle_layout(p) + rooms_layout(p)
    for label in labels:
        for base, user, _ in layouts:
            rooms.setdefault(f"{label}_{base}", set()).add(user)
    return {
        "users": p.users,
        "password": PASSWORD,
        "rooms": {slug: sorted(members) for slug, members in rooms.items()},
    }


# --- Measuring ------------------------------------------------------------------------


def pct(values, qs):
    import numpy as np

    if len(values) == 0:
        return [None] * len(qs)
    return [float(v) for v in np.percentile(values, qs)]


class Session:
    """Sockets of one workload on one target, and the phases run on them."""

    def __init__(self, clients: Clients, target: Target):
        self.clients = clients
        self.target = target
        self.sid_room: dict[int, str] = {}
        self.room_sizes: Counter = Counter()
        self.next_sid = 0

    def connect(self, layout, p: Params, spread_servers: bool = False) -> dict:
        per: list[list[dict]] = [[] for _ in range(self.clients.n)]
        for j, (base, user, sender) in enumerate(layout):
            sid = None
            if sender:
                sid = self.next_sid
                self.next_sid += 1
                self.sid_room[sid] = self.target.room(base)
            spec = self.target.spec(base, user, sid, server=j if spread_servers else 0)
            per[j % self.clients.n].append(spec)
        limit = 60 + len(layout) / 10
        replies = self.clients.call(
            "connect",
            [
                {
                    "specs": specs,
                    "concurrency": p.connect_parallel,
                    "hello": self.target.proto == "ours",
                    "open_s": 30,
                }
                for specs in per
            ],
            limit,
        )
        self.room_sizes = Counter()
        for r in replies:
            self.room_sizes.update(r["rooms"])
        times = [t / 1e6 for r in replies for t in r["connect_ns"]]
        errors = Counter()
        for r in replies:
            errors.update(dict(r["errors"]))
        p50, p99 = pct(times, [50, 99])
        wall = max(r["wall_ns"] for r in replies) / 1e9
        return {
            "sockets": len(layout),
            "connected": len(times),
            "failed": sum(r["failed"] for r in replies),
            "errors": errors.most_common(5),
            "connect_p50_ms": p50,
            "connect_p99_ms": p99,
            "connect_max_ms": max(times) if times else None,
            "connect_wall_s": wall,
            "connects_per_s": len(times) / wall if wall else None,
        }

    def status(self) -> dict:
        replies = self.clients.call("status", {}, 30)
        closed = Counter()
        for r in replies:
            closed.update(r["closed"])
        return {"open": sum(r["open"] for r in replies), "closed": dict(closed)}

    def close(self) -> None:
        self.clients.call("close", {"limit_s": 20}, 40)

    def phase(self, rates: dict[int, float], duration: float, p: Params, tag: str) -> dict:
        """One measured phase; measured again, once, if other work on the machine disturbed it.

        Of the two, the one with less other work is kept (with `noisy_retry` set).
        """
        result = self.measure_phase(rates, duration, p, tag)
        if (
            result["others_cpu_pct"] < QUIET_PCT
            or QUIET_WAIT is None
            or tag.startswith("warm")
            or min(RETRY_BUDGET["left_s"], RETRY_BUDGET["total_left_s"]) <= 0
        ):
            return result
        log(f"  (others used {result['others_cpu_pct']:.0f}% of a core: measuring again)")
        t0 = time.monotonic()
        QUIET_WAIT(
            f"retry {self.target.config}-{self.target.name}-{tag}",
            min(10, RETRY_BUDGET["left_s"], RETRY_BUDGET["total_left_s"]),
        )
        settle(self.target.servers, limit_s=10)
        again = self.measure_phase(rates, duration, p, tag + "r")
        RETRY_BUDGET["left_s"] -= time.monotonic() - t0
        RETRY_BUDGET["total_left_s"] -= time.monotonic() - t0
        best = min(result, again, key=lambda r: r["others_cpu_pct"])
        best["noisy_retry"] = {
            "others_cpu_pct": [result["others_cpu_pct"], again["others_cpu_pct"]],
        }
        return best

    def measure_phase(self, rates: dict[int, float], duration: float, p: Params, tag: str):
        """Send at `rates` (per sender id) for `duration` s; measure everything."""
        servers = self.target.servers
        sids = sorted(rates)
        offsets = {sid: i / len(sids) for i, sid in enumerate(sids)}
        offered = sum(rate * self.room_sizes[self.sid_room[sid]] for sid, rate in rates.items())
        lead = 0.3
        start_ns = time.monotonic_ns() + int(lead * 1e9)
        args = {
            "start_ns": start_ns,
            "duration": duration,
            "rates": rates,
            "offsets": offsets,
            "proto": self.target.proto,
            "tag": tag,
        }
        pg_pids = pg_backends(self.target.db_name)
        with Sampler(servers) as sampler:
            for conn in self.clients.conns:
                conn.send({"op": "run", "args": args})
            time.sleep(max(0.0, (start_ns - time.monotonic_ns()) / 1e9))
            redis0 = redis_cpu_s()
            busy0, own0, pg0 = machine_busy_s(), SELF.cpu_times(), pids_cpu(pg_pids)
            replies = []
            for conn in self.clients.conns:
                if not conn.poll(duration + 30):
                    raise TimeoutError("a load client did not finish sending")
                reply = conn.recv()
                if "error" in reply:
                    raise RuntimeError(f"load client run: {reply['error']}")
                replies.append(reply)
            expected: dict[str, list] = {}
            sent = planned = 0
            for r in replies:
                planned += r["planned"]
                for sid, (first, count) in r["sent"].items():
                    expected.setdefault(self.sid_room[sid], []).append((sid, first, count))
                    sent += count
            deadline_ns = time.monotonic_ns() + int(p.drain_s * 1e9)
            collected = self.clients.call(
                "collect",
                {"expected": expected, "deadline_ns": deadline_ns, "proto": self.target.proto},
                p.drain_s + 60,
            )
            redis1 = redis_cpu_s()
            busy1, own1 = machine_busy_s(), SELF.cpu_times()
            pg_pids = set(pg_pids) | set(pg_backends(self.target.db_name))
            pg1 = pids_cpu(pg_pids)
            phase_end_ns = time.monotonic_ns()
            redis_wall = (phase_end_ns - start_ns) / 1e9
        # The server's CPU from the first send to the last delivery.
        last = max(c["last_recv_ns"] for c in collected)
        end_ns = last if last > start_ns else time.monotonic_ns()
        wall = (end_ns - start_ns) / 1e9
        cpu = sampler.at(end_ns) - sampler.at(start_ns)
        import numpy as np

        lat = np.concatenate([np.frombuffer(c["lat_us"], dtype=np.int64) for c in collected])
        received = int(lat.size)
        span = wall if received else None
        p50, p95, p99 = pct(lat / 1000.0, [50, 95, 99])
        closed = Counter()
        for c in collected:
            closed.update(c["closed"])
        client_cpu = [100 * c["cpu_s"] / c["wall_s"] for c in collected if c["wall_s"]]
        # Everything else the machine did meanwhile (other people's tests, browsers...):
        # busy CPU of the whole machine less the server, the load clients, this
        # process, Redis and our database's PostgreSQL backends.
        redis_s = (redis1 - redis0) if redis0 is not None and redis1 is not None else 0.0
        pg_s = sum(pg1[pid] - pg0.get(pid, 0.0) for pid in pg1)
        own_s = (own1.user + own1.system) - (own0.user + own0.system)
        bench_s = (
            (sampler.at(phase_end_ns) - sampler.at(start_ns))
            + sum(c["cpu_total_s"] for c in collected)
            + own_s
            + (redis_s if self.target.config == "prod" else 0.0)
            + pg_s
        )
        others_pct = max(0.0, 100 * ((busy1 - busy0) - bench_s) / redis_wall)
        result = {
            "duration_s": duration,
            "senders": len(rates),
            "msgs_per_s": sum(rates.values()),
            "offered": offered,
            "planned_msgs": planned,
            "sent_msgs": sent,
            "sender_behind_ms": max(r["behind_ms"] for r in replies),
            "expected": received + sum(c["lost"] for c in collected),
            "received": received,
            "achieved": received / span if span else 0.0,
            "p50_ms": p50,
            "p95_ms": p95,
            "p99_ms": p99,
            "max_ms": float(lat.max()) / 1000 if received else None,
            "lost": sum(c["lost"] for c in collected),
            "dup": sum(c["dup"] for c in collected),
            "stray": sum(c["stray"] for c in collected),
            "closed_sockets": dict(closed),
            "server_cpu_pct": 100 * cpu / wall,
            "server_cpu_us_per_delivery": 1e6 * cpu / received if received else None,
            "server_rss_mib": rss_of(servers) / 2**20,
            "client_cpu_pct": client_cpu,
            "postgres_cpu_pct": 100 * pg_s / redis_wall if self.target.db_name else None,
            "others_cpu_pct": others_pct,
            "redis_cpu_pct": (
                100 * (redis1 - redis0) / redis_wall
                if self.target.config == "prod" and redis0 is not None and redis1 is not None
                else None
            ),
        }
        return result


# --- Workloads ------------------------------------------------------------------------


def wl_idle(clients: Clients, target: Target, p: Params) -> dict:
    servers = target.servers
    settle(servers)
    rss0 = rss_of(servers)
    cpu0 = cpu_of(servers)
    session = Session(clients, target)
    try:
        result = session.connect(idle_layout(p), p)
        result["server_cpu_ms_per_connect"] = (
            1000 * (cpu_of(servers) - cpu0) / result["connected"] if result["connected"] else None
        )
        time.sleep(p.idle_hold_s)
        settle(servers)
        rss1 = rss_of(servers)
        result.update(session.status())
        result["rss_before_mib"] = rss0 / 2**20
        result["rss_after_mib"] = rss1 / 2**20
        result["kib_per_socket"] = (
            (rss1 - rss0) / 1024 / result["connected"] if result["connected"] else None
        )
    finally:
        session.close()
    settle(servers)
    return result


def wl_fanout_ramp(clients: Clients, target: Target, p: Params, workloads: set[str]) -> dict:
    out: dict = {}
    session = Session(clients, target)
    try:
        settle(target.servers)
        out["fan_connect"] = session.connect(fan_layout(p), p)
        # Warm-up (not reported): first-message imports, pools, caches.
        session.phase({sid: 5.0 for sid in range(p.fan_senders)}, p.warm_s, p, "warm")
        settle(target.servers, limit_s=5)
        if "fanout" in workloads:
            rates = {sid: p.fan_rate for sid in range(p.fan_senders)}
            out["fanout"] = session.phase(rates, p.fan_s, p, "fan")
            log(f"  fanout  {summary(out['fanout'])}")
            # An overloaded server first drains its backlog.
            settle(target.servers, limit_s=p.drain_after_overload_s)
        if "ramp" in workloads:
            out["ramp"] = ramp(session, target, p)
    finally:
        session.close()
    settle(target.servers)
    return out


def ramp(session: Session, target: Target, p: Params) -> dict:
    steps = []
    failed = None
    for n, rate in enumerate(p.ramp_rates):
        per = rate / p.ramp_senders
        step = session.phase({sid: per for sid in range(p.ramp_senders)}, p.ramp_s, p, f"ramp{n}")
        step["msgs_per_s"] = rate
        steps.append(step)
        log(f"  ramp {rate:>5} msg/s  {summary(step)}")
        reasons = []
        if step["lost"]:
            reasons.append(f"lost {step['lost']}")
        if step["p99_ms"] is None or step["p99_ms"] > RAMP_P99_MS:
            reasons.append(f"p99 {fmt_ms(step['p99_ms'])} ms > {RAMP_P99_MS}")
        if not all(s.alive() for s in target.servers):
            reasons.append("server died")
        if reasons:
            failed = {"offered": step["offered"], "reason": ", ".join(reasons)}
            break
        settle(target.servers, limit_s=4)
    passed = [s for s in steps if failed is None or s is not steps[-1]]
    best = max(passed, key=lambda s: s["achieved"], default=None)
    return {
        "steps": steps,
        "failed": failed,
        "sustained": best["achieved"] if best else 0.0,
        "sustained_offered": best["offered"] if best else 0.0,
        "sustained_p99_ms": best["p99_ms"] if best else None,
        "top_of_ramp": failed is None,
    }


def wl_rooms(clients: Clients, target: Target, p: Params) -> dict:
    session = Session(clients, target)
    try:
        settle(target.servers)
        connect = session.connect(rooms_layout(p), p)
        settle(target.servers, limit_s=10)
        rates = {sid: p.room_rate for sid in session.sid_room}
        result = session.phase(rates, p.rooms_s, p, "rooms")
        result["connect"] = connect
        result["rooms"] = p.rooms
    finally:
        session.close()
    settle(target.servers)
    return result


def wl_two(clients: Clients, target: Target, second: ServerProc, p: Params) -> dict:
    two = dataclasses.replace(target, servers=[*target.servers, second])
    session = Session(clients, two)
    try:
        settle(two.servers)
        connect = session.connect(fan_layout(p, "two"), p, spread_servers=True)
        session.phase({sid: 5.0 for sid in range(p.fan_senders)}, p.warm_s, p, "warm2")
        settle(two.servers, limit_s=5)
        rates = {sid: p.fan_rate for sid in range(p.fan_senders)}
        result = session.phase(rates, p.fan_s, p, "two")
        result["connect"] = connect
        result["processes"] = 2
    finally:
        session.close()
    return result


# --- Formatting ---------------------------------------------------------------------------


def fmt_ms(v) -> str:
    if v is None:
        return "-"
    return f"{v:.1f}" if v < 100 else f"{v:.0f}"


def fmt_n(v) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}"


def summary(r: dict) -> str:
    return (
        f"offered {fmt_n(r['offered'])}/s achieved {fmt_n(r['achieved'])}/s "
        f"p50 {fmt_ms(r['p50_ms'])} p99 {fmt_ms(r['p99_ms'])} max {fmt_ms(r['max_ms'])} ms "
        f"lost {r['lost']} dup {r['dup']} srv {r['server_cpu_pct']:.0f}% "
        f"cli {max(r['client_cpu_pct'], default=0):.0f}% others {r['others_cpu_pct']:.0f}%"
    )


# --- Orchestration --------------------------------------------------------------------------


class Bench:
    def __init__(self, args, p: Params):
        self.args = args
        self.p = p
        self.run_id = time.strftime("%Y%m%d-%H%M%S")
        self.logdir = RESULTS / "logs" / self.run_id
        self.secret = secrets.token_urlsafe(50)
        self.redis_prefixes: list[str] = []
        self.results: dict = {"runs": {}, "logs": {}, "errors": [], "skipped": [], "quiet": {}}
        self.started = time.monotonic()
        self.clients: Clients | None = None
        self.static_root = ""

    # servers ---------------------------------------------------------------------

    def ours_env(self, db_url: str, redis_url: str, prefix: str) -> dict:
        return server_env(
            db_url,
            redis_url,
            prefix,
            DJANGO_DEBUG="0",
            DJANGO_SECRET_KEY=self.secret,
            DJANGO_SECURE="0",
            DJANGO_BEHIND_PROXY="0",
            DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
            DJANGO_STATIC_ROOT=self.static_root,
            DJANGO_LOG_LEVEL="WARNING",
            CHAT_RATE_LIMIT="0",
            ACCOUNT_RATE_LIMITS="0",
        )

    def server(self, kind: str, env: dict, tag: str) -> ServerProc:
        port = free_port()
        if kind in ("ours-daphne", "ours-uvicorn"):
            argv = command(kind.removeprefix("ours-"), port)
            if kind == "ours-uvicorn":
                argv += ["--no-access-log", "--log-level", "warning"]
        elif kind == "tutorial":
            argv = command("daphne", port, app="bench.tutorial.asgi:application")
        else:
            argv = [sys.executable, str(ROOT / "bench" / "relay.py"), str(port)]
        srv = ServerProc(
            kind, argv, port, env, self.logdir / f"{tag}.log", health=kind.startswith("ours")
        )
        return srv.start()

    def scan_log(self, srv: ServerProc, tag: str) -> None:
        """Count errors in a server's log; keep the first traceback and a summary."""
        try:
            lines = srv.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return
        summary: Counter = Counter()
        first_tb: list[str] = []
        for i, line in enumerate(lines):
            text = line.strip()
            if text.startswith("Traceback"):
                before = lines[i - 1].strip() if i else ""
                if (
                    before
                    and not before.startswith(("File ", "^", "Traceback"))
                    and not EXC_LINE.match(before)
                    and "Exception inside application" not in before
                ):
                    summary[f"(logged before a traceback) {before[:200]}"] += 1
                if not first_tb:
                    first_tb = lines[max(0, i - 1) : i + 40]
            elif (
                EXC_LINE.match(text)
                or "Exception inside application" in text
                or ("over capacity" in text)
            ):
                summary[text[:200]] += 1
        if first_tb:  # cut after the exception line that ends it
            for j, line in enumerate(first_tb[2:], start=2):
                if EXC_LINE.match(line.strip()):
                    first_tb = first_tb[: j + 1]
                    break
        self.results["logs"][tag] = {
            "path": str(srv.log_path.relative_to(ROOT)),
            "lines": len(lines),
            "flagged": sum(summary.values()),
            "tracebacks": sum(ln.startswith("Traceback") for ln in lines),
            "summary": summary.most_common(12),
            "first_traceback": first_tb,
        }

    # runs ---------------------------------------------------------------------------

    def wait_quiet(self, label: str, limit_s: float | None = None) -> None:
        """Wait (bounded) for other work on the machine to stop; record it."""
        limit_s = self.p.quiet_wait_s if limit_s is None else limit_s
        exclude = {os.getpid(), *(pr.pid for pr in self.ensure_clients().procs)}
        for srv in LIVE:
            exclude.update(pr.pid for pr in srv._procs())
        start = time.monotonic()
        others, top = busiest_others(exclude)
        told = False
        while others >= QUIET_PCT and time.monotonic() - start < limit_s:
            if not told:
                log(
                    f"  the machine is busy outside the benchmark ({others:.0f}% of a core; "
                    f"top: {top}); waiting up to {limit_s:.0f} s"
                )
                told = True
            others, top = busiest_others(exclude)
        if not label.startswith("retry"):  # a new server: its own retry budget
            RETRY_BUDGET["left_s"] = self.p.retry_per_server_s
        self.results["quiet"][label] = {
            "others_pct": others,
            "top": top,
            "waited_s": time.monotonic() - start,
        }
        if others >= QUIET_PCT:
            log(f"  still busy ({others:.0f}% of a core; {top}); measuring anyway")

    def over_budget(self) -> bool:
        return time.monotonic() - self.started > self.p.budget_s

    def ensure_clients(self) -> Clients:
        if self.clients is None:
            self.clients = Clients(2)
        return self.clients

    def reset_clients(self) -> None:
        if self.clients is not None:
            with contextlib.suppress(Exception):
                self.clients.close()
        self.clients = None

    def measure(
        self, target: Target, config: str, second: ServerProc | None = None, make_second=None
    ) -> dict:
        """Every selected workload on one target; an error ends that workload only."""
        p, only = self.p, self.args.only
        out: dict = {}
        steps = [("idle", lambda c: wl_idle(c, target, p))]
        if only & {"fanout", "ramp"}:
            steps.append(("fanout+ramp", lambda c: wl_fanout_ramp(c, target, p, only)))
        steps.append(("rooms", lambda c: wl_rooms(c, target, p)))
        if make_second is not None:
            steps.append(("two", lambda c: self.two(c, target, make_second)))
        for name, fn in steps:
            if name in {"idle", "rooms", "two"} and name not in only:
                continue
            if self.over_budget():
                self.results["skipped"].append(f"{config}/{target.name}/{name}: over budget")
                continue
            log(f"{config} {target.name}: {name}")
            try:
                value = fn(self.ensure_clients())
            except Exception as exc:
                traceback.print_exc()
                self.results["errors"].append(f"{config}/{target.name}/{name}: {exc!r}")
                out.setdefault("errors", []).append(f"{name}: {exc!r}")
                self.reset_clients()
                continue
            if name == "fanout+ramp":
                out.update(value)
            else:
                out[name] = value
                if name == "idle":
                    log(
                        f"  idle {value['connected']}/{value['sockets']} sockets, connect p50 "
                        f"{fmt_ms(value['connect_p50_ms'])} p99 {fmt_ms(value['connect_p99_ms'])}"
                        f" ms, {value['kib_per_socket'] or 0:.1f} KiB/socket, open after hold "
                        f"{value['open']}"
                    )
                elif name in {"rooms", "two"}:
                    log(f"  {name}  {summary(value)}")
            if not all(s.alive() for s in target.servers):
                out.setdefault("errors", []).append(f"server died during {name}")
                self.results["errors"].append(f"{config}/{target.name}: server died in {name}")
                break
        return out

    def two(self, clients: Clients, target: Target, make_second) -> dict:
        second = make_second()
        try:
            return wl_two(clients, target, second, self.p)
        finally:
            second.stop()
            self.scan_log(second, f"{target.config}-{target.name}-2nd")

    def sign_in(self, srv: ServerProc) -> list[str]:
        def one(n: int) -> str:
            return Browserless(srv).sign_in(f"bench{n}", PASSWORD).cookie_header

        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=4) as pool:
            cookies = list(pool.map(one, range(self.p.users)))
        log(
            f"  signed in {len(cookies)} users through the login form in "
            f"{time.monotonic() - t0:.1f} s"
        )
        return cookies

    def run_config(self, config: str, tmp: Path) -> None:
        servers = [s for s in self.args.servers if s != "relay"]
        if not servers:
            return
        prod = config == "prod"
        redis_url = REDIS_URL if prod else ""
        tag = uuid.uuid4().hex[:8]
        prefix = f"chat-bench-{tag}"
        tprefix = f"chat-bench-tut-{tag}"
        if prod:
            self.redis_prefixes += [prefix, tprefix]
        saved = os.environ.get("DATABASE_URL")
        if prod:
            os.environ["DATABASE_URL"] = PG_URL
        else:
            os.environ.pop("DATABASE_URL", None)
        folder = tmp / config
        folder.mkdir()
        try:
            ours = [s for s in servers if s.startswith("ours")]
            with fresh_database(folder) as db_url:
                env = self.ours_env(db_url, redis_url, prefix)
                labels = {"ours-daphne": "od", "ours-uvicorn": "ou"}
                if ours:
                    spec = seed_spec(self.p, [labels[s] for s in ours])
                    subprocess.run(
                        [sys.executable, str(ROOT / "bench" / "seed.py")],
                        input=json.dumps(spec).encode(),
                        cwd=ROOT,
                        env=env,
                        check=True,
                        timeout=300,
                    )
                cookies: list[str] = []
                for kind in servers:
                    if self.over_budget():
                        self.results["skipped"].append(f"{config}/{kind}: over budget")
                        continue
                    name = f"{config}-{kind}"
                    log(f"== {name}")
                    self.wait_quiet(name)
                    if kind == "tutorial":
                        tenv = {
                            k: v
                            for k, v in os.environ.items()
                            if not k.startswith(("DJANGO_", "CHAT_", "BENCH_"))
                        }
                        tenv.update(
                            DJANGO_SETTINGS_MODULE="bench.tutorial.settings",
                            PYTHONPATH=str(ROOT),
                            PYTHONUNBUFFERED="1",
                            BENCH_REDIS_URL=redis_url,
                            BENCH_REDIS_PREFIX=tprefix,
                        )
                        srv_env = tenv
                    else:
                        srv_env = env
                    srv = self.server(kind, srv_env, name)
                    try:
                        target = Target(
                            kind,
                            config,
                            [srv],
                            label=labels.get(kind, ""),
                            db_name=db_url.rsplit("/", 1)[-1]
                            if prod and kind != "tutorial"
                            else "",
                        )
                        if kind.startswith("ours"):
                            if not cookies:
                                cookies = self.sign_in(srv)
                            target.cookies = cookies
                        make_second = None
                        if prod and kind.startswith("ours"):

                            def make_second(kind=kind, env=env, name=name):
                                return self.server(kind, env, name + "-2nd")

                        self.results["runs"].setdefault(config, {})[kind] = self.measure(
                            target, config, make_second=make_second
                        )
                    finally:
                        srv.stop()
                        self.scan_log(srv, name)
        finally:
            if saved is None:
                os.environ.pop("DATABASE_URL", None)
            else:
                os.environ["DATABASE_URL"] = saved

    def run_relay(self) -> None:
        if "relay" not in self.args.servers:
            return
        if self.over_budget():
            self.results["skipped"].append("relay: over budget")
            return
        log("== relay")
        self.wait_quiet("relay")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CHAT_"))}
        srv = self.server("relay", env, "relay")
        try:
            target = Target("relay", "none", [srv])
            self.results["runs"].setdefault("none", {})["relay"] = self.measure(target, "none")
        finally:
            srv.stop()
            self.scan_log(srv, "relay")

    def collectstatic(self, tmp: Path) -> None:
        self.static_root = str(tmp / "static")
        env = self.ours_env(f"sqlite:///{tmp / 'static.sqlite3'}", "", "chat-bench-static")
        subprocess.run(
            [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=300,
        )

    def run(self) -> dict:
        self.results["meta"] = machine_meta(self)
        with tempfile.TemporaryDirectory(prefix="chat-bench-") as tmpdir:
            tmp = Path(tmpdir)
            try:
                self.collectstatic(tmp)
                # The relay first: it has no configuration and is the cheapest.
                self.run_relay()
                for config in self.args.configs:
                    self.run_config(config, tmp)
            finally:
                self.reset_clients()
                stop_all()
                if self.redis_prefixes:
                    with contextlib.suppress(Exception):
                        n = redis_cleanup(self.redis_prefixes)
                        log(f"deleted {n} Redis keys of this run")
        self.results["meta"]["wall_s"] = time.monotonic() - self.started
        return self.results


def machine_meta(bench: Bench) -> dict:
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    packages = {}
    for name in [
        "Django",
        "channels",
        "channels-redis",
        "redis",
        "daphne",
        "Twisted",
        "autobahn",
        "uvicorn",
        "uvloop",
        "httptools",
        "websockets",
        "orjson",
        "psycopg",
        "django-allauth",
        "psutil",
        "matplotlib",
    ]:
        with contextlib.suppress(metadata.PackageNotFoundError):
            packages[name] = metadata.version(name)
    pg = redis_version = ""
    with contextlib.suppress(Exception):
        import psycopg

        with psycopg.connect(PG_URL, connect_timeout=5) as conn:
            pg = conn.execute("show server_version").fetchone()[0]
    with contextlib.suppress(Exception):
        import redis

        redis_version = redis.Redis.from_url(REDIS_URL, socket_timeout=2).info("server")[
            "redis_version"
        ]
    commit = ""
    with contextlib.suppress(Exception):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "chatrooms", "project"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
        if dirty.strip():
            commit += " (chatrooms/ or project/ with uncommitted changes)"
    return {
        "run_id": bench.run_id,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "command": "make bench"
        + (f" BENCH_ARGS='{' '.join(sys.argv[1:])}'" if sys.argv[1:] else ""),
        "quick": bench.args.quick,
        "nproc": os.cpu_count(),
        "cpu": cpu_model,
        "ram_gib": psutil.virtual_memory().total / 2**30,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": packages,
        "postgres": pg,
        "redis": redis_version,
        "commit": commit,
        "params": bench.p.__dict__,
        "servers": bench.args.servers,
        "configs": bench.args.configs,
        "workloads": sorted(bench.args.only),
    }


# --- Entry point ------------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a ~2-minute smoke run")
    parser.add_argument(
        "--only",
        default=",".join(WORKLOADS),
        help=f"workloads, comma-separated: {','.join(WORKLOADS)}",
    )
    parser.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help=f"servers, comma-separated: {','.join(SERVERS)}",
    )
    parser.add_argument(
        "--configs",
        default=",".join(CONFIGS),
        help=f"configurations, comma-separated: {','.join(CONFIGS)}",
    )
    parser.add_argument(
        "--ramp-seconds",
        type=float,
        help="length of each ramp step (default 2.5 s; use 8 or more to see a growing backlog)",
    )
    parser.add_argument(
        "--no-docs", action="store_true", help="do not write docs/performance.md and .png"
    )
    parser.add_argument(
        "--render",
        metavar="RESULTS_JSON",
        help="measure nothing: print the tables and rewrite the docs from a saved results file",
    )
    args = parser.parse_args(argv)
    for attr, allowed in [("only", WORKLOADS), ("servers", SERVERS), ("configs", CONFIGS)]:
        chosen = [x.strip() for x in getattr(args, attr).split(",") if x.strip()]
        bad = [x for x in chosen if x not in allowed]
        if bad:
            parser.error(f"--{attr}: unknown {bad}; choose from {allowed}")
        setattr(args, attr, chosen)
    args.only = set(args.only)
    args.servers = [s for s in SERVERS if s in args.servers]
    args.configs = [c for c in CONFIGS if c in args.configs]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.render:
        from bench import report

        results = json.loads(Path(args.render).read_text())
        print(report.tables(results))
        if not args.no_docs:
            report.write_docs(results, DOCS / "performance.md", DOCS / "performance.png")
            log("wrote docs/performance.md and docs/performance.png")
        return 0
    p = QUICK if args.quick else Params()
    if args.ramp_seconds:
        p = dataclasses.replace(p, ramp_s=args.ramp_seconds)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    bench = Bench(args, p)
    global QUIET_WAIT
    QUIET_WAIT = bench.wait_quiet
    RETRY_BUDGET["total_left_s"] = p.retry_budget_s
    try:
        results = bench.run()
    finally:
        stop_all()
    from bench import report

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"bench-{bench.run_id}.json"
    out.write_text(json.dumps(results, indent=1, default=str))
    text = report.tables(results)
    print()
    print(text)
    if not args.no_docs:
        report.write_docs(results, DOCS / "performance.md", DOCS / "performance.png")
        log("wrote docs/performance.md and docs/performance.png")
    log(f"raw results: {out.relative_to(ROOT)}; total {results['meta']['wall_s']:.0f} s")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
