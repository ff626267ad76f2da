"""The real thing: daphne over real sockets, people signed in through the forms."""

from __future__ import annotations

import json

import pytest
import websockets

from tests.live import Browserless, Server, fresh_database, recv_json, server_env


@pytest.fixture(scope="module", params=["daphne", "uvicorn"])
def live(request, tmp_path_factory):
    """One server process (daphne, the development server, and uvicorn, the
    production one) on the embedded default (or CI's PostgreSQL), no Redis."""
    tmp = tmp_path_factory.mktemp("live")
    with fresh_database(tmp) as url:
        server = Server(server_env(url), log=tmp / "server.log", kind=request.param).start()
        try:
            yield server
        finally:
            server.stop()


async def test_two_people_chat_through_daphne(live):
    alice = Browserless(live).sign_up("alice")
    bob = Browserless(live).sign_up("bob")
    status, where = alice.post_form("/chats/enter/", {"name": "Live Room"})
    assert status == 200 and where.endswith("/chats/live-room/")
    async with await alice.socket("live-room") as a, await bob.socket("live-room") as b:
        hello = await recv_json(a, "hello")
        assert hello["user"]["username"] == "alice"
        await recv_json(b, "hello")
        await a.send(
            json.dumps(
                {
                    "type": "chat.message",
                    "message": "hi <b>bob</b>",
                    "client_id": "x1",
                    "user": "bob",
                }
            )
        )
        frame = await recv_json(b, "chat.message")
        assert frame["user"] == "alice" and frame["message"] == "hi <b>bob</b>"
        await b.send("garbage")
        assert (await recv_json(b, "error"))["code"] == "bad_json"
        await b.send(json.dumps({"type": "ping"}))
        assert (await recv_json(b, "pong"))["type"] == "pong"
        # The room page a browser would open lists the stored message's room.
        status, page = bob.get("/chats/")
        assert status == 200 and "Live Room" in page


async def test_handshake_refused_without_session_or_with_foreign_origin(live):
    alice = Browserless(live).sign_up("carol")
    alice.post_form("/chats/enter/", {"name": "Guarded"})
    anonymous = Browserless(live)
    with pytest.raises(websockets.InvalidStatus) as refused:
        await anonymous.socket("guarded")
    assert refused.value.response.status_code == 403
    with pytest.raises(websockets.InvalidStatus) as refused:
        await alice.socket("guarded", origin="http://evil.example")
    assert refused.value.response.status_code == 403


async def test_frame_over_64_kib_closes_the_real_socket_with_1009(live):
    dave = Browserless(live).sign_up("dave")
    dave.post_form("/chats/enter/", {"name": "Big"})
    async with await dave.socket("big") as ws:
        await recv_json(ws, "hello")
        await ws.send(json.dumps({"message": "x" * 70000}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await ws.recv()
        assert closed.value.rcvd.code == 1009


async def test_static_files_and_pages_are_served(live):
    erin = Browserless(live).sign_up("erin")
    for path in ("/static/chat/chat.js", "/static/vendor/bootstrap/bootstrap.min.css"):
        status, _ = erin.get(path)
        assert status == 200, path


@pytest.mark.parametrize(
    "path",
    [
        "/ws/nope/",
        "/ws/chat/caf%C3%A9/",  # a non-ASCII slug
        "/ws/chat/general/extra/",
        "/ws/chat//",
        "/ws/chat/" + "x" * 101 + "/",
    ],
)
async def test_a_path_that_is_no_chat_socket_is_refused_cleanly(live, path):
    """403 at the handshake, where Channels' router answered 500 with a traceback."""
    frank = Browserless(live).sign_up(f"frank{abs(hash(path)) % 100_000}")
    status, where = frank.post_form("/chats/enter/", {"name": "Paths"})
    assert status == 200
    before = live.log_path.stat().st_size
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(
            live.ws_base + path,
            origin=websockets.Origin(live.base),
            additional_headers={"Cookie": frank.cookie_header},
        )
    assert refused.value.response.status_code == 403
    async with await frank.socket(where.rstrip("/").rsplit("/", 1)[-1]) as ws:
        assert (await recv_json(ws, "hello"))["user"]["username"].startswith("frank")
    written = live.log_path.read_bytes()[before:].decode(errors="replace")
    assert "Traceback" not in written and " 500" not in written
