"""Tables, docs/performance.md and docs/performance.png from bench/run.py's results.

Also the one-line summaries bench/run.py prints while it measures (summary, fmt_ms).
"""

from __future__ import annotations

from pathlib import Path

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
RAMP_P99_MS = 250  # a ramp step fails above this p99, or on any loss (bench/workloads.py)


def fmt_ms(v) -> str:
    if v is None:
        return "-"
    return f"{v:.1f}" if v < 100 else f"{v:.0f}"


def summary(r: dict) -> str:
    """One measured phase on one line, as printed while measuring."""
    return (
        f"offered {num(r['offered'])}/s achieved {num(r['achieved'])}/s "
        f"p50 {fmt_ms(r['p50_ms'])} p99 {fmt_ms(r['p99_ms'])} max {fmt_ms(r['max_ms'])} ms "
        f"lost {r['lost']} dup {r['dup']} srv {r['server_cpu_pct']:.0f}% "
        f"cli {max(r['client_cpu_pct'], default=0):.0f}% others {r['others_cpu_pct']:.0f}%"
    )


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


def ratio(a, b) -> str:
    if not a or not b:
        return "-"
    r = a / b
    if r >= 10:
        return f"{r:.0f}x"
    if r >= 1:
        return f"{r:.1f}x"
    return f"{r:.2g}x"


def rows(results: dict, workload: str):
    runs = results.get("runs", {})
    for config, server in ORDER:
        run = runs.get(config, {}).get(server)
        if run is None:
            continue
        value = run.get(workload)
        if value is not None:
            yield config, server, value


def table(head: list[str], body: list[list[str]]) -> str:
    if not body:
        return "_not run_\n"
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines) + "\n"


def client_cpu(r: dict) -> str:
    values = r.get("client_cpu_pct") or []
    if not values:
        return "-"
    text = "/".join(f"{v:.0f}" for v in values)
    return text + (" (client-bound?)" if max(values) > 90 else "")


NOISY_PCT = 25


def others(r: dict) -> str:
    v = r.get("others_cpu_pct")
    if v is None:
        return "-"
    return f"{v:.0f}" + (" (noisy)" if v >= NOISY_PCT else "")


def noisy_phases(results: dict) -> list[str]:
    """Phases during which the machine did other work (other people's tests...)."""
    out = []
    for workload in ("fanout", "rooms", "two"):
        for config, server, r in rows(results, workload):
            if (r.get("others_cpu_pct") or 0) >= NOISY_PCT:
                out.append(
                    f"{CONFIG_NAMES[config]} {server} {workload}: {r['others_cpu_pct']:.0f}%"
                )
    for config, server, r in rows(results, "ramp"):
        for st in r["steps"]:
            if (st.get("others_cpu_pct") or 0) >= NOISY_PCT:
                out.append(
                    f"{CONFIG_NAMES[config]} {server} ramp {st['msgs_per_s']:.0f} msg/s: "
                    f"{st['others_cpu_pct']:.0f}%"
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


def delivery_table(results: dict, workload: str) -> str:
    head = [
        "config",
        "server",
        "offered/s",
        "achieved/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "lost",
        "dup",
        "server CPU %",
        "CPU µs/delivery",
        "server RSS MiB",
        "client CPU % (2 procs)",
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
                ms(r["p95_ms"]),
                ms(r["p99_ms"]),
                ms(r["max_ms"]),
                lost(r),
                str(r["dup"]),
                pct(r["server_cpu_pct"]),
                num(r["server_cpu_us_per_delivery"]),
                num(r["server_rss_mib"]),
                client_cpu(r),
                pct(r.get("redis_cpu_pct")),
                pct(r.get("postgres_cpu_pct")),
                others(r),
            ]
        )
    return table(head, body)


