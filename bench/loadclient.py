"""A load-client process: many WebSocket clients on one asyncio (uvloop) loop.

bench/run.py starts two of these (bench.harness.ClientPool: multiprocessing,
spawn) and drives them over a pipe with small commands:

    connect  open sockets (bounded parallelism), read `hello` on ours, and
             start one reader per socket
    run      send on schedule from the sender sockets for a fixed time
    collect  wait (bounded) until every socket has every message sent in its
             room, then count lost / duplicated / stray and the latencies
    close    close every socket
    quit

Receiving is kept cheap so that the client is not the bottleneck: a reader
only appends (socket, receive time, raw text) to a list; parsing (orjson)
happens after the sending stops. Payload: TEXT = "sender:seq:monotonic_ns";
CLOCK_MONOTONIC is system-wide on Linux, so receive time minus the time in
TEXT is the delivery latency even across processes.

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
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

MAX_ERRORS = 5  # error texts kept per command


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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

    async def read(self, idx: int, sock: Sock) -> None:
        ws = sock.ws
        now = time.monotonic_ns
        try:
            async for raw in ws:
                self.buf.append((idx, now(), raw))
        except ConnectionClosed as exc:
            sock.closed = exc.rcvd.code if exc.rcvd else 1006
        except Exception:
            sock.closed = -1
        else:
            sock.closed = ws.close_code

    # --- commands ------------------------------------------------------------------

    async def op_connect(self, specs: list[dict], concurrency: int, hello: bool, open_s: float):
        """Open sockets; `hello`: the first frame must be our server's hello."""
        gate = asyncio.Semaphore(concurrency)
        times: list[int] = []
        errors: Counter = Counter()
        started = time.monotonic_ns()

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
                sock.reader = asyncio.create_task(self.read(len(self.sockets) - 1, sock))

        await asyncio.gather(*(one(spec) for spec in specs))
        self.buf = []
        return {
            "connected": len(times),
            "rooms": dict(Counter(s.room for s in self.sockets)),
            "failed": sum(errors.values()),
            "errors": errors.most_common(MAX_ERRORS),
            "connect_ns": times,
            "wall_ns": time.monotonic_ns() - started,
        }

    async def op_status(self):
        """How many sockets are open, and the close codes of those that are not."""
        codes = Counter(s.closed for s in self.sockets if s.closed is not None)
        self.buf = []
        return {"open": sum(1 for s in self.sockets if s.closed is None), "closed": dict(codes)}

    async def op_run(
        self, start_ns: int, duration: float, rates: dict, offsets: dict, proto: str, tag: str
    ):
        """Send from each sender socket at its rate, from start_ns, for duration seconds."""
        self.buf = []
        self.cpu0 = cpu_seconds()
        self.wall0 = time.monotonic_ns()
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
            text = f"{sid}:{seq}:{now}"
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
                lat.append((t - int(text[cut + 1 :])) // 1000)
                if not first_recv or t < first_recv:
                    first_recv = t
                if t > last_recv:
                    last_recv = t
            pos = end
            if missing <= 0 or time.monotonic_ns() >= deadline_ns:
                break
            await asyncio.sleep(0.05)
        self.buf = []
        closed = Counter(s.closed for s in self.sockets if s.closed is not None)
        return {
            "received": len(lat),
            "lost": missing,
            "dup": dup,
            "stray": stray,
            "other": other,
            "lat_us": lat.tobytes(),
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
        self.buf = []
        return {"closed": len(socks)}


def worker_main(conn) -> None:
    """Entry point of a load-client process."""
    run_loop(Worker(conn).serve())
