"""Fault injection for reliability tests: a private Redis to kill, a TCP proxy to cut or hang.

The shared PostgreSQL and Redis are never touched: faults are injected by starting our own
redis-server on a free port, and by putting our own proxy in front of PostgreSQL.
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import re
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

REDIS_BINARY = "redis-server"
START_TIMEOUT = 10.0
REBIND_TIMEOUT = 5.0
# Longer than REBIND_TIMEOUT: restore() may wait that long for its port.
CONTROL_TIMEOUT = 10.0
# Per direction: past this the proxy stops reading, so a slow reader slows the writer.
BUFFER_LIMIT = 256 * 1024
CHUNK = 64 * 1024


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _reset(sock: socket.socket | None) -> None:
    """Close with RST rather than FIN, so that the peer sees ECONNRESET."""
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _redis_pid(port: int) -> int | None:
    """The process id of the Redis answering PING on `port`, or None if none answers."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\nINFO server\r\n")
            reply = b""
            while not (match := re.search(rb"process_id:(\d+)\r\n", reply)):
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                reply += chunk
    except OSError:
        return None
    return int(match[1]) if reply.startswith(b"+PONG") else None


class RedisServer:
    """A private redis-server on a free port, nothing on disk: kill it, restart it on that port."""

    def __init__(self, tmp_path: Path, port: int | None = None):
        self.tmp_path = Path(tmp_path)
        self._auto_port = port is None
        self.port = port or free_port()
        self._proc: subprocess.Popen | None = None
        self._started_once = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.tmp_path / f"redis-{self.port}.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _command(self) -> list[str]:
        return [
            REDIS_BINARY,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.tmp_path),
            "--logfile", str(self.log_path),
        ]  # fmt: skip

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-15:])
        except OSError:
            return "(no log)"

    def start(self) -> RedisServer:
        if self.running:
            return self
        self.tmp_path.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            while self._proc.poll() is None and time.monotonic() < deadline:
                # The pid check: another server on this port must not pass for ours.
                if _redis_pid(self.port) == self._proc.pid:
                    self._started_once = True
                    return self
                time.sleep(0.02)
            if self._proc.poll() is None:
                self.stop()
                raise RuntimeError(
                    f"redis-server on port {self.port} did not answer PING within "
                    f"{START_TIMEOUT:.0f} s:\n{self._log_tail()}"
                )
            # It exited: most likely the port is taken (by another process, or not yet
            # released). An auto-chosen port that never served may simply move elsewhere.
            tail = self._log_tail()
            self._proc = None
            if time.monotonic() >= deadline:
                raise RuntimeError(f"redis-server on port {self.port} exited:\n{tail}")
            if self._auto_port and not self._started_once:
                self.port = free_port()
            else:
                time.sleep(0.2)

    def kill(self) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._proc.send_signal(signal.SIGKILL)
        self._proc.wait()
        self._proc = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


class _Pair:
    """One proxied connection: the accepted client socket and its upstream socket."""

    __slots__ = ("client", "upstream", "to_client", "to_upstream", "connecting", "held", "eof")

    def __init__(self, client: socket.socket):
        self.client = client
        self.upstream: socket.socket | None = None
        self.to_client = bytearray()
        self.to_upstream = bytearray()
        self.connecting = False
        # Accepted during a hang: never forwarded, reset at restore().
        self.held = False
        # One side closed: flush what was read from it, then close the pair.
        self.eof = False


