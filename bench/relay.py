"""The bare relay baseline: no Django, no Channels, no storage.

Every text frame received on a path is sent to every socket connected to
that path (the sender included, as in the chat), with websockets.broadcast.
Usage: python bench/relay.py PORT
"""

from __future__ import annotations

import asyncio
import sys
from collections import defaultdict

from websockets.asyncio.server import broadcast, serve

ROOMS: dict[str, set] = defaultdict(set)


async def handler(ws) -> None:
    path = ws.request.path
    members = ROOMS[path]
    members.add(ws)
    try:
        async for frame in ws:
            if isinstance(frame, str):
                broadcast(members, frame)
    finally:
        members.discard(ws)
        if not members:
            ROOMS.pop(path, None)


async def main(port: int) -> None:
    # The listen backlog of uvicorn's default (asyncio's is 100): 1,000 sockets opened at
    # once measure the relay, not SYN retries.
    async with serve(
        handler,
        "127.0.0.1",
        port,
        max_size=65536,
        compression=None,
        max_queue=64,
        backlog=2048,
    ) as server:
        await server.serve_forever()


if __name__ == "__main__":
    port = int(sys.argv[1])
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(port))
    else:
        uvloop.run(main(port))
