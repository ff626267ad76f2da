#!/usr/bin/env python3
"""Start N chat processes on this machine, sharing one database and Redis, for
development and trials of the multi-process deployment (docs/deploy.md).

    REDIS_URL=redis://127.0.0.1:6379/0 DATABASE_URL=postgres://... \\
        .venv/bin/python deploy/cluster.py --processes 2 --base-port 8001 [--server daphne]

Ctrl-C stops them all. Put deploy/nginx/chat.conf in front to spread clients.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deploy.servers import command  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--base-port", type=int, default=8001)
    parser.add_argument("--server", choices=["uvicorn", "daphne"], default="uvicorn")
    args = parser.parse_args()
    if not os.environ.get("REDIS_URL"):
        print(
            "REDIS_URL must be set: processes share presence and messages through Redis.",
            file=sys.stderr,
        )
        return 2
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, check=True)
    processes = []
    for n in range(args.processes):
        port = args.base_port + n
        processes.append(subprocess.Popen(command(args.server, port), cwd=ROOT))
        print(f"process {n + 1}: http://127.0.0.1:{port}/")
    try:
        while all(p.poll() is None for p in processes):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        for p in processes:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in processes:
            p.wait(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
