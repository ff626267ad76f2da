"""Tables, docs/performance.md and docs/performance.png from bench/run.py's results.

Nothing here is measured or typed in by hand: every figure comes from the results file,
every rule from bench/rule.py, and every table names the one command that measures it
again (repro). Also the one-line summaries bench/run.py prints while it measures
(summary, connect_summary, fmt_ms).
"""

from __future__ import annotations

from pathlib import Path

from bench import rule

ORDER = [
    ("prod", "ours-daphne"),
    ("prod", "ours-uvicorn"),
    ("prod", "tutorial"),
    ("embedded", "ours-daphne"),
    ("embedded", "ours-uvicorn"),
    ("embedded", "tutorial"),
    ("none", "relay"),
]
CONFIG_NAMES = {
    "prod": "PostgreSQL + Redis",
    "embedded": "SQLite + in-memory",
    "none": "(no layer)",
}
SERVERS = ["ours-daphne", "ours-uvicorn", "tutorial", "relay"]
NOISY_PCT = 25

# The targets (one process, a 50-socket room, PostgreSQL + Redis, production
# configuration, steps of at least 8 s).
TARGET_UVICORN = 40_000  # deliveries/s
TARGET_DAPHNE = 15_000
TARGET_CONNECTS = 500  # connects/s per process, 1,000 sockets at once
TARGET_CONNECT_P99_MS = 1000  # two processes behind nginx
TARGET_KIB = 30  # idle KiB/socket under the production server (uvicorn)
TARGET_TWO = 0.85  # two processes: per-process throughput / one process's


# --- Formatting ------------------------------------------------------------------------------


def fmt_ms(v) -> str:
    return rule.fmt(v)


def ms(v) -> str:
    if v is None:
        return "-"
    if v < 10:
        return f"{v:.2f}"
    return f"{v:.1f}" if v < 100 else f"{v:,.0f}"


def num(v) -> str:
    return "-" if v is None else f"{v:,.0f}"


def pct(v) -> str:
    return "-" if v is None else f"{v:.0f}"


def kib(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def cpu_ms(v) -> str:
    return "-" if v is None else f"{v:.2f}" if v < 10 else f"{v:.1f}"


def ratio(a, b) -> str:
    if not a or not b:
        return "-"
    r = a / b
    if r >= 10:
        return f"{r:.0f}x"
    if r >= 1:
        return f"{r:.1f}x"
    return f"{r:.2g}x"


def per_client(values) -> str:
    values = [v for v in values or [] if v is not None]
    return "/".join(f"{v:.0f}" for v in values) if values else "-"


def summary(r: dict) -> str:
    """One measured phase on one line, as printed while measuring."""
    return (
        f"offered {num(r['offered'])}/s achieved {num(r['achieved'])}/s "
        f"p50 {fmt_ms(r['p50_ms'])} p99 {fmt_ms(r['p99_ms'])} max {fmt_ms(r['max_ms'])} ms "
        f"lost {r['lost']} dup {r['dup']} srv {r['server_cpu_pct']:.0f}% "
        f"{cpu_ms(r.get('server_cpu_ms_per_msg'))} ms/msg "
        f"cli {per_client(r.get('client_cpu_pct'))}% machine {pct(r.get('machine_cpu_pct'))}% "
        f"others {r['others_cpu_pct']:.0f}%"
    )


def connect_summary(r: dict) -> str:
    """The connect storm on one line."""
    return (
        f"{r['connected']}/{r['sockets']} sockets at once: {num(r['connects_per_s'])} connects/s "
        f"({num(r.get('connects_per_s_per_process'))} per process), p50 "
        f"{connect_ms(r, 'connect_p50_ms')} p99 {connect_ms(r, 'connect_p99_ms')} ms, client CPU "
        f"{per_client(r.get('client_cpu_pct'))}%, {kib(r.get('kib_per_socket'))} KiB/socket, "
        f"open after hold {r.get('open')}"
    )


def table(head: list[str], body: list[list[str]]) -> str:
    if not body:
        return "_not run_\n"
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines) + "\n"


# --- Reading the results ----------------------------------------------------------------------


def rows(results: dict, workload: str):
    runs = results.get("runs", {})
    for config, server in ORDER:
        run = runs.get(config, {}).get(server)
        if run is None:
            continue
        value = run.get(workload)
        if value is not None and not value.get("skipped"):
            yield config, server, value


def get(results, config, server, workload):
    return results.get("runs", {}).get(config, {}).get(server, {}).get(workload)


def ramps(results: dict):
    """(config, server, processes, ramp) for every ramp of the run, two-process ones too."""
    for config, server, r in rows(results, "ramp"):
        yield config, server, 1, r
    for config, server, r in rows(results, "two"):
        if r.get("ramp"):
            yield config, server, 2, r["ramp"]


def step_s(results: dict) -> float:
    return float(results["meta"]["params"]["ramp_s"])


def counts(results: dict) -> bool:
    return step_s(results) >= rule.MIN_STEP_S


def repro(results: dict, workloads, servers=None, configs=None) -> str:
    """The one command that measures a figure again, with this run's sizes."""
    meta = results.get("meta", {})
    servers = [s for s in (servers or meta.get("servers", [])) if s]
    configs = configs or meta.get("configs", [])
    parts = ["python bench/run.py", "--only " + ",".join(workloads)]
    if servers:
        parts.append("--servers " + ",".join(servers))
    if configs and set(servers) != {"relay"}:
        parts.append("--configs " + ",".join(configs))
    if meta.get("options"):
        parts.append(meta["options"])
    return " ".join(parts)


def reproduce_line(results: dict, workloads, pairs, what: str = "Measure again") -> str:
    """The line "Measure again: `...`" for a table whose rows are (config, server) pairs."""
    pairs = list(pairs)
    servers = [s for s in SERVERS if any(sv == s for _, sv in pairs)]
    configs = [c for c in ("prod", "embedded") if any(cf == c for cf, _ in pairs)]
    if not pairs:
        return ""
    return f"{what}: `{repro(results, workloads, servers, configs)}`\n"


# --- Verdicts ---------------------------------------------------------------------------------


def verdict_text(step: dict) -> str:
    v = step.get("verdict", "")
    if v == "fail":
        return "**fail**: " + "; ".join(step.get("reasons", []))
    if v == "client-bound":
        return (
            "**client-bound** ("
            + step.get("client_bound", "")
            + "): not counted; it broke "
            + "; ".join(step.get("reasons", []))
        )
    if v == "pass, client-bound":
        return "pass, client-bound (" + step.get("client_bound", "") + ")"
    return v or "-"


