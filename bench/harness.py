"""What bench/run.py and bench/soak.py share: servers, the machine, client processes.

- ServerProc, stop_all: a server in its own process group, its CPU and RSS;
  server_argv, bench_env: its command line and environment as the benchmarks run it;
  nginx_missing, start_nginx: deploy/nginx/chat.conf in front of two of them.
- collectstatic, seed, sign_in: static files, users and rooms, sessions, before a run.
- settle, Sampler, cpu_of, rss_of: the servers' CPU and memory.
- machine_busy_s, busiest_others, pids_cpu, pg_backends, redis_cpu_s: the machine's
  CPU, and who else uses it; redis_cleanup, database_url: a run's Redis keys, its
  DATABASE_URL.
- ClientPool: client processes (bench/loadclient.py's, bench/soak.py's) over pipes.
- raise_nofile, interrupt_on_sigterm, package_versions, git_state, log: the process's
  setup, what the results record, progress lines.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

import psutil

from deploy.servers import command
from tests.live import Browserless, free_port, server_command, server_env

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs"
PG_URL = "postgres://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"
PASSWORD = "bench-passphrase-7291"  # noqa: S105 - throwaway users in a throwaway database

QUIET_PCT = 25  # the machine is quiet when others use less of a core than this
# "ValueError: ...", "redis.exceptions.ConnectionError: ...", a warning class.
EXC_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Warning|Exit|Interrupt)\b:?")

SELF = psutil.Process()


def log(*parts) -> None:
    print(time.strftime("%H:%M:%S"), *parts, flush=True)


# --- This process ------------------------------------------------------------------------------


def raise_nofile() -> None:
    """As many open files as allowed, up to 65,536: one per socket."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def interrupt_on_sigterm() -> None:
    """SIGTERM stops the run as Ctrl-C does: the `finally` blocks clean up."""

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)


def package_versions(names: list[str]) -> dict[str, str]:
    out = {}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def git_state(paths: list[str]) -> tuple[str, str]:
    """The short commit of HEAD, and `git status --porcelain` of `paths` ("" when unknown)."""
    commit = dirty = ""
    with contextlib.suppress(Exception):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", *paths],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    return commit, dirty


# --- Server processes --------------------------------------------------------------------------

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

    def procs(self) -> list[psutil.Process]:
        """The server's process and its children (uvicorn and daphne have none)."""
        if not self.alive():
            return []
        try:
            return [self.ps, *self.ps.children(recursive=True)]
        except psutil.Error:
            return []

    def cpu_s(self) -> float:
        total = 0.0
        for proc in self.procs():
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def rss(self) -> int:
        total = 0
        for proc in self.procs():
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


def server_argv(kind: str, port: int) -> list[str]:
    """ours-daphne and ours-uvicorn as docs/deploy.md runs them; the tutorial; the relay."""
    if kind in ("ours-daphne", "ours-uvicorn"):
        return server_command(kind.removeprefix("ours-"), port)
    if kind == "tutorial":
        return command("daphne", port, app="bench.tutorial.asgi:application")
    return [sys.executable, str(ROOT / "bench" / "relay.py"), str(port)]


NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def nginx_missing() -> str:
    """Why nginx cannot be run here, or "" (tests/test_nginx.py runs it the same way)."""
    if not os.path.exists(NGINX):
        return "nginx is not installed (Debian: apt-get install nginx)"
    return ""


