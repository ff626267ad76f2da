"""When a measured phase (a ramp step) passes: the rule, in one place.

bench/workloads.py judges every ramp step with judge(); bench/report.py prints the same
constants in docs/performance.md, so the page and the code cannot disagree.

A step sends for `duration` seconds at a fixed rate, then waits DRAIN seconds for the
last deliveries. Latency is receive time minus the time the message was *scheduled* to
be sent (not the time it left: a sender held up by a server that stops reading would
otherwise hide the wait). Every delivery is put in the second of the step in which its
message was scheduled. The step passes only when all of these hold:

1. nothing lost: every (message, socket) pair arrived before the drain ended, and every
   scheduled message was sent;
2. no duplicates;
3. p99 over the whole step <= P99_MS;
4. p99 of the messages of the last second <= P99_MS: the end of the step, where a
   growing backlog is at its worst, is judged on its own;
5. the backlog does not grow: the median latency of the last TREND_WINDOW_S seconds is
   at most TREND_MS above that of the TREND_WINDOW_S seconds after the first WARM_S;
6. the deliveries received while the senders were sending (from WARM_S to the end of
   sending), per second, are at least KEPT_MIN of the offered rate: a server that falls
   behind receives less than it is offered. (Not applied to a window of fewer than
   KEPT_MIN_MSGS messages, where one message is over 1 %: only smoke runs have those.)

A step whose steps are shorter than MIN_STEP_S does not count, whatever it shows: at
2.5 s, a backlog growing by 100 ms a second still ends under 250 ms.

A load-client process that used CLIENT_CPU_PCT or more of a core while sending, or whose
event loop ran CLIENT_LAG_MS or more late at p99, is saturated: its receive times are
its own queueing as much as the server's. Such a step is "client-bound": a failing one is
not counted as the server's failure (the ramp stops there and says so), unless the
server itself was saturated too (SERVER_CPU_PCT of a core or more per process: it could
not have done more, whatever the clients did); a passing one still counts (saturated
clients only make latency look worse) and is marked.
"""

from __future__ import annotations

MIN_STEP_S = 8.0  # a ramp step shorter than this does not count
P99_MS = 250.0  # bound on the step's p99 and on its last second's p99
WARM_S = 1.0  # the start of a step left out of the trend and the rate
TREND_WINDOW_S = 2.0  # the early and the late window of the trend
TREND_MS = 50.0  # most the late median may exceed the early one
KEPT_MIN = 0.97  # least received/offered while sending
KEPT_MIN_MSGS = 100  # rule 6 needs this many messages in its window (1 message = 1 %)
CLIENT_CPU_PCT = 90.0  # a load-client process this busy is saturated
CLIENT_LAG_MS = 50.0  # or its event loop this late (p99)
SERVER_CPU_PCT = 90.0  # a server process this busy is saturated, whatever the clients did
DRAIN_S = 2.0  # wait after the last send; what has not arrived by then is lost


def windows(duration: float) -> tuple[tuple[float, float], tuple[float, float], float]:
    """(early window, late window, start of the rate window), seconds into the step.

    Steps too short for WARM_S + two windows (smoke runs) use their first and last thirds.
    """
    if duration >= WARM_S + 2 * TREND_WINDOW_S:
        early = (WARM_S, WARM_S + TREND_WINDOW_S)
        late = (duration - TREND_WINDOW_S, duration)
        return early, late, WARM_S
    third = duration / 3
    return (0.0, third), (2 * third, duration), third


def client_bound(step: dict) -> str:
    """Why the load clients were saturated during the step, or ""."""
    why = []
    cpu = step.get("client_cpu_pct") or []
    if cpu and max(cpu) >= CLIENT_CPU_PCT:
        why.append(f"client CPU {max(cpu):.0f}% >= {CLIENT_CPU_PCT:.0f}%")
    lag = step.get("client_lag_p99_ms") or []
    if lag and max(lag) >= CLIENT_LAG_MS:
        why.append(f"client loop {max(lag):.0f} ms late >= {CLIENT_LAG_MS:.0f}")
    return ", ".join(why)


def failures(step: dict) -> list[str]:
    """Every rule the step broke (empty: it passed)."""
    out = []
    if step.get("server_died"):
        out.append("server died")
    if step["lost"]:
        out.append(f"lost {step['lost']}")
    if step.get("unsent"):
        out.append(f"{step['unsent']} messages never sent")
    if step["dup"]:
        out.append(f"dup {step['dup']}")
    p99 = step["p99_ms"]
    if p99 is None or p99 > P99_MS:
        out.append(f"p99 {fmt(p99)} ms > {P99_MS:.0f}")
    last = step.get("last_s_p99_ms")
    if last is None or last > P99_MS:
        out.append(f"last-second p99 {fmt(last)} ms > {P99_MS:.0f}")
    trend = step.get("trend_ms")
    if trend is not None and trend > TREND_MS:
        out.append(f"backlog grows: median +{fmt(trend)} ms > {TREND_MS:.0f}")
    kept = step.get("kept")
    if step.get("kept_msgs", KEPT_MIN_MSGS) >= KEPT_MIN_MSGS and (kept is None or kept < KEPT_MIN):
        out.append(
            f"received {100 * (kept or 0):.0f}% of offered < {100 * KEPT_MIN:.0f}% while sending"
        )
    return out


def server_saturated(step: dict) -> bool:
    """Whether the server processes used SERVER_CPU_PCT of a core or more each."""
    procs = step.get("server_procs") or 1
    return (step.get("server_cpu_pct") or 0) / procs >= SERVER_CPU_PCT


def judge(step: dict) -> dict:
    """The step's verdict: {"passed", "reasons", "client_bound", "verdict"}.

    client_bound is "" when the clients kept up, or when a failing step's server was
    saturated anyway (then the failure is the server's).
    """
    reasons = failures(step)
    bound = client_bound(step)
    if reasons and bound and server_saturated(step):
        reasons.append(f"server saturated ({step['server_cpu_pct']:.0f}% CPU; {bound})")
        bound = ""
    if reasons:
        verdict = "client-bound" if bound else "fail"
    else:
        verdict = "pass, client-bound" if bound else "pass"
    return {"passed": not reasons, "reasons": reasons, "client_bound": bound, "verdict": verdict}


def fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.1f}" if v < 100 else f"{v:.0f}"
