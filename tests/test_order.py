"""Strict per-room order across processes (chatrooms/writer.py): two uvicorn
processes sharing PostgreSQL and Redis, senders on both hammering one room,
readers on both that drop their socket at random and reconnect with
`after=<the last id they have>` to either process. Every reader must end
with every stored message, once, and must never receive a message older
than one it already has (which is what would make `after` skip it)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import uuid

import psycopg
import pytest

from tests.live import Browserless, fresh_database, recv_json, server_env, servers_running

SENDERS = 4  # two per process
PER_SENDER = 100
READERS = 6  # three per process


@pytest.fixture
def cluster(tmp_path, redis_url):
    configured = os.environ.get("DATABASE_URL", "")
    if not configured.startswith(("postgres://", "postgresql://")):
        reason = "the order lock is PostgreSQL's; CI runs this with DATABASE_URL on PostgreSQL"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)
    prefix = f"chat-order-{uuid.uuid4().hex[:10]}"
    with fresh_database(tmp_path) as url:
        env = server_env(url, redis_url, prefix, CHAT_RATE_LIMIT="0", CHAT_USER_RATE_LIMIT="0")
        with servers_running(env, tmp_path, kind="uvicorn") as servers:
            yield servers, url


class Reader:
    """A client that keeps what it received, as the page does, and reconnects at random."""

    def __init__(self, person: Browserless, servers, rng: random.Random):
        self.person, self.servers, self.rng = person, servers, rng
        self.ids: list[int] = []
        self.seen: set[int] = set()
        self.out_of_order: list[tuple[int, int]] = []
        self.reconnects = 0

    def take(self, frame: dict) -> None:
        if frame["type"] != "chat.message" or frame["id"] in self.seen:
            return  # a repeat (at least once) is dropped by id, as the page does
        if self.ids and frame["id"] < self.ids[-1]:
            self.out_of_order.append((self.ids[-1], frame["id"]))
        self.ids.append(frame["id"])
        self.seen.add(frame["id"])

    async def run(self, until: asyncio.Event, total: int) -> None:
        while True:
            server = self.rng.choice(self.servers)
            query = f"after={self.ids[-1]}" if self.ids else ""
            ws = await self.person.moved_to(server).socket("race", query)
            try:
                hello = await recv_json(ws, "hello", timeout=10)
                for frame in hello["messages"]:
                    self.take(frame)
                stay = self.rng.uniform(0.05, 0.5)
                loop = asyncio.get_running_loop()
                deadline = loop.time() + stay
                while until.is_set() or loop.time() < deadline:
                    if until.is_set() and len(self.ids) >= total:
                        return
                    waiting_for_the_rest = until.is_set()
                    try:
                        async with asyncio.timeout(10 if waiting_for_the_rest else 0.1):
                            self.take(json.loads(await ws.recv()))
                    except TimeoutError:
                        if waiting_for_the_rest:  # 10 s and still short of the total
                            raise
            finally:
                await ws.close()
            self.reconnects += 1


async def test_two_processes_one_room_every_reader_gets_every_message_once_in_order(cluster):
    cluster, database_url = cluster
    first = cluster[0]
    owner = Browserless(first).sign_up("owner")
    owner.post_form("/chats/enter/", {"name": "Race"})
    senders = [Browserless(cluster[n % 2]).sign_up(f"sender{n}") for n in range(SENDERS)]
    readers_people = [Browserless(first).sign_up(f"reader{n}") for n in range(READERS)]
    # A first message, so that every reader has an id to reconnect `after`
    # (a reader with none would get only the latest page, as a fresh page does).
    ws = await owner.socket("race")
    await recv_json(ws, "hello")
    await ws.send(json.dumps({"type": "chat.message", "message": "start", "client_id": "s"}))
    await recv_json(ws, "chat.message")
    await ws.close()
    rng = random.Random(12)
    readers = [Reader(person, cluster, random.Random(rng.random())) for person in readers_people]
    total = SENDERS * PER_SENDER + 1
    drained = asyncio.Event()
    reading = [asyncio.create_task(r.run(drained, total)) for r in readers]
    await asyncio.sleep(0.3)

    async def send_all(n: int, person: Browserless) -> None:
        ws = await person.socket("race")
        await recv_json(ws, "hello")
        for burst in range(0, PER_SENDER, 10):
            for i in range(burst, burst + 10):
                frame = {"type": "chat.message", "message": f"{n}:{i}", "client_id": f"{n}-{i}"}
                await ws.send(json.dumps(frame))
            await asyncio.sleep(rng.uniform(0.1, 0.4))
        mine = 0  # wait for the echo of every message: all stored
        while mine < PER_SENDER:
            frame = await recv_json(ws, "chat.message", timeout=20)
            mine += frame["user"] == f"sender{n}"
        await ws.close()

    await asyncio.gather(*(send_all(n, person) for n, person in enumerate(senders)))
    drained.set()
    done, pending = await asyncio.wait(reading, timeout=60)
    for task in pending:
        task.cancel()
    failed = [task.exception() for task in done if task.exception() is not None]
    assert not pending and not failed, (
        failed,
        [len(r.ids) for r in readers],
        [server.log_path.read_text()[-2000:] for server in cluster],
    )

    with psycopg.connect(database_url) as conn:
        stored = [row[0] for row in conn.execute("SELECT id FROM chatrooms_message ORDER BY id")]
    assert len(stored) == total
    for reader in readers:
        assert reader.out_of_order == [], reader.out_of_order[:5]
        assert reader.ids == stored  # every message, once, in id order
    assert sum(r.reconnects for r in readers) >= READERS * 4  # the reconnects happened