def start_nginx(
    backends: list[ServerProc], static_root: str, folder: Path, log_path: Path
) -> ServerProc:
    """deploy/nginx/chat.conf, its ports and paths swapped for these, in front of backends.

    As in tests/test_nginx.py: Debian's nginx, in the foreground, its files under folder;
    worker processes as Debian's own nginx.conf has them (one per core), with room for
    thousands of proxied sockets (two connections each).
    """
    if len(backends) != 2:
        raise ValueError("deploy/nginx/chat.conf names two upstream processes")
    port = free_port()
    site = (ROOT / "deploy" / "nginx" / "chat.conf").read_text()
    swaps = [
        ("listen 80;", f"listen 127.0.0.1:{port};"),
        ("127.0.0.1:8001", f"127.0.0.1:{backends[0].port}"),
        ("127.0.0.1:8002", f"127.0.0.1:{backends[1].port}"),
        ("/srv/chat/staticfiles/", f"{static_root}/"),
    ]
    for old, new in swaps:
        if old not in site:
            raise RuntimeError(f"deploy/nginx/chat.conf no longer has {old!r} to swap")
        site = site.replace(old, new)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "chat.conf").write_text(site)
    (folder / "nginx.conf").write_text(
        # Workers as root when run as root: the temporary folder is private to its owner.
        "daemon off;\nworker_processes auto;\nworker_rlimit_nofile 16384;\n"
        f"{'user root;' if os.geteuid() == 0 else ''}\n"
        f"pid {folder}/nginx.pid;\nerror_log stderr warn;\n"
        "events { worker_connections 8192; }\n"
        "http {\n  include /etc/nginx/mime.types;\n"
        f"  access_log {folder}/access.log;\n"
        f"  client_body_temp_path {folder}/body;\n  proxy_temp_path {folder}/proxy;\n"
        f"  include {folder}/chat.conf;\n}}\n"
    )
    argv = [NGINX, "-e", "stderr", "-p", str(folder), "-c", str(folder / "nginx.conf")]
    return ServerProc("nginx", argv, port, dict(os.environ), log_path, health=True).start()


def bench_env(
    db_url: str,
    redis_url: str,
    prefix: str,
    secret: str,
    static_root: str,
    log_level: str = "WARNING",
) -> dict:
    """Our server's environment: production settings, rate limits and per-user caps off."""
    return server_env(
        db_url,
        redis_url,
        prefix,
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secret,
        DJANGO_SECURE="0",
        DJANGO_BEHIND_PROXY="0",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        DJANGO_STATIC_ROOT=static_root,
        DJANGO_LOG_LEVEL=log_level,
        CHAT_RATE_LIMIT="0",
        ACCOUNT_RATE_LIMITS="0",
        # The per-user caps too: load clients are few users with many sockets and messages.
        CHAT_MAX_SOCKETS_PER_USER="0",
        CHAT_ROOM_CREATE_RATE="0",
        CHAT_INVITE_CREATE_RATE="0",
        CHAT_USER_RATE_LIMIT="0",
    )


def collectstatic(tmp: Path, secret: str) -> str:
    """Collect the static files under tmp (DEBUG is off: the servers serve them from there)."""
    static_root = str(tmp / "static")
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=ROOT,
        env=bench_env(
            f"sqlite:///{tmp / 'static.sqlite3'}", "", "chat-bench-static", secret, static_root
        ),
        check=True,
        timeout=300,
    )
    return static_root


def seed(users: int, memberships, env: dict) -> None:
    """bench/seed.py: users bench0..bench<users-1>, and the rooms of (slug, user number) pairs."""
    rooms: dict[str, set[int]] = {}
    for slug, user in memberships:
        rooms.setdefault(slug, set()).add(user)
    spec = {
        "users": users,
        "password": PASSWORD,
        "rooms": {slug: sorted(members) for slug, members in rooms.items()},
    }
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "seed.py")],
        input=json.dumps(spec).encode(),
        cwd=ROOT,
        env=env,
        check=True,
        timeout=300,
    )


def sign_in(server: ServerProc, users: int, indent: str = "") -> list[str]:
    """The session cookie of each seeded user, signed in through the login form."""

    def one(n: int) -> str:
        return Browserless(server).sign_in(f"bench{n}", PASSWORD).cookie_header

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        cookies = list(pool.map(one, range(users)))
    log(
        f"{indent}signed in {len(cookies)} users through the login form in "
        f"{time.monotonic() - t0:.1f} s"
    )
    return cookies


