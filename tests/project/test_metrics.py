"""`/metrics` (project/metrics.py): who may read it in each CHAT_METRICS mode, and
prometheus_client's multiprocess mode summing several real processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest

from tests.project.test_settings import PRINT_SETTINGS, ROOT, run_python

pytestmark = pytest.mark.django_db

CHAT_METRICS = ("chat_sockets_open", "chat_handshakes_refused_total", "chat_messages_stored_total")


def served(response) -> bool:
    if response.status_code == 404:
        return False
    assert response.status_code == 200, response.status_code
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert all(f"\n{name}" in text or text.startswith(name) for name in CHAT_METRICS), text[:500]
    return True


def test_staff_mode_serves_signed_in_staff_only(client, settings, user_factory):
    settings.CHAT_METRICS = "staff"
    assert not served(client.get("/metrics"))  # from 127.0.0.1, but anonymous
    client.force_login(user_factory())
    assert not served(client.get("/metrics"))
    client.force_login(user_factory(is_staff=True))
    assert served(client.get("/metrics"))
    assert served(client.get("/metrics", REMOTE_ADDR="203.0.113.9"))  # from anywhere


def test_staff_is_the_default(client, user_factory):
    from django.conf import settings

    assert settings.CHAT_METRICS == "staff"
    assert not served(client.get("/metrics"))
    client.force_login(user_factory(is_staff=True))
    assert served(client.get("/metrics"))


def test_internal_mode_serves_the_allowed_addresses_only(client, settings, user_factory):
    settings.CHAT_METRICS = "internal"
    assert served(client.get("/metrics", REMOTE_ADDR="127.0.0.1"))
    assert served(client.get("/metrics", REMOTE_ADDR="::1"))
    assert not served(client.get("/metrics", REMOTE_ADDR="203.0.113.9"))
    assert not served(client.get("/metrics", REMOTE_ADDR="not an address"))
    client.force_login(user_factory(is_staff=True))  # signing in changes nothing here
    assert not served(client.get("/metrics", REMOTE_ADDR="203.0.113.9"))


def test_internal_mode_refuses_whatever_came_through_a_proxy(client, settings):
    settings.CHAT_METRICS = "internal"
    # What uvicorn --proxy-headers hands on for a request that nginx passed:
    # the client's address from X-Forwarded-For, and the header itself.
    proxied = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "127.0.0.1"}
    assert not served(client.get("/metrics", **proxied))


def test_internal_mode_takes_networks(client, settings):
    settings.CHAT_METRICS = "internal"
    settings.CHAT_METRICS_ALLOW = ["10.0.0.0/8", "fd00::/8"]
    assert served(client.get("/metrics", REMOTE_ADDR="10.20.30.40"))
    assert served(client.get("/metrics", REMOTE_ADDR="fd00::5"))
    assert not served(client.get("/metrics", REMOTE_ADDR="127.0.0.1"))


def test_off_serves_nobody(client, settings, user_factory):
    settings.CHAT_METRICS = "off"
    client.force_login(user_factory(is_staff=True))
    assert not served(client.get("/metrics", REMOTE_ADDR="127.0.0.1"))


def test_a_direct_scrape_is_not_redirected_to_https(client, settings):
    settings.CHAT_METRICS = "internal"
    settings.SECURE_SSL_REDIRECT = True
    assert served(client.get("/metrics"))
    assert client.get("/accounts/login/").status_code == 301


@pytest.mark.parametrize(
    "variable, value",
    [("CHAT_METRICS", "public"), ("CHAT_METRICS_ALLOW", "10.0.0.0/8,intranet")],
)
def test_bad_metrics_settings_stop_the_start(variable, value):
    result = run_python(PRINT_SETTINGS, **{variable: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert variable in result.stderr


# --- Several processes: prometheus_client's multiprocess mode --------------------------------

WORKER = textwrap.dedent(
    """
    import sys, django
    django.setup()
    from chatrooms import metrics
    stored, sockets, render = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "render"
    metrics.messages_stored.inc(stored)
    metrics.sockets_open.inc(sockets)
    metrics.handshake_refused("origin")
    if render:
        from project.metrics import render
        sys.stdout.write(render().decode())
    """
)


def sample(text: str, line: str) -> float:
    match = re.search(rf"^{re.escape(line)} (\S+)$", text, re.MULTILINE)
    assert match, f"{line} not in:\n{text}"
    return float(match.group(1))


def worker(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """A process of its own that counts, and (with "render") answers /metrics' body."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-c", WORKER, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result


def test_multiprocess_mode_sums_every_process_and_forgets_dead_sockets(tmp_path):
    worker(tmp_path, "2", "5", "quiet")  # a process that ends: its sockets are gone
    text = worker(tmp_path, "3", "1", "render").stdout
    assert sample(text, "chat_messages_stored_total") == 5
    assert sample(text, 'chat_handshakes_refused_total{reason="origin"}') == 2
    assert sample(text, "chat_sockets_open") == 1  # the live process's only


@pytest.mark.parametrize("where", ["missing", ""])
def test_a_missing_multiprocess_directory_stops_the_start(tmp_path, where):
    path = str(tmp_path / where) if where else ""
    result = run_python(PRINT_SETTINGS, PROMETHEUS_MULTIPROC_DIR=path)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "PROMETHEUS_MULTIPROC_DIR" in result.stderr
