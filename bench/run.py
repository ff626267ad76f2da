"""`make bench`: our chat server against the Channels tutorial and a bare relay.

Same machine, same run, same load clients (bench/loadclient.py, two
processes by default). Servers:

    ours-daphne   project.asgi:application under daphne
    ours-uvicorn  project.asgi:application under uvicorn (uvloop, httptools)
    tutorial      the Channels tutorial's sync consumer (bench/tutorial/) under daphne
    relay         a bare `websockets` relay with uvloop (bench/relay.py)

Configurations: `prod` (PostgreSQL + Redis: a fresh database, a unique Redis
prefix) and `embedded` (SQLite file + in-memory channel layer). The relay
has neither and runs once. Workloads: idle, fanout, ramp, rooms, two, nginx
(bench/workloads.py; docs/performance.md). A ramp step passes by the rule of
bench/rule.py, with steps of 8 s or more; shorter steps (--ramp-seconds,
--quick) are for smoke runs, and the report says their figures do not count.

    python bench/run.py                 # everything: writes docs/performance.md and .png
    python bench/run.py --only ramp --servers ours-uvicorn --configs prod   # one figure
    python bench/run.py --quick         # a smoke run (its figures do not count)
    python bench/run.py --render bench/results/bench-<time>.json [--out DIR]

Every run prints its tables and saves bench/results/bench-<time>.json. Only a
full run (every workload, server and configuration, default sizes) rewrites
docs/performance.md and docs/performance.png; --docs makes any run do it,
--no-docs stops a full run from doing it, --out DIR writes them elsewhere.
Every table of the page names the one command that measures it again.

The pieces: bench/harness.py (server processes, the machine, client processes,
nginx, what bench/soak.py shares), bench/workloads.py (sizes and rates, what
each workload measures), bench/rule.py (when a ramp step passes),
bench/loadclient.py (the load clients), bench/report.py (tables and docs).
This file: the command line and the order of the run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import secrets
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import loadclient, report, rule  # noqa: E402
from bench.harness import (  # noqa: E402
    DOCS,
    LIVE,
    PG_URL,
    QUIET_PCT,
    REDIS_URL,
    RESULTS,
    ClientPool,
    ServerProc,
    bench_env,
    busiest_others,
    collectstatic,
    database_url,
    git_state,
    interrupt_on_sigterm,
    log,
    nginx_missing,
    package_versions,
    raise_nofile,
    redis_cleanup,
    scan_log,
    seed,
    server_argv,
    sign_in,
    start_nginx,
    stop_all,
)
from bench.report import connect_summary, summary  # noqa: E402
from bench.workloads import (  # noqa: E402
    QUICK,
    RETRIES,
    Params,
    Target,
    memberships,
    wl_fanout_ramp,
    wl_idle,
    wl_nginx,
    wl_rooms,
    wl_two,
)
from tests.live import free_port, fresh_database  # noqa: E402

SERVERS = ["ours-daphne", "ours-uvicorn", "tutorial", "relay"]
CONFIGS = ["prod", "embedded"]
WORKLOADS = ["idle", "fanout", "ramp", "rooms", "two", "nginx"]
FORMAT = 2  # of the results file: 2 = ramp steps judged by bench/rule.py
# The comma-separated options: --name, what they choose, from what.
CHOICES = [
    ("only", "workloads", WORKLOADS),
    ("servers", "servers", SERVERS),
    ("configs", "configurations", CONFIGS),
]


class Bench:
    """One run: the relay, then each configuration's servers, every workload on each."""

    def __init__(self, args, p: Params):
        self.args = args
        self.p = p
        self.run_id = time.strftime("%Y%m%d-%H%M%S")
        self.logdir = RESULTS / "logs" / self.run_id
        self.secret = secrets.token_urlsafe(50)
        self.redis_prefixes: list[str] = []
        self.results: dict = {"runs": {}, "logs": {}, "errors": [], "skipped": [], "quiet": {}}
        self.started = time.monotonic()
        self.clients: ClientPool | None = None
        self.static_root = ""
        self.tmp: Path | None = None

    # servers ---------------------------------------------------------------------

    def ours_env(self, db_url: str, redis_url: str, prefix: str) -> dict:
        return bench_env(db_url, redis_url, prefix, self.secret, self.static_root)

    def server(self, kind: str, env: dict, tag: str) -> ServerProc:
        port = free_port()
        srv = ServerProc(
            kind,
            server_argv(kind, port),
            port,
            env,
            self.logdir / f"{tag}.log",
            health=kind.startswith("ours"),
        )
        return srv.start()

    def scan_log(self, srv: ServerProc, tag: str) -> None:
        """Count errors in a server's log; keep the first traceback and a summary."""
        scanned = scan_log(srv.log_path)
        if scanned is not None:
            self.results["logs"][tag] = scanned

    # runs ---------------------------------------------------------------------------

    def wait_quiet(self, label: str, limit_s: float | None = None) -> None:
        """Wait (bounded) for other work on the machine to stop; record it."""
        limit_s = self.p.quiet_wait_s if limit_s is None else limit_s
        exclude = {os.getpid(), *(pr.pid for pr in self.ensure_clients().procs)}
        for srv in LIVE:
            exclude.update(pr.pid for pr in srv.procs())
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
            RETRIES.left_s = self.p.retry_per_server_s
        self.results["quiet"][label] = {
            "others_pct": others,
            "top": top,
            "waited_s": time.monotonic() - start,
        }
        if others >= QUIET_PCT:
            log(f"  still busy ({others:.0f}% of a core; {top}); measuring anyway")

    def over_budget(self) -> bool:
        return time.monotonic() - self.started > self.p.budget_s

    def ensure_clients(self) -> ClientPool:
        if self.clients is None:
            self.clients = ClientPool(loadclient.worker_main, self.p.clients)
        return self.clients

    def reset_clients(self) -> None:
        if self.clients is not None:
            with contextlib.suppress(Exception):
                self.clients.close()
        self.clients = None

    def measure(self, target: Target, config: str, make_second=None) -> dict:
        """Every selected workload on one target; an error ends that workload only.

        make_second (ours on PostgreSQL + Redis): starts a second server process of the
        same kind, for the two-process workloads.
        """
        p, only = self.p, self.args.only
        out: dict = {}
        steps = [("idle", lambda c: wl_idle(c, target, p))]
        if only & {"fanout", "ramp"}:
            steps.append(("fanout+ramp", lambda c: wl_fanout_ramp(c, target, p, only)))
        steps.append(("rooms", lambda c: wl_rooms(c, target, p)))
        if make_second is not None:
            steps.append(("nginx", lambda c: self.nginx(c, target, make_second)))
            steps.append(("two", lambda c: self.two(c, target, make_second)))
        for name, fn in steps:
            if name in {"idle", "rooms", "two", "nginx"} and name not in only:
                continue
            if self.over_budget():
                self.results["skipped"].append(f"{config}/{target.name}/{name}: over budget")
                continue
            if name == "nginx" and nginx_missing():
                why = nginx_missing()
                out["nginx"] = {"skipped": why}
                self.results["skipped"].append(f"{config}/{target.name}/nginx: {why}")
                log(f"{config} {target.name}: nginx skipped: {why}")
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
                if name in {"idle", "nginx"}:
                    log(f"  {name}  {connect_summary(value)}")
                elif name == "rooms":
                    log(f"  {name}  {summary(value)}")
            if not all(s.alive() for s in target.servers):
                out.setdefault("errors", []).append(f"server died during {name}")
                self.results["errors"].append(f"{config}/{target.name}: server died in {name}")
                break
        return out

    def two(self, clients: ClientPool, target: Target, make_second) -> dict:
        second = make_second("2nd")
        try:
            return wl_two(clients, target, second, self.p)
        finally:
            second.stop()
            self.scan_log(second, f"{target.config}-{target.name}-2nd")

    def nginx(self, clients: ClientPool, target: Target, make_second) -> dict:
        """deploy/nginx/chat.conf in front of the target's server and a second one."""
        second = make_second("nginx-2nd")
        tag = f"{target.config}-{target.name}-nginx"
        proxy = None
        try:
            backends = [*target.servers, second]
            proxy = start_nginx(
                backends, self.static_root, self.tmp / tag, self.logdir / f"{tag}.log"
            )
            return wl_nginx(clients, target, backends, proxy, self.p)
        finally:
            if proxy is not None:
                proxy.stop()
                self.scan_log(proxy, tag)
            second.stop()
            self.scan_log(second, f"{tag}-2nd")

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
        folder = tmp / config
        folder.mkdir()
        with database_url(PG_URL if prod else None):
            ours = [s for s in servers if s.startswith("ours")]
            with fresh_database(folder) as db_url:
                env = self.ours_env(db_url, redis_url, prefix)
                labels = {"ours-daphne": "od", "ours-uvicorn": "ou"}
                if ours:
                    seed(self.p.users, memberships(self.p, [labels[s] for s in ours]), env)
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
                                cookies = sign_in(srv, self.p.users, indent="  ")
                            target.cookies = cookies
                        make_second = None
                        if prod and kind.startswith("ours"):

                            def make_second(suffix, kind=kind, env=env, name=name):
                                return self.server(kind, env, f"{name}-{suffix}")

                        self.results["runs"].setdefault(config, {})[kind] = self.measure(
                            target, config, make_second=make_second
                        )
                    finally:
                        srv.stop()
                        self.scan_log(srv, name)

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

    def run(self) -> dict:
        self.results["meta"] = machine_meta(self)
        with tempfile.TemporaryDirectory(prefix="chat-bench-") as tmpdir:
            tmp = Path(tmpdir)
            self.tmp = tmp
            try:
                self.static_root = collectstatic(tmp, self.secret)
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
    packages = package_versions(
        [
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
        ]
    )
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
    commit, dirty = git_state(["chatrooms", "project"])
    if dirty:
        commit += " (chatrooms/ or project/ with uncommitted changes)"
    return {
        "format": FORMAT,
        "run_id": bench.run_id,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "command": " ".join(["python bench/run.py", *sys.argv[1:]]).strip(),
        # What sets this run's sizes apart from the defaults: every reproducing command
        # in the report carries it.
        "options": size_options(bench.args),
        "full": bench.args.full,
        "clients": bench.p.clients,
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
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run, small and short (figures do not count)"
    )
    for attr, what, allowed in CHOICES:
        parser.add_argument(
            f"--{attr}",
            default=",".join(allowed),
            help=f"{what}, comma-separated: {','.join(allowed)}",
        )
    parser.add_argument(
        "--ramp-seconds",
        type=float,
        help=f"length of each ramp step (default {Params.ramp_s:g} s; shorter steps are for "
        f"smoke runs: their figures do not count)",
    )
    parser.add_argument(
        "--ramp-rates",
        help="the ramp's messages/s in the room, comma-separated (default "
        + ",".join(str(r) for r in Params.ramp_rates)
        + ")",
    )
    parser.add_argument(
        "--clients",
        type=int,
        help=f"load-client processes (default {Params.clients})",
    )
    parser.add_argument(
        "--docs",
        action="store_true",
        help="write docs/performance.md and .png even from a partial or smoke run",
    )
    parser.add_argument(
        "--no-docs", action="store_true", help="do not write docs/performance.md and .png"
    )
    parser.add_argument(
        "--out", metavar="DIR", help="write performance.md and performance.png to DIR"
    )
    parser.add_argument(
        "--render",
        metavar="RESULTS_JSON",
        help="measure nothing: print the tables and write the docs from a saved results file",
    )
    args = parser.parse_args(argv)
    for attr, _, allowed in CHOICES:
        chosen = [x.strip() for x in getattr(args, attr).split(",") if x.strip()]
        bad = [x for x in chosen if x not in allowed]
        if bad:
            parser.error(f"--{attr}: unknown {bad}; choose from {allowed}")
        setattr(args, attr, chosen)
    args.full = (
        not args.quick
        and args.ramp_seconds is None
        and args.ramp_rates is None
        and args.clients is None
        and all(set(getattr(args, attr)) == set(allowed) for attr, _, allowed in CHOICES)
    )
    args.only = set(args.only)
    args.servers = [s for s in SERVERS if s in args.servers]
    args.configs = [c for c in CONFIGS if c in args.configs]
    if args.ramp_rates is not None:
        try:
            rates = tuple(float(x) for x in args.ramp_rates.split(",") if x.strip())
        except ValueError:
            parser.error("--ramp-rates: numbers, comma-separated")
        if not rates or sorted(rates) != list(rates) or min(rates) <= 0:
            parser.error("--ramp-rates: rising positive numbers")
        args.ramp_rates = tuple(int(r) if r == int(r) else r for r in rates)
    if args.ramp_seconds is not None and args.ramp_seconds <= 0:
        parser.error("--ramp-seconds: a positive number")
    if args.clients is not None and not 1 <= args.clients <= 16:
        parser.error("--clients: 1 to 16")
    return args