def scan_log(path: Path) -> dict | None:
    """Errors in a server's log: counted by line, the first traceback kept."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
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
    return {
        "path": str(path.relative_to(ROOT)),
        "lines": len(lines),
        "flagged": sum(summary.values()),
        "tracebacks": sum(ln.startswith("Traceback") for ln in lines),
        "summary": summary.most_common(12),
        "first_traceback": first_tb,
    }


# --- The servers' CPU --------------------------------------------------------------------------


def cpu_of(servers: list[ServerProc]) -> float:
    return sum(s.cpu_s() for s in servers)


def rss_of(servers: list[ServerProc]) -> int:
    return sum(s.rss() for s in servers)


def settle(servers: list[ServerProc], below: float = 5.0, limit_s: float = 15.0) -> float:
    """Wait (bounded) until the servers use under `below` % of a core; returns the wait."""
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        c0, t0 = cpu_of(servers), time.monotonic()
        time.sleep(0.3)
        if (cpu_of(servers) - c0) / (time.monotonic() - t0) * 100 < below:
            break
    return time.monotonic() - start


class Sampler:
    """Samples the servers' CPU time every 0.1 s in a thread, to read it for any window."""

    def __init__(self, servers: list[ServerProc]):
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


# --- The machine -------------------------------------------------------------------------------


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


# --- PostgreSQL and Redis ----------------------------------------------------------------------


@contextlib.contextmanager
def database_url(url: str | None):
    """DATABASE_URL set to url (unset for None) for a block: tests.live.fresh_database reads it."""
    saved = os.environ.get("DATABASE_URL")
    if url is None:
        os.environ.pop("DATABASE_URL", None)
    else:
        os.environ["DATABASE_URL"] = url
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = saved


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


# --- Client processes --------------------------------------------------------------------------


class ClientPool:
    """Client processes (spawned), driven over pipes: {"op", "args"} out, a dict back.

    `target` is the process's entry point, e.g. bench.loadclient.worker_main, which serves
    the commands (bench.loadclient.PipeWorker); `what` names a process in errors, which
    carry the process's traceback when `tracebacks` is set.
    """

    def __init__(
        self,
        target,
        n: int = 2,
        what: str = "load client",
        join_s: float = 8,
        tracebacks: bool = False,
    ):
        self.n = n
        self.what = what
        self.join_s = join_s
        self.tracebacks = tracebacks
        self.conns = []
        self.procs = []
        ctx = mp.get_context("spawn")
        for _ in range(n):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=target, args=(child,), daemon=True)
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)

    def send(self, op: str, args: list[dict] | dict | None = None) -> None:
        """The command to every process: the same args, or one dict each."""
        per = args if isinstance(args, list) else [args or {}] * self.n
        for conn, a in zip(self.conns, per, strict=True):
            conn.send({"op": op, "args": a})

    def replies(self, op: str, limit_s: float) -> list[dict]:
        """Every process's reply to `op`, within limit_s in all; an error reply raises."""
        deadline = time.monotonic() + limit_s
        replies = []
        for conn in self.conns:
            if not conn.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"a {self.what} did not answer {op!r} within {limit_s:.0f} s")
            reply = conn.recv()
            if "error" in reply:
                tb = f"\n{reply.get('tb', '')}" if self.tracebacks else ""
                raise RuntimeError(f"{self.what} {op}: {reply['error']}{tb}")
            replies.append(reply)
        return replies

    def call(self, op: str, args: list[dict] | dict | None = None, limit_s: float = 30) -> list:
        self.send(op, args)
        return self.replies(op, limit_s)

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(Exception):
                conn.send({"op": "quit"})
        for proc in self.procs:
            proc.join(self.join_s)
            if proc.is_alive():
                proc.kill()
                proc.join(3)
        for conn in self.conns:
            conn.close()
