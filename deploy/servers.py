"""The command lines that start a chat process: one definition, used by the
systemd unit's documentation, deploy/cluster.py, the tests and the benchmark.

uvicorn (with uvloop) is the production server; daphne the development one.
Both refuse frames over 64 KiB themselves (close 1009); permessage-deflate
stays off (OWASP; daphne never offers it).

No line is logged per request or per socket unless asked for: a connect
storm (every client of a restarted process at once) would otherwise spend
CPU formatting and writing three lines per socket (uvicorn logs
"[accepted]", "connection open" and "connection closed" at INFO, apart from
its access log; daphne writes an access log at its default verbosity).
`access_log=True`, or CHAT_ACCESS_LOG=1 in the environment, turns them on:
uvicorn's access log and INFO lines, daphne's access log on stdout.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from chatrooms.protocol import MAX_FRAME_BYTES

BIN = Path(sys.executable).parent
APP = "project.asgi:application"

MAX = str(MAX_FRAME_BYTES)
DAPHNE_ARGS = ["--websocket-max-message-size", MAX, "--websocket-max-frame-size", MAX]
# websockets-sansio: uvicorn's implementation on websockets' Sans-I/O core
# (the "websockets" one, on its legacy API, is deprecated). Measured with
# `python bench/run.py --only ramp --servers ours-uvicorn --configs prod`:
# 27 µs of server CPU per delivery at 30,000 deliveries/s against 31 µs.
UVICORN_ARGS = [
    "--loop", "uvloop", "--http", "httptools", "--ws", "websockets-sansio",
    "--ws-per-message-deflate", "false", "--ws-max-size", MAX, "--lifespan", "off",
]  # fmt: skip
# Quiet by default: errors and warnings only, no line per request or socket.
UVICORN_QUIET = ["--no-access-log", "--log-level", "warning"]
UVICORN_ACCESS_LOG = ["--access-log", "--log-level", "info"]
DAPHNE_QUIET = ["--verbosity", "0"]  # also: no access log (daphne's default is stdout)
DAPHNE_ACCESS_LOG = ["--verbosity", "1", "--access-log", "-"]


def access_log_wanted() -> bool:
    """CHAT_ACCESS_LOG=1 (or true, yes, on) in the environment."""
    return os.environ.get("CHAT_ACCESS_LOG", "").strip().lower() in {"1", "true", "yes", "on"}


def command(
    kind: str,
    port: int,
    app: str = APP,
    host: str = "127.0.0.1",
    access_log: bool | None = None,
) -> list[str]:
    """argv for `kind` ("uvicorn" or "daphne") serving `app` on host:port.

    `access_log`: a line per request and socket (None: CHAT_ACCESS_LOG decides).
    """
    if access_log is None:
        access_log = access_log_wanted()
    if kind == "uvicorn":
        logs = UVICORN_ACCESS_LOG if access_log else UVICORN_QUIET
        return [
            str(BIN / "uvicorn"), app, "--host", host, "--port", str(port), *UVICORN_ARGS, *logs
        ]  # fmt: skip
    if kind == "daphne":
        logs = DAPHNE_ACCESS_LOG if access_log else DAPHNE_QUIET
        return [str(BIN / "daphne"), "-b", host, "-p", str(port), *DAPHNE_ARGS, *logs, app]
    raise ValueError(f"unknown server {kind!r}")
