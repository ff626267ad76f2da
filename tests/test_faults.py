"""The fault-injection tools themselves: a private Redis that dies, a proxy that cuts and hangs."""

# Fixtures imported from tests.faults are "redefined" by the test parameters that request them.
# ruff: noqa: F811

from __future__ import annotations

import socket
import threading
import time

import psycopg
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.faults import RedisServer, TcpProxy, free_port, own_redis, pg_proxy  # noqa: F401


def _redis_client(url: str) -> redis.Redis:
    # No retries: a dead server must fail the call at once, not after seconds of backoff.
    return redis.Redis.from_url(url, socket_timeout=2, retry=Retry(NoBackoff(), 0))


def _wait_for(condition, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


class _EchoServer:
    """A plain TCP echo server on a thread, as a proxy target that is not PostgreSQL."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self.port = self.listener.getsockname()[1]
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket):
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError as exc:
                self.errors.append(exc)

    def close(self):
        self.listener.close()


@pytest.fixture
def echo_server():
    server = _EchoServer()
    yield server
    server.close()


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def test_redis_server_kill_loses_data_and_restart_keeps_port(own_redis):
    client = _redis_client(own_redis.url)
    client.set("fault-key", "value")
    port = own_redis.port

    own_redis.kill()
    assert not own_redis.running
    with pytest.raises(redis.ConnectionError):
        client.get("fault-key")

    own_redis.restart()
    assert own_redis.running
    assert own_redis.port == port
    assert own_redis.url == f"redis://127.0.0.1:{port}/0"
    # The same client reconnects: its broken connection was dropped by the failed call.
    assert client.get("fault-key") is None
    assert client.ping()
    client.close()


def test_redis_server_restart_while_running_drops_connections_and_data(own_redis):
    client = _redis_client(own_redis.url)
    client.set("fault-key", "value")
    raw = socket.create_connection(("127.0.0.1", own_redis.port), timeout=2)

    own_redis.restart()

    try:
        assert raw.recv(1) == b""
    except ConnectionResetError:
        pass
    raw.close()
    # redis-py notices the dead pooled connection when it takes it out, and reconnects.
    assert client.get("fault-key") is None
    client.close()


def test_redis_server_context_manager_stops_and_stop_is_idempotent(tmp_path):
    with RedisServer(tmp_path) as server:
        assert server.running
        assert _redis_client(server.url).ping()
        assert (tmp_path / f"redis-{server.port}.log").exists()
    assert not server.running
    server.stop()
    with pytest.raises(redis.ConnectionError):
        _redis_client(server.url).ping()
    assert not list(tmp_path.glob("*.rdb")) and not list(tmp_path.glob("appendonly*"))


def test_redis_server_explicit_port_is_used(tmp_path):
    port = free_port()
    with RedisServer(tmp_path, port=port) as server:
        assert server.port == port
        assert _redis_client(f"redis://127.0.0.1:{port}/0").ping()


def test_tcp_proxy_url_for_replaces_host_and_port_only():
    proxy = TcpProxy("db.example", 5432, port=15432)
    assert (
        proxy.url_for("postgres://user:secret@db.example:5432/chat?sslmode=disable")
        == "postgres://user:secret@127.0.0.1:15432/chat?sslmode=disable"
    )
    assert proxy.url_for("postgresql://db/chat") == "postgresql://127.0.0.1:15432/chat"
    assert proxy.url_for("redis://:pw@[::1]:6379/0") == "redis://:pw@127.0.0.1:15432/0"


def test_tcp_proxy_forwards_many_connections_and_large_payloads(echo_server):
    with TcpProxy("127.0.0.1", echo_server.port) as proxy:
        clients = [
            socket.create_connection(("127.0.0.1", proxy.port), timeout=5) for _ in range(300)
        ]
        try:
            for i, sock in enumerate(clients):
                sock.sendall(f"hello {i}\n".encode())
            for i, sock in enumerate(clients):
                expected = f"hello {i}\n".encode()
                assert _recv_exactly(sock, len(expected)) == expected
            assert proxy.connections == 300

            # Larger than the proxy's buffers: forwarding must apply backpressure, not stall.
            payload = bytes(range(256)) * 16384
            sender = threading.Thread(target=clients[0].sendall, args=(payload,))
            sender.start()
            assert _recv_exactly(clients[0], len(payload)) == payload
            sender.join(5)
        finally:
            for sock in clients:
                sock.close()
        assert _wait_for(lambda: proxy.connections == 0)
    assert not echo_server.errors


def test_tcp_proxy_cut_resets_both_sides(echo_server):
    with TcpProxy("127.0.0.1", echo_server.port) as proxy:
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        sock.sendall(b"ping")
        assert _recv_exactly(sock, 4) == b"ping"

        proxy.cut()

        assert proxy.connections == 0
        with pytest.raises(ConnectionResetError):
            sock.recv(10)
        sock.close()
        assert _wait_for(
            lambda: any(isinstance(e, ConnectionResetError) for e in echo_server.errors)
        )


def test_tcp_proxy_stop_is_idempotent_and_joins_its_thread(echo_server):
    proxy = TcpProxy("127.0.0.1", echo_server.port).start()
    thread = proxy._thread
    proxy.stop()
    proxy.stop()
    assert not thread.is_alive()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=1)


def test_tcp_proxy_forwards_postgres_queries(pg_proxy, postgres_url):
    with psycopg.connect(pg_proxy.url_for(postgres_url), connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.info.port == pg_proxy.port
        assert pg_proxy.connections == 1
    assert _wait_for(lambda: pg_proxy.connections == 0)


def test_tcp_proxy_cut_breaks_postgres_and_restore_heals(pg_proxy, postgres_url):
    url = pg_proxy.url_for(postgres_url)
    port = pg_proxy.port
    conn = psycopg.connect(url, connect_timeout=5, autocommit=True)
    assert conn.execute("SELECT 1").fetchone() == (1,)

    pg_proxy.cut()

    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    conn.close()
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError, match="refused"):
        psycopg.connect(url, connect_timeout=5)
    assert time.monotonic() - started < 2

    pg_proxy.restore()

    assert pg_proxy.port == port
    with psycopg.connect(url, connect_timeout=5) as conn:
        assert conn.execute("SELECT 2").fetchone() == (2,)


def test_tcp_proxy_hang_times_out_postgres_and_restore_heals(pg_proxy, postgres_url):
    url = pg_proxy.url_for(postgres_url)
    before = psycopg.connect(url, connect_timeout=5, autocommit=True)
    results = []

    pg_proxy.hang()

    # A query on a connection opened before the hang gets no answer...
    query = threading.Thread(
        target=lambda: results.append(before.execute("SELECT 3").fetchone()), daemon=True
    )
    query.start()
    query.join(0.5)
    assert query.is_alive()
    # ...and a new connection is accepted but never answered (psycopg's minimum is 2 s).
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError, match="timeout"):
        psycopg.connect(url, connect_timeout=1)
    assert time.monotonic() - started >= 0.9

    pg_proxy.restore()

    # The partition heals: the waiting query completes, and new connections work.
    query.join(5)
    assert results == [(3,)]
    before.close()
    with psycopg.connect(url, connect_timeout=5) as conn:
        assert conn.execute("SELECT 4").fetchone() == (4,)
