"""bench/run.py's workloads: the sizes and rates (Params), and what each workload measures.

    idle         1,000 signed-in sockets opened at once (every user in many rooms): connects/s,
                 connect time, server memory per socket
    fanout       a few senders into one room that everyone is in: latency and CPU per delivery
    ramp         the same room at rising rates, in steps of at least 8 s, until a step breaks
                 the pass rule of bench/rule.py (or the load clients saturate)
    rooms        many small rooms at once
    two          fanout and ramp across two server processes of ours (PostgreSQL + Redis)
    nginx        the idle workload's 1,000 sockets at once through nginx
                 (deploy/nginx/chat.conf) to two server processes of ours

A Target is one server kind in one configuration; a Session, the sockets of one workload on
it (in the load-client processes of bench.harness.ClientPool) and the phases run on them.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from bench import rule
from bench.harness import (
    QUIET_PCT,
    SELF,
    ClientPool,
    Sampler,
    ServerProc,
    cpu_of,
    log,
    machine_busy_s,
    pg_backends,
    pids_cpu,
    redis_cpu_s,
    rss_of,
    settle,
)
from bench.report import fmt_ms, summary

RAMP_RATES = (20, 50, 100, 150, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 1200, 1400)
RAMP_RATES += (1600, 2000, 2500, 3000, 4000, 5000)


@dataclass
class Params:
    users: int = 100
    fan_sockets: int = 50
    fan_senders: int = 5
    fan_rate: float = 20.0  # per sender
    fan_s: float = 8.0
    ramp_rates: tuple = RAMP_RATES  # messages/s in the whole room, x fan_sockets deliveries
    ramp_senders: int = 10
    ramp_s: float = rule.MIN_STEP_S
    idle_users: int = 100
    idle_per_user: int = 10
    idle_hold_s: float = 6.0  # longer than redis-py's 5 s socket timeout
    rooms: int = 100
    room_size: int = 10
    room_rate: float = 3.0  # per room: 100 x 3 x 10 = 3,000 deliveries/s offered
    rooms_s: float = 6.0
    drain_s: float = rule.DRAIN_S
    warm_s: float = 3.0  # an unreported warm-up phase before the ramp and the fan-out
    drain_after_overload_s: float = 15  # most waited for an overloaded server to drain
    connect_parallel: int = 25  # per client process, opening the sockets of the delivery workloads
    clients: int = 2  # load-client processes
    budget_s: float = 50 * 60  # hard stop: later servers are skipped past this
    quiet_wait_s: float = 15  # most waited, per server, for other work on the machine to stop
    retry_per_server_s: float = 30  # most spent on re-measuring disturbed phases, per server
    retry_budget_s: float = 120  # and in all


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
    budget_s=8 * 60,
    quiet_wait_s=10,
    retry_per_server_s=10,
    retry_budget_s=30,
)


@dataclass
class Retries:
    """Measuring a disturbed phase again: how to wait for a quiet machine, and the time left.

    Set by bench/run.py: wait_quiet(label, limit_s) before a retry; left_s per server (reset
    for each), total_left_s in all.
    """

    wait_quiet: Callable[[str, float], None] | None = None
    left_s: float = 0.0
    total_left_s: float = 0.0


RETRIES = Retries()


# --- Targets -----------------------------------------------------------------------------------


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


def memberships(p: Params, labels: list[str]) -> list[tuple[str, int]]:
    """(room slug, user number) for every socket of every workload, in our rooms `labels`."""
    layouts = fan_layout(p) + fan_layout(p, "two") + idle_layout(p) + rooms_layout(p)
    return [(f"{label}_{base}", user) for label in labels for base, user, _ in layouts]


# --- Measuring ------------------------------------------------------------------------


def pct(values, qs):
    import numpy as np

    if len(values) == 0:
        return [None] * len(qs)
    return [float(v) for v in np.percentile(values, qs)]


def timeline(lat_us, sent_ns, start_ns: int, duration: float, offered: float, room: int) -> dict:
    """Latency second by second (by scheduled send time), its trend, the rate kept.

    bench/rule.py says what each is for. lat_us and sent_ns: numpy int64 arrays, one
    entry per delivery; offered: deliveries/s; room: deliveries per message.
    """
    import numpy as np

    at = (sent_ns - start_ns) / 1e9  # seconds into the step the message was due
    lat_ms = lat_us / 1000.0
    seconds = []
    for k in range(max(1, int(np.ceil(duration - 1e-9)))):
        sel = lat_ms[(at >= k) & (at < min(k + 1, duration))]
        p50, p99 = pct(sel, [50, 99])
        seconds.append(
            {
                "s": k,
                "n": int(sel.size),
                "p50_ms": p50,
                "p99_ms": p99,
                "max_ms": float(sel.max()) if sel.size else None,
            }
        )
    last = lat_ms[at >= duration - 1.0]
    early, late, rate_from = rule.windows(duration)

    def median(lo: float, hi: float):
        sel = lat_ms[(at >= lo) & (at < hi)]
        return pct(sel, [50])[0]

    m_early, m_late = median(*early), median(*late)
    received_at = at + lat_ms / 1000.0
    in_window = int(np.count_nonzero((received_at >= rate_from) & (received_at < duration)))
    window_s = duration - rate_from
    return {
        "per_second": seconds,
        "last_s_p99_ms": pct(last, [99])[0],
        "early_p50_ms": m_early,
        "late_p50_ms": m_late,
        "trend_ms": (m_late - m_early) if m_early is not None and m_late is not None else None,
        "kept": in_window / (offered * window_s) if offered and window_s > 0 else None,
        "kept_msgs": round(offered * window_s / room) if room else 0,
    }


class Session:
    """Sockets of one workload on one target, and the phases run on them."""

    def __init__(self, clients: ClientPool, target: Target):
        self.clients = clients
        self.target = target
        self.sid_room: dict[int, str] = {}
        self.room_sizes: Counter = Counter()
        self.next_sid = 0

    def connect(self, layout, p: Params, spread_servers: bool = False, at_once: bool = False):
        """Open the layout's sockets: p.connect_parallel at a time per client, or all at once.

        at_once: every socket of every client process starts its TCP connect at the same
        moment, the way a restart or a network cut brings every browser back together.
        """
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
        start_ns = time.monotonic_ns() + 500_000_000 if at_once else 0
        replies = self.clients.call(
            "connect",
            [
                {
                    "specs": specs,
                    "concurrency": 0 if at_once else p.connect_parallel,
                    "hello": self.target.proto == "ours",
                    "open_s": 30,
                    "start_ns": start_ns,
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
        failed = sum(r["failed"] for r in replies)
        # Over every socket, a failed one counting as never connected: the percentiles of
        # the sockets that made it alone would flatter a server that drops the rest.
        ranked = sorted(times) + [math.inf] * failed

        def rank(q: float):
            if not ranked:
                return None
            v = ranked[max(0, math.ceil(q / 100 * len(ranked)) - 1)]
            return None if math.isinf(v) else v

        p50, p99 = rank(50), rank(99)
        first = min(r["start_ns"] for r in replies)
        wall = max(r["start_ns"] + r["wall_ns"] for r in replies) - first
        wall /= 1e9
        client_cpu = [r["cpu_pct"] for r in replies if r.get("cpu_pct") is not None]
        return {
            "sockets": len(layout),
            "at_once": at_once,
            "parallel": None if at_once else p.connect_parallel * self.clients.n,
            "connected": len(times),
            "failed": failed,
            "errors": errors.most_common(5),
            "connect_p50_ms": p50,
            "connect_p99_ms": p99,
            "connect_max_ms": max(times) if times else None,
            "connect_wall_s": wall,
            "connects_per_s": len(times) / wall if wall else None,
            "client_cpu_pct": client_cpu,
            "client_bound": bool(client_cpu) and max(client_cpu) >= rule.CLIENT_CPU_PCT,
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
            or RETRIES.wait_quiet is None
            or tag.startswith("warm")
            or min(RETRIES.left_s, RETRIES.total_left_s) <= 0
        ):
            return result
        log(f"  (others used {result['others_cpu_pct']:.0f}% of a core: measuring again)")
        t0 = time.monotonic()
        RETRIES.wait_quiet(
            f"retry {self.target.config}-{self.target.name}-{tag}",
            min(10, RETRIES.left_s, RETRIES.total_left_s),
        )
        settle(self.target.servers, limit_s=10)
        again = self.measure_phase(rates, duration, p, tag + "r")
        RETRIES.left_s -= time.monotonic() - t0
        RETRIES.total_left_s -= time.monotonic() - t0
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
            self.clients.send("run", args)
            time.sleep(max(0.0, (start_ns - time.monotonic_ns()) / 1e9))
            redis0 = redis_cpu_s()
            busy0, own0, pg0 = machine_busy_s(), SELF.cpu_times(), pids_cpu(pg_pids)
            replies = self.clients.replies("run", duration + 30)
            # The whole machine's CPU while the senders sent (every core; 100 % = one core).
            send_wall = (time.monotonic_ns() - start_ns) / 1e9
            machine_pct = 100 * (machine_busy_s() - busy0) / send_wall
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
        sent_ns = np.concatenate([np.frombuffer(c["sent_ns"], dtype=np.int64) for c in collected])
        received = int(lat.size)
        span = wall if received else None
        p50, p95, p99 = pct(lat / 1000.0, [50, 95, 99])
        room = offered / sum(rates.values()) if rates else 0
        trend = timeline(lat, sent_ns, start_ns, duration, offered, round(room))
        closed = Counter()
        for c in collected:
            closed.update(c["closed"])
        monitors = [r["monitor"] for r in replies]
        client_cpu_s = sum(m["cpu_s"] for m in monitors)
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
            "unsent": max(0, planned - sent),
            "sender_behind_ms": max(r["behind_ms"] for r in replies),
            "expected": received + sum(c["lost"] for c in collected),
            "received": received,
            "achieved": received / span if span else 0.0,
            "p50_ms": p50,
            "p95_ms": p95,
            "p99_ms": p99,
            "max_ms": float(lat.max()) / 1000 if received else None,
            **trend,
            "lost": sum(c["lost"] for c in collected),
            "dup": sum(c["dup"] for c in collected),
            "stray": sum(c["stray"] for c in collected),
            "closed_sockets": dict(closed),
            "server_cpu_pct": 100 * cpu / wall,
            "server_procs": len(servers),
            "server_cpu_us_per_delivery": 1e6 * cpu / received if received else None,
            "server_cpu_ms_per_msg": 1e3 * cpu / sent if sent else None,
            "server_rss_mib": rss_of(servers) / 2**20,
            "client_cpu_pct": [m["cpu_pct"] for m in monitors],
            "client_lag_p99_ms": [m["lag_p99_ms"] for m in monitors],
            "client_lag_max_ms": [m["lag_max_ms"] for m in monitors],
            "client_cpu_us_per_delivery": (
                1e6 * client_cpu_s / (offered * duration) if offered else None
            ),
            "machine_cpu_pct": machine_pct,
            "postgres_cpu_pct": 100 * pg_s / redis_wall if self.target.db_name else None,
            "others_cpu_pct": others_pct,
            "redis_cpu_pct": (
                100 * (redis1 - redis0) / redis_wall
                if self.target.config == "prod" and redis0 is not None and redis1 is not None
                else None
            ),
        }
        result["client_bound"] = rule.client_bound(result)
        return result


# --- Workloads ------------------------------------------------------------------------


def wl_idle(
    clients: ClientPool,
    target: Target,
    p: Params,
    backends: list[ServerProc] | None = None,
    proxy: ServerProc | None = None,
) -> dict:
    """1,000 signed-in sockets opened at once; then held, and the servers' memory read.

    backends: the server processes measured (default: the target's, which the sockets
    connect to); proxy: nginx in front of them, when the target is nginx.
    """
    servers = backends or target.servers
    settle(servers)
    rss0 = rss_of(servers)
    cpu0 = cpu_of(servers)
    proxy_cpu0 = proxy.cpu_s() if proxy else 0.0
    session = Session(clients, target)
    try:
        result = session.connect(idle_layout(p), p, at_once=True)
        connected = result["connected"]
        result["processes"] = len(servers)
        result["connects_per_s_per_process"] = (
            result["connects_per_s"] / len(servers) if result["connects_per_s"] else None
        )
        result["server_cpu_ms_per_connect"] = (
            1000 * (cpu_of(servers) - cpu0) / connected if connected else None
        )
        if proxy:
            result["proxy_cpu_ms_per_connect"] = (
                1000 * (proxy.cpu_s() - proxy_cpu0) / connected if connected else None
            )
        time.sleep(p.idle_hold_s)
        settle(servers)
        rss1 = rss_of(servers)
        result.update(session.status())
        result["rss_before_mib"] = rss0 / 2**20
        result["rss_after_mib"] = rss1 / 2**20
        result["kib_per_socket"] = (rss1 - rss0) / 1024 / connected if connected else None
        if proxy:
            result["proxy_rss_mib"] = proxy.rss() / 2**20
    finally:
        session.close()
    settle(servers)
    return result


def wl_fanout_ramp(
    clients: ClientPool, target: Target, p: Params, workloads: set[str], tag: str = ""
) -> dict:
    """The ramp, then the fan-out phase, on one 50-socket room (sockets spread over servers).

    The ramp first: it starts low, on an idle server, where the fan-out's fixed rate may
    overload a baseline (the tutorial) and leave it a backlog that takes long to drain.
    """
    out: dict = {}
    session = Session(clients, target)
    spread = len(target.servers) > 1
    base = "two" if spread else "fan"
    try:
        settle(target.servers)
        out["fan_connect"] = session.connect(fan_layout(p, base), p, spread_servers=spread)
        # Warm-up (not reported): first-message imports, pools, caches.
        session.phase({sid: 5.0 for sid in range(p.fan_senders)}, p.warm_s, p, f"warm{tag}")
        settle(target.servers, limit_s=5)
        if "ramp" in workloads:
            out["ramp"] = ramp(session, target, p, f"ramp{tag}")
            # Its last step overloaded the server: it first drains its backlog.
            settle(target.servers, limit_s=p.drain_after_overload_s)
        if "fanout" in workloads:
            rates = {sid: p.fan_rate for sid in range(p.fan_senders)}
            out["fanout"] = session.phase(rates, p.fan_s, p, f"fan{tag}")
            log(f"  fanout{tag}  {summary(out['fanout'])}")
    finally:
        session.close()
    settle(target.servers)
    return out


def ramp(session: Session, target: Target, p: Params, tag: str = "ramp") -> dict:
    """Rising rates until a step breaks bench/rule.py's rule; the best passing step."""
    steps = []
    stopped = None
    for n, rate in enumerate(p.ramp_rates):
        per = rate / p.ramp_senders
        step = session.phase({sid: per for sid in range(p.ramp_senders)}, p.ramp_s, p, f"{tag}{n}")
        step["msgs_per_s"] = rate
        step["server_died"] = not all(s.alive() for s in target.servers)
        step.update(rule.judge(step))
        steps.append(step)
        log(
            f"  {tag} {rate:>5} msg/s  {summary(step)}  last-s p99 "
            f"{fmt_ms(step['last_s_p99_ms'])} trend {fmt_ms(step['trend_ms'])} ms "
            f"kept {100 * (step['kept'] or 0):.0f}%  -> {step['verdict']}"
            + (f" ({'; '.join(step['reasons'])})" if step["reasons"] else "")
        )
        if not step["passed"]:
            stopped = {
                "offered": step["offered"],
                "msgs_per_s": rate,
                "reason": "; ".join(step["reasons"]),
                "client_bound": step["client_bound"],
            }
            break
        settle(target.servers, limit_s=4)
    passed = [s for s in steps if s["passed"]]
    best = max(passed, key=lambda s: s["offered"], default=None)

    def there(key):
        return best[key] if best else None

    return {
        "steps": steps,
        "failed": stopped,
        "step_s": p.ramp_s,
        "counts": p.ramp_s >= rule.MIN_STEP_S,
        "processes": len(target.servers),
        # A passing step delivered all it was offered, in time: its offered rate is what
        # was sustained (its achieved rate is a little lower only by the last latency).
        "sustained": best["offered"] if best else 0.0,
        "sustained_msgs_per_s": there("msgs_per_s"),
        "sustained_achieved": there("achieved"),
        "sustained_p99_ms": there("p99_ms"),
        "sustained_last_s_p99_ms": there("last_s_p99_ms"),
        "sustained_cpu_ms_per_msg": there("server_cpu_ms_per_msg"),
        "sustained_cpu_us_per_delivery": there("server_cpu_us_per_delivery"),
        "sustained_server_cpu_pct": there("server_cpu_pct"),
        "sustained_client_bound": there("client_bound"),
        "top_of_ramp": stopped is None,
    }


def wl_rooms(clients: ClientPool, target: Target, p: Params) -> dict:
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


def wl_two(clients: ClientPool, target: Target, second: ServerProc, p: Params) -> dict:
    """Fan-out and ramp with the room's sockets alternating over two server processes."""
    two = dataclasses.replace(target, servers=[*target.servers, second])
    out = wl_fanout_ramp(clients, two, p, {"fanout", "ramp"}, tag="2")
    out["processes"] = 2
    return out


def wl_nginx(
    clients: ClientPool, target: Target, backends: list[ServerProc], proxy: ServerProc, p: Params
) -> dict:
    """The idle workload through nginx (deploy/nginx/chat.conf) to two server processes."""
    front = dataclasses.replace(target, servers=[proxy])
    out = wl_idle(clients, front, p, backends=backends, proxy=proxy)
    out["via"] = "nginx"
    return out
