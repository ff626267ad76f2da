"""`/healthz`: is this process able to serve? For load balancers and monitors."""

from __future__ import annotations

import asyncio
import uuid

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from django.http import JsonResponse

from chatrooms.hub import hub

CHECK_TIMEOUT = 3.0  # seconds; a hung dependency must not hang the probe


def _database_ok() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def _channel_layer_ok() -> None:
    """A round trip through the layer: send to a fresh channel, receive it back."""
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    channel = await layer.new_channel(prefix="healthz")
    token = uuid.uuid4().hex
    await layer.send(channel, {"type": "healthz", "token": token})
    message = await layer.receive(channel)
    if message.get("token") != token:
        raise RuntimeError("channel layer returned another message")


async def _check(coro) -> str:
    try:
        await asyncio.wait_for(coro, CHECK_TIMEOUT)
    except Exception as exc:  # any failure is a failed check, named in the reply
        return f"error: {type(exc).__name__}"
    return "ok"


async def healthz(request):
    """200 with every check "ok", else 503 naming the failure.

    `subscriptions`: this process's Redis subscription carries its rooms'
    frames (chatrooms/hub.py); "error: ..." while it is down or a room's
    subscription is unconfirmed past its timeout.
    """
    database = await _check(sync_to_async(_database_ok)())
    channel_layer = await _check(_channel_layer_ok())
    problem = hub.problem()
    subscriptions = f"error: {problem}" if problem else "ok"
    checks = {"database": database, "channel_layer": channel_layer, "subscriptions": subscriptions}
    ok = all(value == "ok" for value in checks.values())
    return JsonResponse({"status": "ok" if ok else "error", **checks}, status=200 if ok else 503)
