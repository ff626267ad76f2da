"""Sockets against the real ASGI application (auth, Origin check, routing),
and the people and room that most chatrooms tests share.

`alice`, `bob` and `room` live here once; a module that needs other fields
(another room, members from the start) defines its own, which wins there.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from chatrooms.presence import MemoryPresence, RedisPresence
from tests.conftest import redis_layer_settings

ORIGIN = b"http://localhost"


@pytest.fixture(params=["memory", "redis"])
def layer(request, settings):
    """Run the test on the in-memory layer, then on a real Redis (layer, presence, limits)."""
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        settings.CHANNEL_LAYERS = redis_layer_settings(url)
        settings.REDIS_URL = url
    else:
        settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
        settings.REDIS_URL = ""
    return request.param


@pytest.fixture(autouse=True)
def _fresh_connect_caches():
    """No test meets another's cached sessions, rooms or room histories
    (chatrooms/access.py, Hub.recent_page): ids and slugs repeat across tests."""
    from chatrooms.hub import hub

    hub.forget_caches()
    yield
    hub.forget_caches()


@pytest.fixture
def alice(user_factory):
    """The owner of `room`, with a display name (shown instead of her username)."""
    return user_factory(username="alice", display_name="Alice Liddell")


@pytest.fixture
def bob(user_factory):
    """No display name: shown by his username."""
    return user_factory(username="bob")


@pytest.fixture
def room(room_factory, alice):
    """alice's public room "General", at /chats/general/."""
    return room_factory("General", owner=alice, slug="general", topic="Anything")


async def eventually(condition, *, timeout: float = 5, what: str = "") -> None:
    """Wait until `condition()` (a function, plain or async) is true; fail after `timeout` s.

    For what the code under test does in its own time (a writer task, a
    keep-alive round, a Redis reader): the condition itself is checked every
    20 ms, so a passing test waits no longer than it has to. Not a sleep.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() >= deadline:
            pytest.fail(f"not within {timeout:g} s: {what or condition}")
        await asyncio.sleep(0.02)


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


class Socket:
    """A WebsocketCommunicator that speaks JSON."""

    def __init__(self, communicator: WebsocketCommunicator):
        self.communicator = communicator

    async def send(self, frame) -> None:
        text = frame if isinstance(frame, str) else json.dumps(frame)
        # send_input, not send_to: an empty text frame is a frame too.
        await self.communicator.send_input({"type": "websocket.receive", "text": text})

    async def recv(self, timeout: float = 3) -> dict:
        return json.loads(await self.communicator.receive_from(timeout=timeout))

    async def recv_type(self, kind: str, timeout: float = 3) -> dict:
        """The next frame of that type, skipping presence and typing noise."""
        while True:
            frame = await self.recv(timeout)
            if frame["type"] == kind:
                return frame
            assert frame["type"] in {"presence", "typing"}, frame

    async def nothing(self, timeout: float = 0.3) -> bool:
        return await self.communicator.receive_nothing(timeout=timeout)

    async def close(self) -> None:
        await self.communicator.disconnect()


async def open_socket(user, slug: str, *, origin=ORIGIN, query: str = "", cookie=None):
    """Connect as `user` (None: anonymous); returns (accepted, Socket or close code)."""
    from project.asgi import application

    headers = [(b"host", b"localhost")] + ([(b"origin", origin)] if origin else [])
    if user is not None:
        value = cookie or await database_sync_to_async(session_cookie)(user)
        headers.append((b"cookie", f"sessionid={value}".encode()))
    path = f"/ws/chat/{slug}/" + (f"?{query}" if query else "")
    communicator = WebsocketCommunicator(application, path, headers=headers)
    accepted, detail = await communicator.connect(timeout=5)
    if not accepted:
        await communicator.wait(timeout=1)
        return False, detail
    return True, Socket(communicator)


@pytest.fixture
async def connect():
    """connect(user, room) -> (Socket, hello); fails the test if refused."""
    opened: list[Socket] = []

    async def _connect(user, room, **kwargs):
        slug = room if isinstance(room, str) else room.slug
        accepted, sock = await open_socket(user, slug, **kwargs)
        assert accepted, f"refused: {sock}"
        opened.append(sock)
        hello = await sock.recv_type("hello")
        return sock, hello

    yield _connect
    for sock in opened:
        try:
            await sock.close()
        except Exception:  # already closed by the test or the server
            pass


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def store(request, settings):
    """A presence store, each test twice: the in-process one, then the Redis one."""
    if request.param == "redis":
        settings.REDIS_URL = request.getfixturevalue("redis_url")
        return RedisPresence()
    settings.REDIS_URL = ""
    return MemoryPresence()
