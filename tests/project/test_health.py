"""/healthz answers 200 when the database and the channel layer answer, else 503."""

from __future__ import annotations

import pytest
from django.db.utils import OperationalError

from tests.conftest import redis_layer_settings

pytestmark = pytest.mark.django_db


def test_healthz_ok_on_the_configured_layer(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "channel_layer": "ok",
        "subscriptions": "ok",
    }


def test_healthz_ok_on_a_real_redis_layer(client, settings, redis_url):
    settings.CHANNEL_LAYERS = redis_layer_settings(redis_url)
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["channel_layer"] == "ok"


def test_healthz_503_when_redis_is_unreachable(client, settings):
    layers = redis_layer_settings("redis://127.0.0.1:1/0")
    layers["default"]["CONFIG"]["hosts"] = [
        {"address": "redis://127.0.0.1:1/0", "socket_connect_timeout": 0.5}
    ]
    settings.CHANNEL_LAYERS = layers
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["database"] == "ok"
    assert body["channel_layer"].startswith("error")


def test_healthz_503_when_the_database_fails(client, monkeypatch):
    from django.db.backends.utils import CursorWrapper

    def broken_execute(self, sql, params=None):
        raise OperationalError("connection refused")

    monkeypatch.setattr(CursorWrapper, "execute", broken_execute)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"] == "error: OperationalError"
    assert response.json()["channel_layer"] == "ok"


def test_healthz_needs_no_sign_in_and_is_exempt_from_ssl_redirect(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz").status_code == 200
    assert client.get("/accounts/login/").status_code == 301


def test_healthz_503_while_a_room_subscription_is_broken(client, monkeypatch):
    from chatrooms.hub import hub

    monkeypatch.setattr(hub, "problem", lambda: "redis subscription down (ConnectionError)")
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["subscriptions"] == "error: redis subscription down (ConnectionError)"
    assert response.json()["database"] == "ok"