def sustained_text(results: dict, r: dict) -> str:
    text = num(r["sustained"])
    if r.get("sustained_msgs_per_s"):
        text += f" ({r['sustained_msgs_per_s']:g} msg/s)"
    if r.get("failed") and r["failed"].get("client_bound"):
        text = ">= " + text
    if not r.get("counts", counts(results)):
        text += f" (does not count: {r.get('step_s', step_s(results)):g} s steps)"
    return text


def stop_text(r: dict) -> str:
    failed = r.get("failed")
    if not failed:
        return "top of the ramp reached"
    if failed.get("client_bound"):
        return (
            f"the load clients saturated ({failed['client_bound']}): the server's limit is not "
            f"measured here; the step broke {failed['reason']}"
        )
    return failed["reason"]


def smoke(results: dict, ramp: bool) -> str:
    """Why this run's figures do not count against a target, or ""."""
    if results["meta"].get("quick"):
        return "does not count (smoke run: --quick)"
    if ramp and not counts(results):
        return f"does not count ({step_s(results):g} s steps)"
    return ""


def ramp_verdict(results: dict, r: dict, reached: bool, goal: str) -> str:
    """The verdict on a ramp whose sustained rate reached the goal or not."""
    if smoke(results, True):
        return smoke(results, True)
    if reached:
        return "met" + (", client-bound" if r.get("sustained_client_bound") else "")
    if r.get("failed") and r["failed"].get("client_bound"):
        return "not decided: the load clients saturated first"
    if not r.get("failed"):
        return f"not decided: the ramp's grid ended below {goal}"
    return "**not met**"


def ramp_target(results: dict, server: str, goal: float) -> tuple[str, str]:
    """(measured, verdict) of a one-process ramp target on PostgreSQL + Redis."""
    r = get(results, "prod", server, "ramp")
    if not r:
        return "not measured", "not measured"
    measured = (
        f"{sustained_text(results, r)}, p99 {ms(r['sustained_p99_ms'])} ms, last second "
        f"{ms(r['sustained_last_s_p99_ms'])} ms; stopped: {stop_text(r)}"
    )
    return measured, ramp_verdict(results, r, r["sustained"] >= goal, f"{goal:,.0f}/s")


def connect_target(results: dict, r: dict | None, p99_goal: float | None) -> tuple[str, str]:
    if not r:
        return "not measured", "not measured"
    if r.get("skipped"):
        return "skipped: " + r["skipped"], "not measured"
    per = r.get("connects_per_s_per_process")
    measured = (
        f"{num(per)} connects/s per process ({num(r['connects_per_s'])} in all, "
        f"{r['processes']} process{'es' if r['processes'] > 1 else ''}), "
        f"{r['connected']}/{r['sockets']} connected, p50 {connect_ms(r, 'connect_p50_ms')} ms, "
        f"p99 {connect_ms(r, 'connect_p99_ms')} ms; client CPU "
        f"{per_client(r.get('client_cpu_pct'))} %"
    )
    if smoke(results, False) or r["sockets"] != 1000:
        return measured, smoke(results, False) or f"does not count ({r['sockets']} sockets)"
    ok = (
        r["connected"] == r["sockets"]
        and per is not None
        and per >= TARGET_CONNECTS
        and (p99_goal is None or (r["connect_p99_ms"] or 1e9) <= p99_goal)
    )
    if ok:
        return measured, "met" + (", client-bound" if r.get("client_bound") else "")
    if r.get("client_bound"):
        return measured, "not decided: the load clients saturated"
    return measured, "**not met**"


def two_ratio(results: dict, config: str, server: str):
    one = get(results, config, server, "ramp")
    two = (get(results, config, server, "two") or {}).get("ramp")
    if not one or not two or not one["sustained"]:
        return None
    return (two["sustained"] / 2) / one["sustained"]


def two_verdict(results: dict, one: dict, two: dict, q: float) -> str:
    """Per-process throughput of two processes against one, where the ramps decide it.

    A ramp that ran off the top of its grid, or stopped on saturated load clients, only
    bounds its figure from below: the ratio is then decided one way only (met needs the
    one-process ramp at its real limit; not met, the two-process one).
    """
    if smoke(results, True):
        return smoke(results, True)

    def why_not(name: str, r: dict) -> str:
        failed = r.get("failed")
        if not failed:
            return f"not decided: the {name} ramp's grid ended before its limit"
        if failed.get("client_bound"):
            return f"not decided: the load clients saturated in the {name} ramp"
        return ""

    if q >= TARGET_TWO:
        return why_not("one-process", one) or "met"
    return why_not("two-process", two) or "**not met**"


def targets_table(results: dict) -> str:
    """The issue's targets, what this run measured, and the command for each."""
    head = ["target", "measured", "verdict", "measure again"]
    body = []

    def add(title, measured, verdict, workloads, servers):
        cmd = repro(results, workloads, servers, ["prod"])
        body.append([title, measured, verdict, f"`{cmd}`"])

    m, v = ramp_target(results, "ours-uvicorn", TARGET_UVICORN)
    add(
        f"uvicorn, one process: >= {TARGET_UVICORN:,} deliveries/s "
        f"({TARGET_UVICORN // 50} msg/s) at p99 <= {rule.P99_MS:.0f} ms, nothing lost",
        m,
        v,
        ["ramp"],
        ["ours-uvicorn"],
    )
    m, v = ramp_target(results, "ours-daphne", TARGET_DAPHNE)
    add(f"daphne, one process: >= {TARGET_DAPHNE:,} deliveries/s", m, v, ["ramp"], ["ours-daphne"])
    cpu = []
    for server in ("ours-uvicorn", "ours-daphne"):
        r = get(results, "prod", server, "ramp")
        if r and r.get("sustained_cpu_ms_per_msg") is not None:
            cpu.append(
                f"{server}: {cpu_ms(r['sustained_cpu_ms_per_msg'])} ms/message "
                f"({num(r['sustained_cpu_us_per_delivery'])} µs/delivery) at "
                f"{r['sustained_msgs_per_s']:g} msg/s"
            )
    add(
        "server CPU per message reported",
        "; ".join(cpu) or "not measured",
        "reported" if cpu else "not measured",
        ["ramp"],
        ["ours-uvicorn", "ours-daphne"],
    )
    m, v = connect_target(results, get(results, "prod", "ours-uvicorn", "idle"), None)
    add(
        f"1,000 signed-in sockets at once, uvicorn, one process: >= {TARGET_CONNECTS} "
        "connects/s per process",
        m,
        v,
        ["idle"],
        ["ours-uvicorn"],
    )
    m, v = connect_target(
        results, get(results, "prod", "ours-uvicorn", "nginx"), TARGET_CONNECT_P99_MS
    )
    add(
        f"the same through nginx to two uvicorn processes: >= {TARGET_CONNECTS} connects/s "
        f"per process, p99 <= {TARGET_CONNECT_P99_MS / 1000:g} s",
        m,
        v,
        ["nginx"],
        ["ours-uvicorn"],
    )
    idle = get(results, "prod", "ours-uvicorn", "idle")
    if idle and idle.get("kib_per_socket") is not None:
        m = f"{kib(idle['kib_per_socket'])} KiB/socket ({idle['connected']} sockets)"
        v = "met" if idle["kib_per_socket"] <= TARGET_KIB else "**not met**"
        if smoke(results, False) or idle["connected"] < 1000:
            v = smoke(results, False) or f"does not count ({idle['connected']} sockets)"
    else:
        m = v = "not measured"
    add(f"idle memory under uvicorn: <= {TARGET_KIB} KiB/socket", m, v, ["idle"], ["ours-uvicorn"])
    q = two_ratio(results, "prod", "ours-uvicorn")
    two = (get(results, "prod", "ours-uvicorn", "two") or {}).get("ramp")
    one = get(results, "prod", "ours-uvicorn", "ramp")
    if q is None:
        m = v = "not measured"
    else:
        m = (
            f"two processes {sustained_text(results, two)} in all = {num(two['sustained'] / 2)} "
            f"per process; one process {sustained_text(results, one)}: {q:.2f}x"
        )
        v = two_verdict(results, one, two, q)
    add(
        f"two uvicorn processes: per-process throughput within {100 - TARGET_TWO * 100:.0f} % "
        "of one process",
        m,
        v,
        ["ramp", "two"],
        ["ours-uvicorn"],
    )
    return table(head, body)


