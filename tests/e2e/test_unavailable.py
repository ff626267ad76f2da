"""The database goes away under an open page: messages sent meanwhile are
kept, shown as not sent yet and sent again with their own client_id until
storage is back; then each is shown once, in order, and stored exactly once.

A module of its own: its server reaches PostgreSQL through a proxy that the
test cuts (tests/faults.py), so it needs PostgreSQL (skipped without it,
failed when CI=true)."""

from __future__ import annotations

import json
import re
import time

import psycopg
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.helpers import Site
from tests.faults import pg_proxy  # noqa: F401
from tests.live import fresh_database, server_env

pytestmark = pytest.mark.e2e

# The client retries after 1 s, 2 s, 4 s … (at most 15 s, jittered down);
# after a short outage its next retry comes within a few seconds.
BACK_WITHIN_S = 20
PENDING = "Not sent yet"
STORAGE_DOWN = re.compile(r"^Can't store messages right now; retrying in \d+ s$")


@pytest.fixture
def database_url(pg_proxy, postgres_url, tmp_path, monkeypatch):
    """A fresh, migrated PostgreSQL database, made through the real address."""
    monkeypatch.setenv("DATABASE_URL", postgres_url)  # fresh_database's server
    with fresh_database(tmp_path) as url:
        yield url


@pytest.fixture
def site(pg_proxy, database_url, tmp_path):
    """conftest.py's server, but per test and with its database behind `pg_proxy`."""
    site = Site(
        server_env(pg_proxy.url_for(database_url), ACCOUNT_RATE_LIMITS="0"),
        log=tmp_path / "server.log",
    ).start()
    try:
        yield site
    finally:
        site.stop()


def sent_messages(page: Page) -> list[dict]:
    """The chat.message frames this page sends from now on (a live list)."""
    frames: list[dict] = []

    def on_frame(payload) -> None:
        if isinstance(payload, str):
            frame = json.loads(payload)
            if frame.get("type") == "chat.message":
                frames.append(frame)

    page.on("websocket", lambda socket: socket.on("framesent", on_frame))
    return frames


def stored(database_url: str, texts: list[str]) -> list[tuple[str, str]]:
    """(body, client_id) of the stored messages with those texts, in id order."""
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT body, client_id FROM chatrooms_message WHERE body = ANY(%s) ORDER BY id",
            [texts],
        ).fetchall()


def wait_until(page: Page, done, what: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        page.wait_for_timeout(100)


def test_messages_sent_while_storage_is_down_are_kept_and_stored_once(
    people, site, pg_proxy, database_url
):
    kate = people("kate", display_name="Kate")
    leo = people("leo", display_name="Leo")
    frames = sent_messages(kate.page)
    slug = kate.enter_room("Storage")
    leo.open_room(slug)
    kate.say("Before the outage")
    expect(leo.message("Before the outage")).to_be_visible()
    opened = kate.watch_sockets()

    pg_proxy.cut()
    texts = ["Sent while the database was down", "And a second one"]
    for text in texts:
        kate.composer.fill(text)
        kate.send_button.click()
        expect(kate.composer).to_have_value("")  # taken, not refused

    # Kept, in order, after the stored messages, and marked in words.
    pending = kate.articles.filter(has_text=PENDING)
    expect(pending).to_have_count(2)
    shown_pending = [re.compile(f"{PENDING}.*{re.escape(t)}") for t in texts]
    expect(kate.articles).to_have_text([re.compile("Before the outage"), *shown_pending])
    expect(kate.page.get_by_text(STORAGE_DOWN)).to_be_visible()
    # Not a broken connection: the socket stays open, the composer usable.
    expect(kate.status).to_have_text("Connected")
    expect(kate.composer).to_be_enabled()

    # Retried while the database is down, always with the same client_id.
    wait_until(
        kate.page,
        lambda: sum(f["message"] == texts[0] for f in frames) >= 3,
        "the first message sent three times",
        seconds=15,
    )
    assert stored(database_url, texts) == []
    # A status line, not an alert (nor one for a read report that failed too).
    expect(kate.page.get_by_role("alert")).to_have_count(0)
    expect(leo.message(texts[0])).to_have_count(0)

    pg_proxy.restore()
    back = time.monotonic()
    expect(pending).to_have_count(0, timeout=BACK_WITHIN_S * 1000)
    print(f"both messages stored {time.monotonic() - back:.1f} s after the database came back")
    expect(kate.page.get_by_text(STORAGE_DOWN)).to_have_count(0)

    expected = ["Before the outage", *texts]
    for person in (kate, leo):
        expect(person.articles).to_have_text([re.compile(re.escape(t)) for t in expected])
        ids = person.article_ids()
        assert ids == sorted(set(ids)), ids  # stored messages, no duplicate, in order
    assert kate.article_ids() == leo.article_ids()
    assert opened == [], f"the page had to reconnect (the server closed its socket): {opened}"

    # Each stored exactly once, under the client_id it was first sent with.
    client_ids = {}
    for frame in frames:
        client_ids.setdefault(frame["message"], set()).add(frame["client_id"])
    assert all(len(ids) == 1 for ids in client_ids.values()), client_ids
    rows = stored(database_url, texts)
    assert rows == [(text, next(iter(client_ids[text]))) for text in texts], rows