def ramp_summary(results: dict) -> str:
    head = [
        "config",
        "server",
        "sustained deliveries/s",
        "p99 there ms",
        "stopped at offered/s",
        "why",
    ]
    body = []
    for config, server, r in rows(results, "ramp"):
        failed = r.get("failed")
        body.append(
            [
                CONFIG_NAMES[config],
                server,
                num(r["sustained"]),
                ms(r["sustained_p99_ms"]),
                num(failed["offered"]) if failed else "-",
                failed["reason"] if failed else "top of the ramp reached",
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
        "max ms",
        "lost",
        "dup",
        "server CPU %",
        "CPU µs/delivery",
        "client CPU %",
        "others CPU %",
    ]
    body = []
    for config, server, r in rows(results, "ramp"):
        for s in r["steps"]:
            body.append(
                [
                    CONFIG_NAMES[config],
                    server,
                    num(s["msgs_per_s"]),
                    num(s["offered"]),
                    num(s["achieved"]),
                    ms(s["p50_ms"]),
                    ms(s["p99_ms"]),
                    ms(s["max_ms"]),
                    lost(s),
                    str(s["dup"]),
                    pct(s["server_cpu_pct"]),
                    num(s["server_cpu_us_per_delivery"]),
                    client_cpu(s),
                    others(s),
                ]
            )
    return table(head, body)


def lost(r: dict) -> str:
    """Lost, and the sockets the server closed during the phase (with their codes)."""
    closed = r.get("closed_sockets") or {}
    if not closed:
        return str(r["lost"])
    codes = ", ".join(f"{n} x {code}" for code, n in closed.items())
    return f"{r['lost']} (sockets closed: {codes})"


def connect_errors(results: dict) -> str:
    lines = []
    for workload in ("idle", "rooms", "two"):
        for config, server, r in rows(results, workload):
            info = r if workload == "idle" else r.get("connect", {})
            for text, n in info.get("errors", []):
                lines.append(f"- {CONFIG_NAMES[config]} {server} {workload}: {n} x `{text}`")
    for config, server, r in rows(results, "fan_connect"):
        for text, n in r.get("errors", []):
            lines.append(f"- {CONFIG_NAMES[config]} {server} fan-out: {n} x `{text}`")
    if not lines:
        return "Every socket of every workload connected.\n"
    return "Sockets that failed to connect:\n\n" + "\n".join(lines) + "\n"


def idle_table(results: dict) -> str:
    head = [
        "config",
        "server",
        "sockets",
        "connected",
        "failed",
        "connect p50 ms",
        "connect p99 ms",
        "connects/s",
        "server CPU ms/connect",
        "RSS before MiB",
        "RSS after MiB",
        "KiB/socket",
        "open after hold",
    ]
    body = []
    for config, server, r in rows(results, "idle"):
        body.append(
            [
                CONFIG_NAMES[config],
                server,
                str(r["sockets"]),
                str(r["connected"]),
                str(r["failed"]),
                ms(r["connect_p50_ms"]),
                ms(r["connect_p99_ms"]),
                num(r["connects_per_s"]),
                ms(r["server_cpu_ms_per_connect"]),
                num(r["rss_before_mib"]),
                num(r["rss_after_mib"]),
                "-" if r["kib_per_socket"] is None else f"{r['kib_per_socket']:.1f}",
                f"{r['open']}" + (f" (closed: {r['closed']})" if r.get("closed") else ""),
            ]
        )
    return table(head, body)


def two_table(results: dict) -> str:
    head = [
        "server",
        "processes",
        "offered/s",
        "achieved/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "lost",
        "dup",
        "server CPU % (sum)",
        "CPU µs/delivery",
        "server RSS MiB (sum)",
    ]
    body = []
    for config, server, r in rows(results, "two"):
        one = results["runs"][config][server].get("fanout")
        for n, x in ([(1, one)] if one else []) + [(2, r)]:
            body.append(
                [
                    server,
                    str(n),
                    num(x["offered"]),
                    num(x["achieved"]),
                    ms(x["p50_ms"]),
                    ms(x["p99_ms"]),
                    ms(x["max_ms"]),
                    str(x["lost"]),
                    str(x["dup"]),
                    pct(x["server_cpu_pct"]),
                    num(x["server_cpu_us_per_delivery"]),
                    num(x["server_rss_mib"]),
                ]
            )
    return table(head, body)


def get(results, config, server, workload):
    return results.get("runs", {}).get(config, {}).get(server, {}).get(workload)


def ratio_table(results: dict) -> str:
    """Ours per configuration, each headline number with its ratios to both baselines."""
    runs = results.get("runs", {})
    relay = runs.get("none", {}).get("relay", {})
    metrics = [
        ("ramp sustained deliveries/s", "ramp", "sustained", num),
        ("fan-out p99 ms", "fanout", "p99_ms", ms),
        ("fan-out server CPU µs/delivery", "fanout", "server_cpu_us_per_delivery", num),
        ("many rooms server CPU µs/delivery", "rooms", "server_cpu_us_per_delivery", num),
        ("idle KiB/socket", "idle", "kib_per_socket", lambda v: "-" if v is None else f"{v:.1f}"),
        ("connect p99 ms", "idle", "connect_p99_ms", ms),
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


def tables(results: dict) -> str:
    out = []
    out.append("### Ramp (1 room, 50 sockets, rising rate)\n")
    out.append(ramp_summary(results))
    out.append("\n### Fan-out (1 room, 50 sockets, 5 senders x 20 msg/s)\n")
    out.append(delivery_table(results, "fanout"))
    out.append("\n### Idle (signed-in idle sockets)\n")
    out.append(idle_table(results))
    out.append(connect_errors(results))
    out.append("\n### Many rooms (10 sockets each, 1 sender per room)\n")
    out.append(delivery_table(results, "rooms"))
    out.append("\n### Two processes of ours (PostgreSQL + Redis), fan-out\n")
    out.append(two_table(results))
    out.append("\n### Ours as ratios (ours / baseline)\n")
    out.append(ratio_table(results))
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


def chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    configs = [c for c in ("prod", "embedded") if results.get("runs", {}).get(c)]
    if not configs and not results.get("runs", {}).get("none"):
        return
    configs = configs or ["prod"]
    fig, axes = plt.subplots(1, len(configs), figsize=(6.5 * len(configs), 4.8), squeeze=False)
    styles = {
        "ours-daphne": ("tab:blue", "o"),
        "ours-uvicorn": ("tab:green", "s"),
        "tutorial": ("tab:red", "^"),
        "relay": ("tab:gray", "D"),
    }
    for ax, config in zip(axes[0], configs, strict=True):
        for server, (colour, marker) in styles.items():
            r = get(results, "none" if server == "relay" else config, server, "ramp")
            if not r or not r["steps"]:
                continue
            xs = [s["offered"] for s in r["steps"]]
            ys = [max(s["p99_ms"] or 0.01, 0.01) for s in r["steps"]]
            ax.plot(xs, ys, color=colour, marker=marker, label=server)
            if r.get("failed"):
                ax.plot(xs[-1], ys[-1], color=colour, marker="x", markersize=14, mew=2)
        ax.axhline(
            RAMP_P99_MS, color="black", linestyle="--", linewidth=0.8, label="p99 limit, 250 ms"
        )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("offered deliveries/s (1 room, 50 sockets)")
        ax.set_ylabel("p99 latency, ms (log)")
        ax.set_title(f"Ramp, {CONFIG_NAMES[config]} (the relay has no layer)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(
        "p99 latency against offered load; x = step that failed (loss or p99 > 250 ms)", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


HOW_TO_READ = """\
**How to read this.** Every number comes from one run of `make bench` on the
machine above; the servers and the load clients share its {nproc} cores, so
the absolute numbers are those of a small box and the ratios matter more.
A *delivery* is one chat message arriving at one socket: a message sent in a
room of 50 sockets is 50 deliveries (the sender's own socket included, as the
browser client shows its own message from the broadcast). *Offered* is what
the senders tried (message rate x room size), *achieved* is what arrived,
divided by the time from the first send to the last arrival. Latency is
receive time minus the send time written in the message (one system-wide
monotonic clock), per delivery. *Lost* counts (message, socket) pairs that
had not arrived {drain:.0f} s after the last send; *dup* counts any that
arrived twice. A ramp step *passes* with no loss and p99 <= 250 ms;
*sustained* is the best achieved rate of a passing step, so it is bounded by
the step grid (the next step up failed). *Server CPU %* is the psutil CPU
time of the server process(es) over the wall time of the step (100 % = one
core; a single Python process cannot use more than about 100 %), and *CPU
µs/delivery* the same CPU divided by deliveries, the cost that does not
depend on the rate. *Client CPU %* is per load-client process: past about
90 % the clients, not the server, may be the limit (marked "client-bound?"),
which is what happens to the bare relay. Ours stores every message in the
database before broadcasting it and checks the session, the room and
presence on every connect; the tutorial and the relay do none of that, so
they bound what the plumbing alone costs. The fan-out's 5,000 deliveries/s is
more than the tutorial's design sustains here: its fan-out row is that of an
overloaded server (latency is then time spent queued, and loss is mostly
messages still queued after the drain), and so are ours' ratios to it there.
Idle memory is (server RSS with the
sockets open, after a {hold:.0f} s hold and a settle) minus (RSS before) divided
by the sockets; it includes allocator growth, so treat it as +/- a few KiB.
"""


def machine_section(meta: dict) -> str:
    pk = meta.get("packages", {})
    versions = ", ".join(f"{k} {v}" for k, v in pk.items())
    return (
        f"- Command: `{meta['command']}` ({'quick smoke run' if meta['quick'] else 'full run'}), "
        f"{meta['date']}, total wall time {meta.get('wall_s', 0) / 60:.1f} min\n"
        f"- Machine: {meta['nproc']} CPUs ({meta['cpu']}), {meta['ram_gib']:.0f} GiB RAM, "
        f"Linux {meta['kernel']}\n"
        f"- Python {meta['python']}; PostgreSQL {meta['postgres'] or '-'}; "
        f"Redis {meta['redis'] or '-'}\n"
        f"- Packages: {versions}\n"
        f"- Code measured: commit {meta['commit'] or '-'}\n"
        f"- Servers: {', '.join(meta['servers'])}; configurations: {', '.join(meta['configs'])}; "
        f"workloads: {', '.join(meta['workloads'])}\n"
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


def write_docs(results: dict, md_path: Path, png_path: Path) -> None:
    meta = results["meta"]
    p = meta["params"]
    chart(results, png_path)
    md = [
        "# Performance",
        "",
        "Our chat server (`project.asgi:application`, with authentication, storage and",
        "presence on) under daphne and under uvicorn, against two baselines run with the same",
        "load clients in the same run: the Channels tutorial's design (`bench/tutorial/`: its",
        "sync `WebsocketConsumer`, `async_to_sync` group calls, no auth, no storage) under",
        "daphne on the same channel-layer kind and configuration, and a bare `websockets` relay",
        "with uvloop (`bench/relay.py`, no Django). Each is measured in two configurations:",
        "production shape (PostgreSQL + Redis `RedisChannelLayer`, a fresh database and a",
        "unique Redis prefix) and the embedded default (SQLite file, in-memory channel layer);",
        "the relay has no layer and runs once. Generated by `bench/run.py`; the raw numbers",
        "are in `bench/results/` (git-ignored).",
        "",
        "    make bench                         # the whole comparison, about 10 minutes",
        "    make bench BENCH_ARGS=--quick      # a ~2-minute smoke run",
        "    make bench BENCH_ARGS='--only ramp,idle --servers ours-uvicorn,relay --configs prod'",
        "",
        machine_section(meta),
        "## Workloads",
        "",
        f"1. **Fan-out**: 1 room, {p['fan_sockets']} sockets, {p['fan_senders']} of them sending "
        f"{p['fan_rate']:.0f} msg/s each "
        f"({p['fan_sockets'] * p['fan_senders'] * p['fan_rate']:,.0f} deliveries/s offered), "
        f"{p['fan_s']:.0f} s after a {p['warm_s']:.1f} s warm-up.",
        f"2. **Ramp**: the same room; {p['ramp_senders']} senders share a total rate raised in "
        f"steps of {p['ramp_s']:.1f} s ({', '.join(str(x) for x in p['ramp_rates'])} msg/s, "
        f"x{p['fan_sockets']} deliveries), stopping at the first step with loss or p99 > 250 ms.",
        f"3. **Idle**: {p['idle_users']} signed-in users x {p['idle_per_user']} sockets "
        f"({p['idle_users'] * p['idle_per_user']:,}) in {p['idle_per_user']} rooms, opened "
        f"{p['connect_parallel']} at a time per client process (2 processes); connect time is "
        "from the TCP connect to the socket being usable (ours: `hello` received). Held "
        f"{p['idle_hold_s']:.0f} s, then server RSS is read.",
        f"4. **Many rooms**: {p['rooms']} rooms x {p['room_size']} sockets, one sender per room at "
        f"{p['room_rate']:.0f} msg/s ({p['rooms'] * p['room_size'] * p['room_rate']:,.0f} "
        f"deliveries/s offered), {p['rooms_s']:.0f} s.",
        "5. **Two processes** (ours, production shape only): two server processes sharing "
        "PostgreSQL and Redis, sockets alternating between them, the fan-out workload. The "
        "embedded default is one process by design (in-memory layer and presence), so it is "
        "not run there.",
        "",
        "Users sign in through the real allauth login form (`tests.live.Browserless`); their "
        "session cookies open our sockets, with `Origin` set. `CHAT_RATE_LIMIT=0` and "
        "`ACCOUNT_RATE_LIMITS=0` so the load is not refused; `DJANGO_DEBUG=0`.",
        "",
        "## Headline: ours as ratios to the baselines",
        "",
        "Each cell: ours, then ours / baseline. Above 1 means more deliveries/s for the ramp, "
        "and more milliseconds, CPU or memory (worse) for the other rows.",
        "",
        ratio_table(results),
        "",
        "![p99 latency against offered load, ramp](performance.png)",
        "",
        HOW_TO_READ.format(nproc=meta["nproc"], drain=p["drain_s"], hold=p["idle_hold_s"]),
        "## Ramp",
        "",
        ramp_summary(results),
        "",
        "<details><summary>Every step</summary>",
        "",
        ramp_steps(results),
        "",
        "</details>",
        "",
        "## Fan-out",
        "",
        delivery_table(results, "fanout"),
        "",
        "## Idle sockets",
        "",
        idle_table(results),
        "",
        connect_errors(results),
        "",
        "## Many rooms",
        "",
        delivery_table(results, "rooms"),
        "",
        "## Two processes (PostgreSQL + Redis)",
        "",
        "Delivery across processes goes through Redis; the one-process fan-out row is repeated "
        "for comparison.",
        "",
        two_table(results),
        "",
        "## Machine noise",
        "",
        "Other work on the machine (other developers' tests, browsers) takes CPU from the "
        "servers and the clients. Before each server the benchmark waits (up to "
        f"{p['quiet_wait_s']:.0f} s) for the rest of the machine to use under 25 % of a core, "
        "and every phase reports *others CPU %*: the machine's busy CPU less the server, the "
        "load clients, the driver, Redis and our database's PostgreSQL backends. A phase "
        "disturbed that much is measured once more after waiting (up to 10 s) for quiet, and "
        "the less disturbed of the two is kept, while the retry budget lasts "
        f"({p['retry_per_server_s']:.0f} s per server, {p['retry_budget_s']:.0f} s in all).",
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
