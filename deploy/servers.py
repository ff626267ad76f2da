"""The command lines that start a chat process: one definition, used by the
systemd unit's documentation, deploy/cluster.py, the tests and the benchmark.

uvicorn (with uvloop) is the production server; daphne the development one.
Both refuse frames over 64 KiB themselves (close 1009); permessage-deflate
stays off (OWASP; daphne never offers it).
"""

from __future__ import annotations

import sys
from pathlib import Path

from chatrooms.protocol import MAX_FRAME_BYTES

BIN = Path(sys.executable).parent
APP = "project.asgi:application"

MAX = str(MAX_FRAME_BYTES)
DAPHNE_ARGS = ["--websocket-max-message-size", MAX, "--websocket-max-frame-size", MAX]
UVICORN_ARGS = [
    "--loop", "uvloop", "--http", "httptools", "--ws", "websockets",
    "--ws-per-message-deflate", "false", "--ws-max-size", MAX, "--lifespan", "off",
]  # fmt: skip


def command(kind: str, port: int, app: str = APP, host: str = "127.0.0.1") -> list[str]:
    """argv for `kind` ("uvicorn" or "daphne") serving `app` on host:port."""
    if kind == "uvicorn":
        return [str(BIN / "uvicorn"), app, "--host", host, "--port", str(port), *UVICORN_ARGS]
    if kind == "daphne":
        return [str(BIN / "daphne"), "-b", host, "-p", str(port), *DAPHNE_ARGS, app]
    raise ValueError(f"unknown server {kind!r}")