class TcpProxy:
    """A TCP proxy on 127.0.0.1:<port> in front of host:port, on a thread: cut, hang, restore it."""

    NORMAL, CUT, HANG = "normal", "cut", "hang"

    def __init__(self, target_host: str, target_port: int, port: int | None = None):
        self.target_host = target_host
        self.target_port = target_port
        self._auto_port = port is None
        self.port = port or free_port()
        self.state = self.NORMAL
        # Both sockets of a pair map to it; _live holds each pair once.
        self._pairs: dict[socket.socket, _Pair] = {}
        self._live: set[_Pair] = set()
        self._listener: socket.socket | None = None
        self._selector: selectors.BaseSelector | None = None
        self._thread: threading.Thread | None = None
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._stopping = False
        self._target: tuple | None = None
        self._family = socket.AF_INET

    # Public API: every change runs on the proxy thread, so sockets have one owner.

    @property
    def connections(self) -> int:
        return len(self._live)

    def url_for(self, url: str) -> str:
        parts = urlsplit(url)
        userinfo, at, _ = parts.netloc.rpartition("@")
        netloc = f"{userinfo}{at}127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def start(self) -> TcpProxy:
        if self._thread is not None:
            return self
        info = socket.getaddrinfo(
            self.target_host, self.target_port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )[0]
        self._family, self._target = info[0], info[4]
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        try:
            self._listen()
        except OSError:
            self._wake_r.close()
            self._wake_w.close()
            self._selector.close()
            self._wake_r = self._wake_w = self._selector = None
            raise
        self._stopping = False
        self.state = self.NORMAL
        self._thread = threading.Thread(
            target=self._run, name=f"tcp-proxy-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def cut(self) -> None:
        self._call(self._do_cut)

    def hang(self) -> None:
        self._call(self._do_hang)

    def restore(self) -> None:
        self._call(self._do_restore)

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if thread.is_alive():
            with contextlib.suppress(TimeoutError, RuntimeError):
                self._call(self._do_stop, thread=thread)
            thread.join(timeout=CONTROL_TIMEOUT)
        if thread.is_alive():
            return  # Daemon thread: it cannot outlive the test process.
        self._do_stop()
        for sock in (self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        if self._selector is not None:
            self._selector.close()
        self._wake_r = self._wake_w = self._selector = None

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _call(self, command: Callable[[], None], thread: threading.Thread | None = None) -> None:
        thread = thread or self._thread
        if thread is None or not thread.is_alive():
            raise RuntimeError("the proxy is not running (call start())")
        done = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                command()
            except BaseException as exc:  # handed back to the caller
                failure.append(exc)
            finally:
                done.set()

        self._commands.put(run)
        with contextlib.suppress(BlockingIOError):
            self._wake_w.send(b"\0")
        if not done.wait(CONTROL_TIMEOUT):
            raise TimeoutError(f"the proxy thread did not run {command.__name__}")
        if failure:
            raise failure[0]

    # Everything below runs on the proxy thread.

    def _listen(self) -> None:
        deadline = time.monotonic() + REBIND_TIMEOUT
        while True:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", self.port))
            except OSError as exc:
                sock.close()
                if exc.errno != errno.EADDRINUSE or time.monotonic() >= deadline:
                    raise
                if self._auto_port:
                    self.port = free_port()
                else:
                    time.sleep(0.1)
                continue
            break
        sock.listen(1024)
        sock.setblocking(False)
        self._listener = sock
        self._selector.register(sock, selectors.EVENT_READ, None)
        # The port is now ours for good: restore() must come back on this one.
        self._auto_port = False

    def _close_listener(self) -> None:
        if self._listener is not None:
            self._selector.unregister(self._listener)
            self._listener.close()
            self._listener = None

    def _run(self) -> None:
        selector = self._selector
        while not self._stopping:
            for key, events in selector.select():
                sock = key.fileobj
                if sock is self._wake_r:
                    self._run_commands()
                elif sock is self._listener:
                    self._accept()
                else:
                    pair = self._pairs.get(sock)
                    if pair is not None:
                        self._service(pair, sock, events)
                if self._stopping:
                    break

    def _run_commands(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wake_r.recv(4096):
                pass
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            command()

    def _accept(self) -> None:
        for _ in range(128):
            try:
                client, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # e.g. EMFILE: the backlog keeps it until the next wake-up
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pair = _Pair(client)
            self._pairs[client] = pair
            self._live.add(pair)
            if self.state == self.HANG:
                pair.held = True
            else:
                self._connect_upstream(pair)
            self._update(pair)

    def _connect_upstream(self, pair: _Pair) -> None:
        upstream = socket.socket(self._family, socket.SOCK_STREAM)
        upstream.setblocking(False)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pair.upstream = upstream
        self._pairs[upstream] = pair
        code = upstream.connect_ex(self._target)
        if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            self._close_pair(pair, reset=True)
            return
        pair.connecting = code != 0

    def _service(self, pair: _Pair, sock: socket.socket, events: int) -> None:
        try:
            if sock is pair.upstream and pair.connecting:
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    raise OSError(code, os.strerror(code))
                pair.connecting = False
            else:
                if events & selectors.EVENT_WRITE:
                    self._flush(pair, sock)
                if events & selectors.EVENT_READ:
                    self._read(pair, sock)
        except OSError:
            self._close_pair(pair, reset=True)
            return
        if pair.eof and not pair.to_client and not pair.to_upstream:
            self._close_pair(pair, reset=False)
            return
        self._update(pair)

    def _read(self, pair: _Pair, sock: socket.socket) -> None:
        try:
            data = sock.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        if not data:
            pair.eof = True
            # Data still owed to the side that closed is of no use to it.
            if sock is pair.client:
                pair.to_client.clear()
            else:
                pair.to_upstream.clear()
            return
        if sock is pair.client:
            pair.to_upstream += data
            self._flush(pair, pair.upstream)
        else:
            pair.to_client += data
            self._flush(pair, pair.client)

    def _flush(self, pair: _Pair, sock: socket.socket) -> None:
        buffer = pair.to_client if sock is pair.client else pair.to_upstream
        while buffer:
            try:
                sent = sock.send(buffer)
            except (BlockingIOError, InterruptedError):
                return
            del buffer[:sent]

    def _interest(self, pair: _Pair, sock: socket.socket) -> int:
        if self.state == self.HANG or pair.held:
            return 0
        if sock is pair.upstream and pair.connecting:
            return selectors.EVENT_WRITE
        outgoing = pair.to_client if sock is pair.client else pair.to_upstream
        incoming = pair.to_upstream if sock is pair.client else pair.to_client
        events = selectors.EVENT_WRITE if outgoing else 0
        if not pair.eof and not pair.connecting and len(incoming) < BUFFER_LIMIT:
            events |= selectors.EVENT_READ
        return events

    def _update(self, pair: _Pair) -> None:
        for sock in (pair.client, pair.upstream):
            if sock is None or sock.fileno() < 0:
                continue
            events = self._interest(pair, sock)
            try:
                key = self._selector.get_key(sock)
            except KeyError:
                key = None
            if key is None:
                if events:
                    self._selector.register(sock, events, None)
            elif not events:
                self._selector.unregister(sock)
            elif key.events != events:
                self._selector.modify(sock, events, None)

    def _close_pair(self, pair: _Pair, *, reset: bool) -> None:
        self._live.discard(pair)
        for sock in (pair.client, pair.upstream):
            if sock is None:
                continue
            self._pairs.pop(sock, None)
            if sock.fileno() >= 0:
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(sock)
            if reset:
                _reset(sock)
            else:
                sock.close()

    def _close_all(self) -> None:
        for pair in list(self._live):
            self._close_pair(pair, reset=True)

    def _do_cut(self) -> None:
        self._close_listener()
        self._close_all()
        self.state = self.CUT

    def _do_hang(self) -> None:
        if self.state == self.CUT:
            self._listen()
        self.state = self.HANG
        for pair in self._live:
            self._update(pair)

    def _do_restore(self) -> None:
        if self.state == self.CUT:
            self._listen()
        elif self.state == self.HANG:
            # Connections that were live before the hang resume, as after a healed
            # partition; the ones accepted during it never reached the target: reset them.
            for pair in list(self._live):
                if pair.held:
                    self._close_pair(pair, reset=True)
        self.state = self.NORMAL
        for pair in self._live:
            self._update(pair)

    def _do_stop(self) -> None:
        if self._selector is not None:
            self._close_listener()
        self._close_all()
        self._stopping = True


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A started private RedisServer, stopped at teardown."""
    if shutil.which(REDIS_BINARY) is None:
        reason = f"the {REDIS_BINARY} binary is not on PATH (install redis-server)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)
    server = RedisServer(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_proxy(postgres_url: str) -> Iterator[TcpProxy]:
    """A started TcpProxy in front of the PostgreSQL of `postgres_url`, stopped at teardown."""
    parsed = urlsplit(postgres_url)
    proxy = TcpProxy(parsed.hostname or "127.0.0.1", parsed.port or 5432).start()
    try:
        yield proxy
    finally:
        proxy.stop()
