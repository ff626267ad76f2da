"""Two server processes sharing the database and Redis, as in docs/deploy.md:
messages and presence cross between them, and a killed process's users
leave within the presence bound while its clients catch up elsewhere."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

from tests.live import Browserless, fresh_database, recv_json, server_env, servers_running

PRESENCE_TIMEOUT = 6  # seconds; production default is 30


@pytest.fixture
def cluster(tmp_path, redis_url):
    prefix = f"chat-mp-{uuid.uuid4().hex[:10]}"
    with fresh_database(tmp_path) as url:
        env = server_env(url, redis_url, prefix, CHAT_PRESENCE_TIMEOUT=str(PRESENCE_TIMEOUT))
        with servers_running(env, tmp_path) as servers:
            yield servers


async def test_messages_and_presence_cross_processes_and_survive_a_kill(cluster):
    first, second = cluster
    alice = Browserless(first).sign_up("alice")
    bob = Browserless(first).sign_up("bob").moved_to(second)
    carol = Browserless(second).sign_up("carol")
    alice.post_form("/chats/enter/", {"name": "Ops"})

    a = await alice.socket("ops")
    await recv_json(a, "hello")
    b = await bob.socket("ops")
    hello_b = await recv_json(b, "hello")
    assert hello_b["online"] == ["alice", "bob"]  # alice is on the other process
    join = await recv_json(a, "presence")
    assert (join["user"], join["status"]) == ("bob", "join")
    c = await carol.socket("ops")
    await recv_json(c, "hello")
    assert (await recv_json(a, "presence"))["online"] == ["alice", "bob", "carol"]

    # Messages cross both ways.
    await a.send(json.dumps({"type": "chat.message", "message": "from first"}))
    seen_by_bob = await recv_json(b, "chat.message")
    assert seen_by_bob["message"] == "from first"
    await c.send(json.dumps({"type": "chat.message", "message": "from second"}))
    assert (await recv_json(a, "chat.message"))["message"] == "from first"
    assert (await recv_json(a, "chat.message"))["message"] == "from second"
    last_seen_by_bob = (await recv_json(b, "chat.message"))["id"]

    # kill -9 the second process: no disconnect handler runs there.
    killed_at = time.monotonic()
    second.kill()
    left = set()
    while left != {"bob", "carol"}:
        frame = await recv_json(a, "presence", timeout=PRESENCE_TIMEOUT * 2 + 5)
        assert frame["status"] == "leave"
        left.add(frame["user"])
    waited = time.monotonic() - killed_at
    assert waited <= PRESENCE_TIMEOUT + PRESENCE_TIMEOUT / 3 + 2, waited
    assert frame["online"] == ["alice"]

    # Alice goes on talking while bob's process is dead.
    sent = []
    for n in range(5):
        await a.send(
            json.dumps({"type": "chat.message", "message": f"meanwhile {n}", "client_id": f"m{n}"})
        )
        sent.append((await recv_json(a, "chat.message"))["id"])

    # Bob's client reconnects to the surviving process and catches up.
    bob_again = bob.moved_to(first)
    b2 = await bob_again.socket("ops", query=f"after={last_seen_by_bob}")
    hello = await recv_json(b2, "hello")
    assert hello["truncated"] is False
    ids = [m["id"] for m in hello["messages"] if m["type"] == "chat.message"]
    assert ids == sent  # every message stored meanwhile, none twice, in order
    assert [m["message"] for m in hello["messages"]] == [f"meanwhile {n}" for n in range(5)]
    rejoin = await recv_json(a, "presence")
    assert (rejoin["user"], rejoin["status"]) == ("bob", "join")
    for ws in (a, b2):
        await ws.close()
        await asyncio.wait_for(ws.wait_closed(), 5)


async def test_sign_out_on_one_process_closes_the_socket_on_the_other(cluster):
    first, second = cluster
    dana = Browserless(first).sign_up("dana")
    dana.post_form("/chats/enter/", {"name": "Quiet"})
    ws = await dana.moved_to(second).socket("quiet")
    await recv_json(ws, "hello")
    status, _ = dana.post_form("/accounts/logout/", {}, page="/accounts/logout/")
    assert status == 200
    assert (await recv_json(ws, "closed")) == {"type": "closed", "reason": "signed_out"}
    await asyncio.wait_for(ws.wait_closed(), 5)
    assert ws.close_code == 4403