# --- Tables -----------------------------------------------------------------------------------


def client_cpu(r: dict) -> str:
    text = per_client(r.get("client_cpu_pct"))
    return text + (" **client-bound**" if r.get("client_bound") else "")


def others(r: dict) -> str:
    v = r.get("others_cpu_pct")
    if v is None:
        return "-"
    return f"{v:.0f}" + (" (noisy)" if v >= NOISY_PCT else "")


def lost(r: dict) -> str:
    """Lost (and never sent), and the sockets the server closed during the phase."""
    text = str(r["lost"])
    if r.get("unsent"):
        text += f" (+{r['unsent']} never sent)"
    closed = r.get("closed_sockets") or {}
    if closed:
        codes = ", ".join(f"{n} x {code}" for code, n in closed.items())
        text += f" (sockets closed: {codes})"
    return text


def kept(r: dict) -> str:
    return "-" if r.get("kept") is None else f"{100 * r['kept']:.0f}"


def delivery_table(results: dict, workload: str) -> str:
    head = [
        "config",
        "server",
        "offered/s",
        "achieved/s",
        "p50 ms",
        "p99 ms",
        "last-second p99 ms",
        "max ms",
        "lost",
        "dup",
        "server CPU %",
        "server CPU ms/message",
        "server CPU µs/delivery",
        "server RSS MiB",
        "client CPU % (per process)",
        "machine CPU % (all cores)",
        "Redis CPU %",
        "PostgreSQL CPU %",
        "others CPU %",
    ]
    body = []
    for config, server, r in rows(results, workload):
        body.append(
            [
                CONFIG_NAMES[config],
                server,
                num(r["offered"]),
                num(r["achieved"]),
                ms(r["p50_ms"]),
                ms(r["p99_ms"]),
                ms(r.get("last_s_p99_ms")),
                ms(r["max_ms"]),
                lost(r),
                str(r["dup"]),
                pct(r["server_cpu_pct"]),
                cpu_ms(r.get("server_cpu_ms_per_msg")),
                num(r["server_cpu_us_per_delivery"]),
                num(r["server_rss_mib"]),
                client_cpu(r),
                pct(r.get("machine_cpu_pct")),
                pct(r.get("redis_cpu_pct")),
                pct(r.get("postgres_cpu_pct")),
                others(r),
            ]
        )
    return table(head, body)


def server_label(server: str, procs: int) -> str:
    return server if procs == 1 else f"{server} x{procs}"


def ramp_summary(results: dict, processes: int | None = None) -> str:
    head = [
        "config",
        "server",
        "sustained deliveries/s",
        "p99 there ms",
        "last-second p99 there ms",
        "server CPU % there",
        "server CPU ms/message there",
        "server CPU µs/delivery there",
        "stopped at offered/s",
        "why",
    ]
    body = []
    for config, server, procs, r in ramps(results):
        if processes is not None and procs != processes:
            continue
        failed = r.get("failed")
        body.append(
            [
                CONFIG_NAMES[config],
                server_label(server, procs),
                sustained_text(results, r),
                ms(r["sustained_p99_ms"]),
                ms(r.get("sustained_last_s_p99_ms")),
                pct(r.get("sustained_server_cpu_pct")),
                cpu_ms(r.get("sustained_cpu_ms_per_msg")),
                num(r.get("sustained_cpu_us_per_delivery")),
                num(failed["offered"]) if failed else "-",
                stop_text(r),
            ]
        )
    return table(head, body)


def ramp_steps(results: dict) -> str:
    head = [
        "config",
        "server",
        "msg/s",
        "offered/s",
        "achieved/s",
        "p50 ms",
        "p99 ms",
        "last-second p99 ms",
        "median trend ms",
        "received while sending %",
        "max ms",
        "lost",
        "dup",
        "server CPU %",
        "server CPU ms/message",
        "server CPU µs/delivery",
        "client CPU % (per process)",
        "client loop lag p99 ms",
        "machine CPU % (all cores)",
        "others CPU %",
        "verdict",
    ]
    body = []
    for config, server, procs, r in ramps(results):
        for s in r["steps"]:
            body.append(
                [
                    CONFIG_NAMES[config],
                    server_label(server, procs),
                    f"{s['msgs_per_s']:g}",
                    num(s["offered"]),
                    num(s["achieved"]),
                    ms(s["p50_ms"]),
                    ms(s["p99_ms"]),
                    ms(s.get("last_s_p99_ms")),
                    "-" if s.get("trend_ms") is None else f"{s['trend_ms']:+.1f}",
                    kept(s),
                    ms(s["max_ms"]),
                    lost(s),
                    str(s["dup"]),
                    pct(s["server_cpu_pct"]),
                    cpu_ms(s.get("server_cpu_ms_per_msg")),
                    num(s["server_cpu_us_per_delivery"]),
                    per_client(s.get("client_cpu_pct")),
                    per_client(s.get("client_lag_p99_ms")),
                    pct(s.get("machine_cpu_pct")),
                    others(s),
                    verdict_text(s),
                ]
            )
    return table(head, body)


