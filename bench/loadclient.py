"""A load-client process: many WebSocket clients on one asyncio (uvloop) loop.

bench/run.py starts two of these (bench.harness.ClientPool: multiprocessing,
spawn) and drives them over a pipe with small commands:

    connect  open sockets (bounded parallelism, or all at once from a given
             time), read `hello` on ours, then file every frame (FastConnection)
    run      send on schedule from the sender sockets for a fixed time
    collect  wait (bounded) until every socket has every message sent in its
             room, then count lost / duplicated / stray and the latencies
    close    close every socket
    quit

Receiving is kept cheap so that the client is not the bottleneck: once a
socket is open (and, on ours, has its hello), every whole text frame is
appended as (socket, receive time, raw bytes) to one list straight from the
connection's data_received callback (FastConnection), with no task woken per
frame; parsing (orjson) happens after the sending stops. websockets still
does the handshake, pings, pongs and closing.

Payload: TEXT = "sender:seq:monotonic_ns", the time the message was
*scheduled* to be sent (a sender held up, by the server not reading or by
this process being busy, does not hide the wait); CLOCK_MONOTONIC is
system-wide on Linux, so receive time minus the time in TEXT is the delivery
latency even across processes.

While it sends, a process also watches itself (Monitor): its CPU over the
sending window and how late its event loop runs, so that a step where the
load client, not the server, is the limit can be told apart (bench/rule.py).

PipeWorker (the command loop) and run_loop (uvloop when installed) serve
bench/soak.py's client processes too.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
import traceback
from array import array
from collections import Counter

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Opcode

MAX_ERRORS = 5  # error texts kept per command


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Monitor:
    """This process's CPU and event-loop lag over a window of monotonic time.

    A task wakes every TICK_S and records how late it woke (the loop's lag: how long
    ready callbacks, readers included, waited) and, at the window's ends, the CPU time
    used. Late wake-ups mean a busy loop, or a process the machine gave no CPU.
    """

    TICK_S = 0.02

    def __init__(self, start_ns: int, end_ns: int):
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.lags_ms: list[float] = []
        self.cpu = (0.0, 0.0)
        self.wall_ns = (0, 0)
        self.task = asyncio.create_task(self.watch())

    async def watch(self) -> None:
        now = time.monotonic_ns()
        if now < self.start_ns:
            await asyncio.sleep((self.start_ns - now) / 1e9)
        cpu0, t0 = cpu_seconds(), time.monotonic_ns()
        tick = int(self.TICK_S * 1e9)
        due = t0 + tick
        while due < self.end_ns:
            await asyncio.sleep(max(0.0, (due - time.monotonic_ns()) / 1e9))
            now = time.monotonic_ns()
            self.lags_ms.append((now - due) / 1e6)
            due = max(due + tick, now + tick // 4)
        self.cpu = (cpu0, cpu_seconds())
        self.wall_ns = (t0, time.monotonic_ns())

    async def result(self) -> dict:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.task, 30)
        (c0, c1), (t0, t1) = self.cpu, self.wall_ns
        lags = sorted(self.lags_ms)

        def at(q: float):
            return lags[min(len(lags) - 1, int(q * len(lags)))] if lags else None

        return {
            "cpu_s": c1 - c0,
            "wall_s": (t1 - t0) / 1e9,
            "cpu_pct": 100 * (c1 - c0) / ((t1 - t0) / 1e9) if t1 > t0 else None,
            "lag_p99_ms": at(0.99),
            "lag_max_ms": lags[-1] if lags else None,
        }


class FastConnection(ClientConnection):
    """A client connection that, once `sink` is set, appends each whole text frame to it.

    (index, monotonic_ns on arrival, raw bytes): stamped in data_received, before any
    task runs, so that the client's own scheduling adds as little as it can to the
    latency. Until then (the handshake, our hello) frames go to websockets' own queue.
    """

    sink: list | None = None
    index = 0

    def process_event(self, event) -> None:
        sink = self.sink
        if sink is not None and getattr(event, "opcode", None) is Opcode.TEXT and event.fin:
            sink.append((self.index, time.monotonic_ns(), event.data))
            return
        super().process_event(event)


class Sock:
    __slots__ = ("ws", "room", "sid", "reader", "closed")

    def __init__(self, ws, room: str, sid: int | None):
        self.ws = ws
        self.room = room
        self.sid = sid
        self.reader: asyncio.Task | None = None
        self.closed: int | None = None  # close code when the server closed it


class PipeWorker:
    """A client process's command loop (bench.harness.ClientPool at the other end).

    Each request {"op": name, "args": {...}} is answered by `await self.op_<name>(**args)`,
    or by {"error", "tb"} when that raises; "quit" (or the parent gone) calls shutdown().
    """

    def __init__(self, conn):
        self.conn = conn

    async def serve(self) -> None:
        for _ in range(1_000_000):  # commands; a run sends a few thousand at most
            try:
                request = await asyncio.to_thread(self.conn.recv)
            except (EOFError, OSError):
                break  # the parent is gone
            op = request["op"]
            if op == "quit":
                await self.shutdown()
                with contextlib.suppress(Exception):
                    self.conn.send({"ok": True})
                return
            try:
                reply = await getattr(self, "op_" + op)(**request.get("args", {}))
            except Exception as exc:  # report, never hang the parent
                reply = {"error": f"{type(exc).__name__}: {exc}", "tb": traceback.format_exc()}
            self.conn.send(reply)
        await self.shutdown()

    async def shutdown(self) -> None:
        """Stop and close everything: on "quit", or when the parent is gone."""


def run_loop(main) -> None:
    """Run the coroutine `main` on uvloop when it is installed, else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


