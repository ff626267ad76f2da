"""`/metrics`: the chat's Prometheus metrics (chatrooms/metrics.py), for operators only.

Who may read it is CHAT_METRICS (README.md, Configuration): "staff" (the
default) serves signed-in staff; "internal" serves a request made straight
to the process from an address of CHAT_METRICS_ALLOW; "off" serves nobody.
Everyone else gets the same 404 as a missing page, so the endpoint does not
announce itself.

"internal" trusts REMOTE_ADDR, which is the direct peer only when no proxy
rewrote it: uvicorn's --proxy-headers puts X-Forwarded-For's client there
for requests from nginx. A request that carries X-Forwarded-For came through
a proxy, so it is refused whatever its address; a scraper reads each
process's own port directly (docs/operations.md).

With PROMETHEUS_MULTIPROC_DIR set, the answer sums the files every process
of the directory writes (prometheus_client's multiprocess mode); otherwise
it is this process's own registry.
"""

from __future__ import annotations

import glob
import ipaddress
import os
from functools import lru_cache

from django.conf import settings
from django.http import Http404, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

import chatrooms.metrics  # noqa: F401 - the chat's metrics are registered on import


def metrics(request):
    """The metrics in Prometheus' text format, or 404 to whoever may not read them."""
    if not allowed(request):
        raise Http404
    return HttpResponse(render(), content_type=CONTENT_TYPE_PLAIN_0_0_4)


def allowed(request) -> bool:
    """Whether CHAT_METRICS lets this request read the metrics."""
    mode = settings.CHAT_METRICS
    if mode == "staff":
        user = request.user
        return user.is_authenticated and user.is_active and user.is_staff
    if mode == "internal":
        if "HTTP_X_FORWARDED_FOR" in request.META:
            return False
        return _address_allowed(request.META.get("REMOTE_ADDR", ""))
    return False


def _address_allowed(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in _networks(tuple(settings.CHAT_METRICS_ALLOW)))


@lru_cache(maxsize=8)
def _networks(allow: tuple[str, ...]) -> tuple:
    return tuple(ipaddress.ip_network(item, strict=False) for item in allow)


def render() -> bytes:
    """The text exposition: this process's registry, or every process's files."""
    path = settings.PROMETHEUS_MULTIPROC_DIR
    if not path:
        return generate_latest(REGISTRY)
    _forget_dead_processes(path)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)
    return generate_latest(registry)


def _forget_dead_processes(path: str) -> None:
    """Drop the live gauges (open sockets) of processes that are gone.

    A worker that crashed or was replaced never removes its files: its
    counters must stay (they only add up), but its gauge would keep counting
    sockets that no longer exist.
    """
    for name in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        pid = name.rsplit("_", 1)[-1][: -len(".db")]
        if pid.isdigit() and not _alive(int(pid)):
            mark_process_dead(int(pid), path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True