def connect_ms(r: dict, key: str) -> str:
    """A connect percentile; over every socket, so failures can make it "never"."""
    v = r.get(key)
    if v is None and r.get("failed"):
        return f"never ({r['failed']} failed)"
    return ms(v)


def connect_errors(results: dict) -> str:
    lines = []
    for workload in ("idle", "nginx", "rooms"):
        for config, server, r in rows(results, workload):
            info = r if workload in ("idle", "nginx") else r.get("connect", {})
            for text, n in info.get("errors", []):
                lines.append(f"- {CONFIG_NAMES[config]} {server} {workload}: {n} x `{text}`")
    for config, server, r in rows(results, "fan_connect"):
        for text, n in r.get("errors", []):
            lines.append(f"- {CONFIG_NAMES[config]} {server} fan-out: {n} x `{text}`")
    for config, server, r in rows(results, "two"):
        for text, n in (r.get("fan_connect") or {}).get("errors", []):
            lines.append(f"- {CONFIG_NAMES[config]} {server} two processes: {n} x `{text}`")
    if not lines:
        return "Every socket of every workload connected.\n"
    return "Sockets that failed to connect:\n\n" + "\n".join(lines) + "\n"


def connect_table(results: dict) -> str:
    head = [
        "config",
        "server",
        "processes",
        "sockets",
        "connected",
        "connect p50 ms",
        "connect p99 ms",
        "connect max ms",
        "connects/s",
        "connects/s per process",
        "server CPU ms/connect",
        "nginx CPU ms/connect",
        "client CPU % (per process)",
        "RSS before MiB",
        "RSS after MiB",
        "KiB/socket",
        "open after hold",
    ]
    body = []
    for workload in ("idle", "nginx"):
        for config, server, r in rows(results, workload):
            body.append(
                [
                    CONFIG_NAMES[config],
                    server + (" behind nginx" if workload == "nginx" else ""),
                    str(r.get("processes", 1)),
                    str(r["sockets"]),
                    str(r["connected"]),
                    connect_ms(r, "connect_p50_ms"),
                    connect_ms(r, "connect_p99_ms"),
                    ms(r.get("connect_max_ms")),
                    num(r["connects_per_s"]),
                    num(r.get("connects_per_s_per_process")),
                    cpu_ms(r["server_cpu_ms_per_connect"]),
                    cpu_ms(r.get("proxy_cpu_ms_per_connect")),
                    client_cpu(r),
                    num(r["rss_before_mib"]),
                    num(r["rss_after_mib"]),
                    kib(r["kib_per_socket"]),
                    f"{r['open']}" + (f" (closed: {r['closed']})" if r.get("closed") else ""),
                ]
            )
    return table(head, body)


def nginx_skipped(results: dict) -> str:
    lines = []
    for config, server in ORDER:
        r = get(results, config, server, "nginx")
        if r and r.get("skipped"):
            lines.append(f"- {CONFIG_NAMES[config]} {server} behind nginx: not run: {r['skipped']}")
    return "\n".join(lines) + ("\n" if lines else "")


def two_fanout_table(results: dict) -> str:
    head = [
        "server",
        "processes",
        "offered/s",
        "achieved/s",
        "p50 ms",
        "p99 ms",
        "last-second p99 ms",
        "max ms",
        "lost",
        "dup",
        "server CPU % (sum)",
        "server CPU ms/message",
        "server CPU µs/delivery",
        "server RSS MiB (sum)",
        "client CPU % (per process)",
    ]
    body = []
    for config, server, r in rows(results, "two"):
        one = results["runs"][config][server].get("fanout")
        two = r.get("fanout")
        for n, x in [(1, one), (2, two)]:
            if not x:
                continue
            body.append(
                [
                    server,
                    str(n),
                    num(x["offered"]),
                    num(x["achieved"]),
                    ms(x["p50_ms"]),
                    ms(x["p99_ms"]),
                    ms(x.get("last_s_p99_ms")),
                    ms(x["max_ms"]),
                    lost(x),
                    str(x["dup"]),
                    pct(x["server_cpu_pct"]),
                    cpu_ms(x.get("server_cpu_ms_per_msg")),
                    num(x["server_cpu_us_per_delivery"]),
                    num(x["server_rss_mib"]),
                    client_cpu(x),
                ]
            )
    return table(head, body)


def two_ramp_table(results: dict) -> str:
    head = [
        "server",
        "one process: sustained deliveries/s",
        "two processes: sustained deliveries/s",
        "two processes: per process",
        "per process / one process",
        f"within {100 - TARGET_TWO * 100:.0f} %?",
    ]
    body = []
    for config, server, r in rows(results, "two"):
        two = r.get("ramp")
        one = get(results, config, server, "ramp")
        if not two:
            continue
        q = two_ratio(results, config, server)
        body.append(
            [
                server,
                sustained_text(results, one) if one else "not run (add `ramp` to --only)",
                sustained_text(results, two),
                num(two["sustained"] / 2),
                "-" if q is None else f"{q:.2f}",
                "-" if q is None else two_verdict(results, one, two, q),
            ]
        )
    return table(head, body)


def ratio_table(results: dict) -> str:
    """Ours per configuration, each headline number with its ratios to both baselines."""
    runs = results.get("runs", {})
    relay = runs.get("none", {}).get("relay", {})
    metrics = [
        ("ramp sustained deliveries/s", "ramp", "sustained", num),
        ("ramp: server CPU ms/message there", "ramp", "sustained_cpu_ms_per_msg", cpu_ms),
        ("fan-out p99 ms", "fanout", "p99_ms", ms),
        ("fan-out server CPU ms/message", "fanout", "server_cpu_ms_per_msg", cpu_ms),
        ("fan-out server CPU µs/delivery", "fanout", "server_cpu_us_per_delivery", num),
        ("many rooms server CPU µs/delivery", "rooms", "server_cpu_us_per_delivery", num),
        ("1,000 at once: connects/s", "idle", "connects_per_s", num),
        ("1,000 at once: connect p99 ms", "idle", "connect_p99_ms", ms),
        ("idle KiB/socket", "idle", "kib_per_socket", kib),
    ]
    head = ["metric"]
    cols = []
    for config in ("prod", "embedded"):
        for server in ("ours-daphne", "ours-uvicorn"):
            if runs.get(config, {}).get(server):
                head.append(f"{server}, {CONFIG_NAMES[config]}")
                cols.append((config, server))
    if not cols:
        return "_ours was not run_\n"
    body = []
    for title, workload, key, fmt in metrics:
        row = [title]
        for config, server in cols:
            ours = (runs[config][server].get(workload) or {}).get(key)
            tut = (runs.get(config, {}).get("tutorial", {}).get(workload) or {}).get(key)
            rel = (relay.get(workload) or {}).get(key)
            row.append(f"{fmt(ours)} ({ratio(ours, tut)} tutorial, {ratio(ours, rel)} relay)")
        body.append(row)
    return table(head, body)