class Worker(PipeWorker):
    def __init__(self, conn):
        super().__init__(conn)
        self.sockets: list[Sock] = []
        self.buf: list = []
        self.next_seq: dict[int, int] = {}
        self.cpu0 = 0.0
        self.wall0 = 0

    async def shutdown(self) -> None:
        await self.op_close(limit_s=5)

    # --- reading -------------------------------------------------------------

    async def watch(self, sock: Sock) -> None:
        """Note the close code when the server closes the socket."""
        try:
            await sock.ws.wait_closed()
        finally:
            sock.closed = sock.ws.close_code or 1006

    # --- commands ------------------------------------------------------------------

    async def op_connect(
        self,
        specs: list[dict],
        concurrency: int,
        hello: bool,
        open_s: float,
        start_ns: int = 0,
    ):
        """Open sockets; `hello`: the first frame must be our server's hello.

        concurrency 0 opens every socket at once, at start_ns (the same moment in every
        client process); times run from each socket's TCP connect to its hello.
        """
        gate = asyncio.Semaphore(concurrency or len(specs) or 1)
        times: list[int] = []
        errors: Counter = Counter()
        now = time.monotonic_ns()
        if start_ns > now:
            await asyncio.sleep((start_ns - now) / 1e9)
        started = time.monotonic_ns()
        cpu0 = cpu_seconds()

        async def one(spec: dict) -> None:
            async with gate:
                t0 = time.monotonic_ns()
                ws = None
                try:
                    ws = await connect(
                        spec["url"],
                        origin=spec.get("origin"),
                        additional_headers=spec.get("headers"),
                        compression=None,
                        open_timeout=open_s,
                        ping_interval=None,
                        close_timeout=2,
                        max_size=2**22,
                        max_queue=4096,
                        user_agent_header=None,
                        create_connection=FastConnection,
                        # No proxy: reading the proxy variables from the environment took
                        # half of the client's CPU per handshake in a connect storm.
                        proxy=None,
                    )
                    if hello:
                        async with asyncio.timeout(open_s):
                            first = await ws.recv()
                        kind = orjson.loads(first).get("type")
                        if kind != "hello":
                            raise RuntimeError(f"first frame was {kind!r}, not hello")
                except Exception as exc:
                    errors[f"{type(exc).__name__}: {exc}"[:200]] += 1
                    if ws is not None:
                        await ws.close()
                    return
                times.append(time.monotonic_ns() - t0)
                sock = Sock(ws, spec["room"], spec.get("sid"))
                self.sockets.append(sock)
                ws.index = len(self.sockets) - 1
                ws.sink = self.buf
                sock.reader = asyncio.create_task(self.watch(sock))

        await asyncio.gather(*(one(spec) for spec in specs))
        wall_ns = time.monotonic_ns() - started
        self.buf.clear()
        return {
            "connected": len(times),
            "rooms": dict(Counter(s.room for s in self.sockets)),
            "failed": sum(errors.values()),
            "errors": errors.most_common(MAX_ERRORS),
            "connect_ns": times,
            "start_ns": started,
            "wall_ns": wall_ns,
            "cpu_pct": 100 * (cpu_seconds() - cpu0) / (wall_ns / 1e9) if wall_ns else None,
        }

    async def op_status(self):
        """How many sockets are open, and the close codes of those that are not."""
        codes = Counter(s.closed for s in self.sockets if s.closed is not None)
        self.buf.clear()
        return {"open": sum(1 for s in self.sockets if s.closed is None), "closed": dict(codes)}

    async def op_run(
        self, start_ns: int, duration: float, rates: dict, offsets: dict, proto: str, tag: str
    ):
        """Send from each sender socket at its rate, from start_ns, for duration seconds.

        Every process watches its own CPU and loop lag over the sending window.
        """
        self.buf.clear()
        self.cpu0 = cpu_seconds()
        self.wall0 = time.monotonic_ns()
        monitor = Monitor(start_ns, start_ns + int(duration * 1e9))
        senders = [s for s in self.sockets if s.sid is not None and s.sid in rates]
        results = await asyncio.gather(
            *(
                self.send_loop(s, rates[s.sid], offsets[s.sid], start_ns, duration, proto, tag)
                for s in senders
            )
        )
        return {
            "sent": {sid: (first, count) for sid, first, count, _ in results},
            "planned": sum(max(1, round(rates[s.sid] * duration)) for s in senders),
            "behind_ms": max((b for *_, b in results), default=0) / 1e6,
            "monitor": await monitor.result(),
        }

    async def send_loop(
        self,
        sock: Sock,
        rate: float,
        offset: float,
        start_ns: int,
        duration: float,
        proto: str,
        tag: str,
    ):
        count = max(1, round(rate * duration))
        interval = 1e9 / rate
        first = self.next_seq.get(sock.sid, 0)
        hard_end = start_ns + int((duration + 5) * 1e9)  # never send long after the window
        ws, sid = sock.ws, sock.sid
        sent = 0
        behind = 0
        for k in range(count):
            target = start_ns + int((k + offset) * interval)
            now = time.monotonic_ns()
            if now < target:
                await asyncio.sleep((target - now) / 1e9)
                now = time.monotonic_ns()
            else:
                behind = max(behind, now - target)
            if now > hard_end or sock.closed is not None:
                break
            seq = first + k
            text = f"{sid}:{seq}:{target}"  # the scheduled time: lateness counts as latency
            if proto == "ours":
                frame = (
                    f'{{"type":"chat.message","message":"{text}","client_id":"{tag}-{sid}-{seq}"}}'
                )
            else:
                frame = f'{{"message":"{text}"}}'
            try:
                await ws.send(frame)
            except ConnectionClosed:
                break
            sent += 1
        self.next_seq[sid] = first + sent
        return sid, first, sent, behind

    async def op_collect(self, expected: dict, deadline_ns: int, proto: str):
        """Count what arrived against what was sent; wait until complete or deadline.

        expected: room -> [(sid, first_seq, count), ...] of this phase.
        """
        want = {
            room: {
                f"{sid}:{seq}" for sid, first, count in items for seq in range(first, first + count)
            }
            for room, items in expected.items()
        }
        got = [set() for _ in self.sockets]
        rooms = [s.room for s in self.sockets]
        missing = sum(len(want.get(room, ())) for room in rooms)
        # First wait without parsing, so that parsing does not delay (and so
        # inflate the receive time of) frames still arriving: until as many
        # frames as expected are in, nothing new came for 0.5 s, or the deadline.
        quiet_since, seen_len = time.monotonic_ns(), -1
        while time.monotonic_ns() < deadline_ns and len(self.buf) < missing:
            if len(self.buf) != seen_len:
                seen_len, quiet_since = len(self.buf), time.monotonic_ns()
            elif time.monotonic_ns() - quiet_since > 500_000_000:
                break
            await asyncio.sleep(0.05)
        # This process's CPU while sending and receiving, before parsing.
        busy_cpu = cpu_seconds() - self.cpu0
        busy_wall = (time.monotonic_ns() - self.wall0) / 1e9
        lat = array("q")
        sent_at = array("q")  # each delivery's scheduled send time (monotonic ns)
        dup = stray = other = 0
        first_recv = last_recv = 0
        pos = 0
        ours = proto == "ours"
        loads = orjson.loads
        while True:
            buf = self.buf
            end = len(buf)
            for i in range(pos, end):
                if i % 20000 == 19999:
                    await asyncio.sleep(0)  # let the readers stamp what arrives meanwhile
                idx, t, raw = buf[i]
                frame = loads(raw)
                if ours and frame.get("type") != "chat.message":
                    other += 1
                    continue
                text = frame["message"]
                cut = text.rfind(":")
                key = text[:cut]
                room_want = want.get(rooms[idx])
                if room_want is None or key not in room_want:
                    stray += 1
                    continue
                seen = got[idx]
                if key in seen:
                    dup += 1
                    continue
                seen.add(key)
                missing -= 1
                scheduled = int(text[cut + 1 :])
                lat.append((t - scheduled) // 1000)
                sent_at.append(scheduled)
                if not first_recv or t < first_recv:
                    first_recv = t
                if t > last_recv:
                    last_recv = t
            pos = end
            if missing <= 0 or time.monotonic_ns() >= deadline_ns:
                break
            await asyncio.sleep(0.05)
        self.buf.clear()
        closed = Counter(s.closed for s in self.sockets if s.closed is not None)
        return {
            "received": len(lat),
            "lost": missing,
            "dup": dup,
            "stray": stray,
            "other": other,
            "lat_us": lat.tobytes(),
            "sent_ns": sent_at.tobytes(),
            "first_recv_ns": first_recv,
            "last_recv_ns": last_recv,
            "cpu_s": busy_cpu,
            "wall_s": busy_wall,
            "cpu_total_s": cpu_seconds() - self.cpu0,
            "closed": dict(closed),
        }

    async def op_close(self, limit_s: float = 15):
        socks, self.sockets = self.sockets, []
        if socks:
            gate = asyncio.Semaphore(200)

            async def close(sock: Sock) -> None:
                async with gate:
                    await sock.ws.close()

            try:
                async with asyncio.timeout(limit_s):
                    await asyncio.gather(*(close(s) for s in socks), return_exceptions=True)
            except TimeoutError:
                pass
            for sock in socks:
                if sock.reader is not None:
                    sock.reader.cancel()
            await asyncio.gather(*(s.reader for s in socks if s.reader), return_exceptions=True)
        self.buf.clear()
        return {"closed": len(socks)}


def worker_main(conn) -> None:
    """Entry point of a load-client process."""
    run_loop(Worker(conn).serve())