def size_options(args) -> str:
    """The options of this run that change sizes (not what is measured), as typed."""
    out = []
    if args.quick:
        out.append("--quick")
    if args.ramp_seconds is not None:
        out.append(f"--ramp-seconds {args.ramp_seconds:g}")
    if args.ramp_rates is not None:
        out.append("--ramp-rates " + ",".join(f"{r:g}" for r in args.ramp_rates))
    if args.clients is not None:
        out.append(f"--clients {args.clients}")
    return " ".join(out)


def params(args) -> Params:
    p = QUICK if args.quick else Params()
    changes = {}
    if args.ramp_seconds is not None:
        changes["ramp_s"] = args.ramp_seconds
    if args.ramp_rates is not None:
        changes["ramp_rates"] = args.ramp_rates
    if args.clients is not None:
        changes["clients"] = args.clients
    return dataclasses.replace(p, **changes)


def write_docs(results: dict, args) -> None:
    out = Path(args.out) if args.out else DOCS
    out.mkdir(parents=True, exist_ok=True)
    report.write_docs(results, out / "performance.md", out / "performance.png")
    log(f"wrote {out / 'performance.md'} and {out / 'performance.png'}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.render:
        results = json.loads(Path(args.render).read_text())
        if results.get("meta", {}).get("format") != FORMAT:
            log(
                f"{args.render} was written by an older bench/run.py (2.5 s steps, another "
                "pass rule): measure again"
            )
            return 2
        print(report.tables(results))
        if not args.no_docs:
            write_docs(results, args)
        return 0
    p = params(args)
    if p.ramp_s < rule.MIN_STEP_S:
        log(
            f"ramp steps of {p.ramp_s:g} s, under {rule.MIN_STEP_S:g} s: a smoke run; "
            "its ramp figures do not count"
        )
    raise_nofile()
    interrupt_on_sigterm()
    bench = Bench(args, p)
    RETRIES.wait_quiet = bench.wait_quiet
    RETRIES.total_left_s = p.retry_budget_s
    try:
        results = bench.run()
    finally:
        stop_all()
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"bench-{bench.run_id}.json"
    out.write_text(json.dumps(results, indent=1, default=str))
    text = report.tables(results)
    print()
    print(text)
    if (args.full or args.docs) and not args.no_docs:
        write_docs(results, args)
    else:
        log(
            "docs/performance.md left as it is (a partial or smoke run); "
            f"python bench/run.py --render {out.relative_to(ROOT)} writes it"
        )
    log(f"raw results: {out.relative_to(ROOT)}; total {results['meta']['wall_s']:.0f} s")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