# --- The machine, the clients, noise ----------------------------------------------------------


def client_capacity(results: dict) -> dict | None:
    """What the load clients spent per delivery at the highest passing, unsaturated step."""
    best = None
    for _, _, _, r in ramps(results):
        for s in r["steps"]:
            if s.get("client_cpu_us_per_delivery") and s.get("verdict") == "pass":
                if best is None or s["offered"] > best["offered"]:
                    best = s
    if best is None:
        return None
    us = best["client_cpu_us_per_delivery"]
    bound = [
        (server_label(server, procs), s["offered"])
        for config, server, procs, r in ramps(results)
        for s in r["steps"]
        if s.get("client_bound")
    ]
    return {"us": us, "at": best["offered"], "per_core": 1e6 / us, "bound": bound}


def client_section(results: dict) -> str:
    meta = results["meta"]
    n = meta.get("clients") or meta["params"].get("clients", 2)
    cap = client_capacity(results)
    out = [
        f"The load clients are {n} Python processes (`bench/loadclient.py`, websockets on "
        f"uvloop) on the same {meta['nproc']} cores as the server, Redis and PostgreSQL. "
        "Every step reports each client process's CPU over the sending window and how late "
        "its event loop ran; a step where one used "
        f"{rule.CLIENT_CPU_PCT:.0f} % of a core or more, or ran {rule.CLIENT_LAG_MS:.0f} ms or "
        "more late at p99, is marked client-bound (see the rule above)."
    ]
    if cap:
        need = 100 * TARGET_UVICORN * cap["us"] / 1e6
        out.append(
            f" In this run, at {num(cap['at'])} deliveries/s (the highest step that passed "
            f"with clients unsaturated), they spent about {cap['us']:.0f} µs of CPU per delivery "
            "(sending included; it falls somewhat as the rate rises and frames arrive in "
            f"batches), so one core of clients takes about {num(cap['per_core'])} deliveries/s, "
            "and "
            f"{TARGET_UVICORN:,} deliveries/s needs about {need:.0f} % of a core of clients in "
            f"all, beside the server's own core. On {meta['nproc']} cores, more client "
            "processes add no CPU: what this machine can measure of one server process is "
            "bounded by what the cores left over can receive."
        )
        if need + 100 > 0.9 * 100 * meta["nproc"]:
            out.append(
                f" One server core and {need:.0f} % of clients, with Redis and PostgreSQL "
                f"beside them, is about all of this machine's {meta['nproc']} cores: here "
                f"the {TARGET_UVICORN:,} deliveries/s target is at the edge of what can be "
                "measured, and a step there that comes out client-bound leaves it undecided "
                "(not failed)."
            )
        if cap["bound"]:
            out.append(
                " Steps marked client-bound in this run: "
                + "; ".join(f"{label} at {num(off)}/s" for label, off in cap["bound"])
                + "."
            )
    return "".join(out) + "\n"


def noisy_phases(results: dict) -> list[str]:
    """Phases during which the machine did other work (other people's tests...)."""
    out = []
    for workload in ("fanout", "rooms"):
        for config, server, r in rows(results, workload):
            if (r.get("others_cpu_pct") or 0) >= NOISY_PCT:
                out.append(
                    f"{CONFIG_NAMES[config]} {server} {workload}: {r['others_cpu_pct']:.0f}%"
                )
    for config, server, procs, r in ramps(results):
        for st in r["steps"]:
            if (st.get("others_cpu_pct") or 0) >= NOISY_PCT:
                out.append(
                    f"{CONFIG_NAMES[config]} {server_label(server, procs)} ramp "
                    f"{st['msgs_per_s']:g} msg/s: {st['others_cpu_pct']:.0f}%"
                )
    return out


def noise_section(results: dict) -> str:
    lines = []
    for label, q in results.get("quiet", {}).items():
        if q["others_pct"] >= NOISY_PCT or q["waited_s"] > 2:
            lines.append(
                f"- before {label}: waited {q['waited_s']:.0f} s; other processes then used "
                f"{q['others_pct']:.0f}% of a core (top: "
                + ", ".join(f"{n} {c}%" for n, c in q["top"])
                + ")"
            )
    noisy = noisy_phases(results)
    if noisy:
        lines.append(
            f"- phases measured while other processes used >= {NOISY_PCT}% of a core "
            "(their numbers understate the server): " + "; ".join(noisy)
        )
    if not lines:
        return (
            "The machine was quiet: no phase saw other processes use "
            f"{NOISY_PCT}% of a core or more.\n"
        )
    return "\n".join(lines) + "\n"


# --- Terminal ---------------------------------------------------------------------------------


def tables(results: dict) -> str:
    out = []
    if not counts(results):
        out.append(smoke_banner(results))
    out.append("### Targets\n")
    out.append(targets_table(results))
    out.append("\n### Ramp (1 room, 50 sockets, rising rate)\n")
    out.append(ramp_summary(results))
    out.append("\n### Ramp, every step\n")
    out.append(ramp_steps(results))
    out.append("\n### Fan-out (1 room, 50 sockets, 5 senders x 20 msg/s)\n")
    out.append(delivery_table(results, "fanout"))
    out.append("\n### 1,000 signed-in sockets at once, then idle\n")
    out.append(connect_table(results))
    out.append(nginx_skipped(results))
    out.append(connect_errors(results))
    out.append("\n### Many rooms (10 sockets each, 1 sender per room)\n")
    out.append(delivery_table(results, "rooms"))
    out.append("\n### Two processes of ours (PostgreSQL + Redis)\n")
    out.append(two_ramp_table(results))
    out.append("")
    out.append(two_fanout_table(results))
    out.append("\n### Ours as ratios (ours / baseline)\n")
    out.append(ratio_table(results))
    out.append("\n### Load clients\n")
    out.append(client_section(results))
    out.append("\n### Machine noise\n")
    out.append(noise_section(results))
    flagged = {t: i for t, i in results.get("logs", {}).items() if i["flagged"] or i["tracebacks"]}
    out.append("\n### Server logs\n")
    if not flagged:
        out.append("No errors, warnings or tracebacks in any server log.")
    for tag, info in sorted(flagged.items()):
        out.append(f"- {tag}: {info['tracebacks']} tracebacks ({info['path']})")
        out += [f"    {n} x {line}" for line, n in info["summary"][:6]]
    if results.get("errors"):
        out.append("\n### Errors\n")
        out += [f"- {e}" for e in results["errors"]]
    if results.get("skipped"):
        out.append("\n### Skipped\n")
        out += [f"- {e}" for e in results["skipped"]]
    return "\n".join(out) + "\n"


# --- The chart --------------------------------------------------------------------------------


def chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    configs = [c for c in ("prod", "embedded") if results.get("runs", {}).get(c)]
    if not configs and not results.get("runs", {}).get("none"):
        return
    configs = configs or ["prod"]
    fig, axes = plt.subplots(1, len(configs), figsize=(6.8 * len(configs), 5.0), squeeze=False)
    styles = {
        "ours-daphne": ("tab:blue", "o"),
        "ours-uvicorn": ("tab:green", "s"),
        "tutorial": ("tab:red", "^"),
        "relay": ("tab:gray", "D"),
    }
    for ax, config in zip(axes[0], configs, strict=True):
        for cf, server, procs, r in ramps(results):
            if server not in styles or cf not in (config, "none") or not r["steps"]:
                continue
            colour, marker = styles[server]
            xs = [s["offered"] for s in r["steps"]]
            ys = [max(s["p99_ms"] or 0.01, 0.01) for s in r["steps"]]
            last = [max(s.get("last_s_p99_ms") or 0.01, 0.01) for s in r["steps"]]
            dash = "-" if procs == 1 else "--"
            label = server_label(server, procs)
            ax.plot(xs, ys, color=colour, marker=marker, linestyle=dash, label=f"{label} p99")
            ax.plot(
                xs,
                last,
                color=colour,
                marker=marker,
                mfc="none",
                markersize=4,
                linestyle=":",
                linewidth=1,
                label=f"{label} last-second p99",
            )
            for x, y, s in zip(xs, ys, r["steps"], strict=True):
                if s.get("client_bound"):
                    ax.plot(x, y, marker="o", markersize=13, mfc="none", mec=colour, mew=1.5)
                if not s.get("passed", True):
                    ax.plot(x, y, color=colour, marker="x", markersize=14, mew=2)
        ax.axhline(
            rule.P99_MS,
            color="black",
            linestyle="--",
            linewidth=0.8,
            label=f"p99 limit, {rule.P99_MS:.0f} ms",
        )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
            axis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("offered deliveries/s (1 room, 50 sockets)")
        ax.set_ylabel("p99 latency, ms (log)")
        ax.set_title(f"Ramp, {CONFIG_NAMES[config]} (the relay has no layer)", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="upper left", fontsize=7)
    smoke = "" if counts(results) else f"; SMOKE RUN, {step_s(results):g} s steps: does not count"
    fig.suptitle(
        f"p99 of each {step_s(results):g} s ramp step (dashed: two processes; dotted: the "
        f"step's last second)\nx = the step failed the rule, o = client-bound{smoke}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- docs/performance.md ----------------------------------------------------------------------


def smoke_banner(results: dict) -> str:
    return (
        f"> **Smoke run: the ramp figures here do not count.** Its ramp steps were "
        f"{step_s(results):g} s long, under the {rule.MIN_STEP_S:g} s that the rule needs to "
        "see a growing backlog"
        + (" (and `--quick` shrinks every workload)" if results["meta"].get("quick") else "")
        + ". `make bench` measures them.\n"
    )


RULE_TEXT = """\
**The pass rule** (`bench/rule.py`). A ramp step sends for {step:g} s at a fixed rate
({min_step:g} s at least: a shorter step does not count), then waits {drain:g} s for the
last deliveries. Latency is the receive time minus the time the message was *scheduled*
to be sent, so a sender held up by a server that stops reading (TCP back-pressure) or by
its own busy process shows the wait instead of hiding it. Each delivery is filed under
the second of the step in which its message was due. The step **passes** only when:

1. nothing is lost (every message reached every socket of the room before the drain
   ended) and every scheduled message was sent;
2. nothing arrived twice;
3. the step's p99 is at most {p99:.0f} ms;
4. the **last second's p99** (messages due in the step's last second) is at most
   {p99:.0f} ms, where a growing backlog is at its worst;
5. the backlog does not grow: the median latency of the last {win:g} s is at most
   {trend:.0f} ms above that of the {win:g} s after the first {warm:g} s
   (*median trend*): windows {gap:g} s apart, so a server falling behind by more than
   {behind:.1f} % of what it is offered fails, where a 2.5 s step judged on its p99
   let one fall behind by 10 %;
6. the deliveries received while the senders were sending (after the first {warm:g} s)
   are at least {kept:.0f} % of those offered (*received while sending*; a server
   that falls behind receives less than it is offered).

The ramp stops at the first step that does not pass. *Sustained* is the offered rate
of the highest passing step (it delivered everything it was offered, in time): the
server's real limit lies between it and the next step up, which failed.

**Client-bound.** A step where a load-client process used {ccpu:.0f} % of a core or
more while sending, or whose event loop ran {clag:.0f} ms or more late at p99, says as
much about the clients as about the server. A *failing* client-bound step is not
counted as a server failure: the ramp stops there, the table says "client-bound: not
counted", and the sustained figure is a lower bound (">="); except when the server
process was itself saturated ({scpu:.0f} % of a core or more per process: it could not
have done more, whatever the clients did), when the failure is the server's. A
*passing* client-bound step still counts (saturated clients only make latency look
worse, and rule 6 checks that the load was really delivered), and is marked "pass,
client-bound".
"""

WHAT_CHANGED = """\
## What changed, and why the earlier figures were wrong

The previous version of this page came from ramp steps of 2.5 s judged on their
overall p99 and loss alone. An overloaded server whose backlog grows by 100 ms every
second still ends a 2.5 s step under 250 ms, and the whole-step p99 hides where the
step was heading; so overloaded servers passed, and the published sustained rates
(about 29,000 deliveries/s under uvicorn and 15,000 under daphne, PostgreSQL + Redis)
were rates at which the backlog was still growing: they are withdrawn. Also:

- latency was measured from the time a message actually left, so a sender held up by
  a server that had stopped reading hid that wait; it is now measured from the
  *scheduled* send time, and a message never sent fails the step;
- the load clients' CPU was averaged over the drain after the sending, which
  understated it; it is now measured over the sending window, with the clients' event
  loop lag, and a step where they saturate is marked client-bound;
- sockets were opened 25 at a time per client process, which measured a queue, not a
  storm: 1,000 signed-in sockets are now opened at the same moment, on one process and
  through nginx on two;
- the two-process comparison ran at a fixed 5,000 deliveries/s, which says nothing about
  throughput: two processes now run the ramp as well;
- the server's CPU per message is reported beside its CPU per delivery;
- every table names the one command that measures it again.

Now: steps of {step:g} s, the rate grid {grid} msg/s, and the pass rule below.
"""

HOW_TO_READ = """\
**How to read this.** Every number comes from one run of `bench/run.py` on the
machine above; the servers, Redis, PostgreSQL and the load clients share its {nproc}
cores, so the absolute numbers are those of a small box and the ratios matter more.
A *delivery* is one chat message arriving at one socket: a message sent in a room of
50 sockets is 50 deliveries (the sender's own socket included, as the browser client
shows its own message from the broadcast). *Offered* is what the senders were
scheduled to send (message rate x room size), *achieved* is what arrived, divided by
the time from the first send to the last arrival. *Lost* counts (message, socket)
pairs that had not arrived {drain:g} s after the last send; *dup* counts any that
arrived twice. *Server CPU %* is the CPU time of the server process(es) over the time
from the first send to the last delivery (100 % = one core; one Python process cannot
use more than about 100 %); *server CPU ms/message* is that CPU divided by the messages
sent and *µs/delivery* divided by the deliveries: costs that do not depend on the rate.
*Client CPU %* is per load-client process, over the sending window; *machine CPU %* is
every core's busy time over the sending window (200 % = both cores of a 2-core box).
Ours stores every message in the database before broadcasting it and checks the
session, the room and presence on every connect; the tutorial and the relay do none of
that, so they bound what the plumbing alone costs. The fan-out's 5,000 deliveries/s may
be more than the tutorial's design sustains: its row is then that of an overloaded
server, and so are ours' ratios to it there. Idle memory is (server RSS with the
sockets open, after a {hold:g} s hold and a settle) minus (RSS before) divided by the
sockets; it includes allocator growth, so treat it as +/- a few KiB.
"""


def machine_section(meta: dict) -> str:
    pk = meta.get("packages", {})
    versions = ", ".join(f"{k} {v}" for k, v in pk.items())
    kind = "full run" if meta.get("full") else "partial run"
    if meta.get("quick"):
        kind = "quick smoke run"
    return (
        f"- Command: `{meta['command']}` ({kind}), "
        f"{meta['date']}, total wall time {meta.get('wall_s', 0) / 60:.1f} min\n"
        f"- Machine: {meta['nproc']} CPUs ({meta['cpu']}), {meta['ram_gib']:.0f} GiB RAM, "
        f"Linux {meta['kernel']}\n"
        f"- Python {meta['python']}; PostgreSQL {meta['postgres'] or '-'}; "
        f"Redis {meta['redis'] or '-'}\n"
        f"- Packages: {versions}\n"
        f"- Code measured: commit {meta['commit'] or '-'}\n"
        f"- Servers: {', '.join(meta['servers'])}; configurations: {', '.join(meta['configs'])}; "
        f"workloads: {', '.join(meta['workloads'])}; load-client processes: "
        f"{meta.get('clients', '-')}\n"
    )


def logs_section(results: dict) -> str:
    out = []
    for tag, info in sorted(results.get("logs", {}).items()):
        if not info["flagged"] and not info["tracebacks"]:
            continue
        out.append(
            f"- `{tag}` (`{info['path']}`, git-ignored): {info['tracebacks']} tracebacks; "
            "error lines by count:"
        )
        out.append("")
        out += [f"  - {n} x `{line}`" for line, n in info["summary"]]
        if info["first_traceback"]:
            out.append("")
            out.append("  The first traceback:")
            out.append("")
            out.append("  ```")
            out += ["  " + ln for ln in info["first_traceback"]]
            out.append("  ```")
        out.append("")
    if not out:
        return "No errors, warnings or tracebacks in any server log.\n"
    return "\n".join(out) + "\n"


def pairs_of(results: dict, workload: str):
    return [(c, s) for c, s, _ in rows(results, workload)]


def write_docs(results: dict, md_path: Path, png_path: Path) -> None:
    meta = results["meta"]
    p = meta["params"]
    chart(results, png_path)
    grid = ", ".join(f"{r:g}" for r in p["ramp_rates"])
    (e0, e1), (l0, l1), _ = rule.windows(max(p["ramp_s"], rule.MIN_STEP_S))
    gap = (l0 + l1) / 2 - (e0 + e1) / 2
    rule_text = RULE_TEXT.format(
        step=p["ramp_s"],
        min_step=rule.MIN_STEP_S,
        drain=p["drain_s"],
        p99=rule.P99_MS,
        win=rule.TREND_WINDOW_S,
        trend=rule.TREND_MS,
        warm=rule.WARM_S,
        kept=100 * rule.KEPT_MIN,
        ccpu=rule.CLIENT_CPU_PCT,
        clag=rule.CLIENT_LAG_MS,
        scpu=rule.SERVER_CPU_PCT,
        gap=gap,
        behind=100 * rule.TREND_MS / 1000 / gap,
    )
    ramp_pairs = pairs_of(results, "ramp")
    two_pairs = pairs_of(results, "two")
    connect_pairs = pairs_of(results, "idle")
    nginx_pairs = pairs_of(results, "nginx")
    md = ["# Performance", ""]
    if not counts(results):
        md += [smoke_banner(results), ""]
    md += [
        "Our chat server (`project.asgi:application`, with authentication, storage and",
        "presence on) under daphne and under uvicorn, against two baselines run with the same",
        "load clients in the same run: the Channels tutorial's design (`bench/tutorial/`: its",
        "sync `WebsocketConsumer`, `async_to_sync` group calls, no auth, no storage) under",
        "daphne on the same channel-layer kind and configuration, and a bare `websockets` relay",
        "with uvloop (`bench/relay.py`, no Django). Each is measured in two configurations:",
        "production shape (PostgreSQL + Redis `RedisChannelLayer`, a fresh database and a",
        "unique Redis prefix) and the embedded default (SQLite file, in-memory channel layer);",
        "the relay has no layer and runs once. Generated by `bench/run.py` from its results",
        "file (`bench/results/`, git-ignored); no figure on this page is typed in by hand.",
        "",
        "    make bench                    # everything; rewrites this page (about 30 minutes)",
        "    python bench/run.py --only ramp --servers ours-uvicorn --configs prod   # one figure",
        "    python bench/run.py --render bench/results/bench-<time>.json   # this page, again",
        "",
        "Every table below names the one command that measures it again (a partial run prints",
        "its tables and saves its results, and leaves this page alone unless given `--docs`).",
        "",
        machine_section(meta),
        WHAT_CHANGED.format(step=p["ramp_s"], grid=grid),
        "## Targets",
        "",
        "One process, a 50-socket room, PostgreSQL + Redis, the production configuration "
        f"(`DJANGO_DEBUG=0`), ramp steps of {rule.MIN_STEP_S:g} s or more.",
        "",
        targets_table(results),
        "",
        "## Workloads",
        "",
        f"1. **Ramp**: 1 room, {p['fan_sockets']} sockets; {p['ramp_senders']} senders share a "
        f"total rate raised in steps of {p['ramp_s']:g} s ({grid} msg/s, x{p['fan_sockets']} "
        "deliveries), stopping at the first step that does not pass (the rule below).",
        f"2. **Fan-out**: the same room, {p['fan_senders']} senders at {p['fan_rate']:g} msg/s "
        f"each ({p['fan_sockets'] * p['fan_senders'] * p['fan_rate']:,.0f} deliveries/s "
        f"offered), {p['fan_s']:g} s, after the ramp (and up to "
        f"{p['drain_after_overload_s']:g} s for the server to drain what its last step left); "
        f"the ramp itself comes after a {p['warm_s']:g} s warm-up.",
        f"3. **1,000 at once, then idle**: {p['idle_users']} signed-in users x "
        f"{p['idle_per_user']} sockets ({p['idle_users'] * p['idle_per_user']:,}) in "
        f"{p['idle_per_user']} rooms, every one opened at the same moment (spread over the "
        "load-client processes); connect time is from the TCP connect to the socket being "
        "usable (ours: `hello` received), its percentiles are over every socket (one that "
        "failed counts as never connected), connects/s is the sockets connected over the time "
        f"from the start to the last one done. Held {p['idle_hold_s']:g} s, then the server's "
        "RSS is read. The same through nginx (`deploy/nginx/chat.conf`, Debian's nginx, as "
        "`tests/test_nginx.py` runs it) in front of two processes of ours.",
        f"4. **Many rooms**: {p['rooms']} rooms x {p['room_size']} sockets, one sender per room "
        f"at {p['room_rate']:g} msg/s ({p['rooms'] * p['room_size'] * p['room_rate']:,.0f} "
        f"deliveries/s offered), {p['rooms_s']:g} s.",
        "5. **Two processes** (ours, PostgreSQL + Redis only): two server processes sharing "
        "PostgreSQL and Redis, the room's sockets alternating between them: the ramp, then "
        "the fan-out. The embedded default is one process by design (in-memory layer and "
        "presence), so it is not run there.",
        "",
        "Users sign in through the real allauth login form (`tests.live.Browserless`); their "
        "session cookies open our sockets, with `Origin` set. `CHAT_RATE_LIMIT=0`, "
        "`CHAT_USER_RATE_LIMIT=0`, `CHAT_MAX_SOCKETS_PER_USER=0`, `CHAT_ROOM_CREATE_RATE=0`, "
        "`CHAT_INVITE_CREATE_RATE=0` and `ACCOUNT_RATE_LIMITS=0` so the load is not "
        "refused; `DJANGO_DEBUG=0`.",
        "",
        rule_text,
        HOW_TO_READ.format(nproc=meta["nproc"], drain=p["drain_s"], hold=p["idle_hold_s"]),
        "## Headline: ours as ratios to the baselines",
        "",
        "Each cell: ours, then ours / baseline. Above 1 means more deliveries/s or connects/s "
        "for those rows, and more milliseconds, CPU or memory (worse) for the others.",
        "",
        "Measure again: `" + repro(results, ["idle", "fanout", "ramp", "rooms"]) + "`",
        "",
        ratio_table(results),
        "",
        "![p99 latency against offered load, ramp](performance.png)",
        "",
        reproduce_line(results, ["ramp", "two"], ramp_pairs + two_pairs, "The chart, again"),
        "## Ramp",
        "",
        reproduce_line(results, ["ramp"], ramp_pairs),
        ramp_summary(results, processes=1),
        "",
        "<details><summary>Every step (two-process steps too)</summary>",
        "",
        reproduce_line(results, ["ramp", "two"], ramp_pairs + two_pairs),
        ramp_steps(results),
        "",
        "</details>",
        "",
        "## Fan-out",
        "",
        reproduce_line(results, ["fanout"], pairs_of(results, "fanout")),
        delivery_table(results, "fanout"),
        "",
        "## 1,000 signed-in sockets at once, then idle",
        "",
        reproduce_line(results, ["idle"], connect_pairs),
        reproduce_line(results, ["nginx"], nginx_pairs, "Behind nginx, again"),
        connect_table(results),
        nginx_skipped(results),
        "",
        connect_errors(results),
        "",
        "## Many rooms",
        "",
        reproduce_line(results, ["rooms"], pairs_of(results, "rooms")),
        delivery_table(results, "rooms"),
        "",
        "## Two processes (PostgreSQL + Redis)",
        "",
        "Delivery across processes goes through Redis. The ramp on two processes, its "
        "sustained rate halved (per process), against the one-process ramp of the same run:",
        "",
        reproduce_line(results, ["ramp", "two"], two_pairs),
        two_ramp_table(results),
        "",
        "The fan-out at a fixed rate, one process against two:",
        "",
        reproduce_line(results, ["fanout", "two"], two_pairs),
        two_fanout_table(results),
        "",
        "## Load clients",
        "",
        client_section(results),
        "",
        "## Machine noise",
        "",
        "Other work on the machine (other developers' tests, browsers) takes CPU from the "
        "servers and the clients. Before each server the benchmark waits (up to "
        f"{p['quiet_wait_s']:g} s) for the rest of the machine to use under 25 % of a core, "
        "and every phase reports *others CPU %*: the machine's busy CPU less the server, the "
        "load clients, the driver, Redis and our database's PostgreSQL backends. A phase "
        "disturbed that much is measured once more after waiting (up to 10 s) for quiet, and "
        "the less disturbed of the two is kept, while the retry budget lasts "
        f"({p['retry_per_server_s']:g} s per server, {p['retry_budget_s']:g} s in all).",
        "",
        noise_section(results),
        "## Server logs",
        "",
        logs_section(results),
    ]
    if results.get("errors") or results.get("skipped"):
        md += ["## Errors and skipped runs", ""]
        md += [f"- error: {e}" for e in results.get("errors", [])]
        md += [f"- skipped: {e}" for e in results.get("skipped", [])]
        md.append("")
    md_path.write_text("\n".join(md))
