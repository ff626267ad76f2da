"""Open sockets follow their session: a password change or reset closes the
other sessions' sockets at once, and the session check closes the sockets of
a session that expired, was deleted or lost its password (chatrooms/sessions.py)."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.sessions.models import Session
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from chatrooms import sessions

pytestmark = [pytest.mark.django_db(transaction=True)]

NEW_PASSWORD = "a-brand-new-passphrase-7"
PERIOD = 1  # CHAT_SESSION_CHECK_SECONDS in the tests of the check
MARGIN = 2  # the bound docs state: closed within the period plus one round


@pytest.fixture(autouse=True)
def _fresh_registry():
    """No socket of another test is checked here."""
    sessions._watches.clear()
    yield
    sessions._watches.clear()


@pytest.fixture
def fast_check(settings):
    settings.CHAT_SESSION_CHECK_SECONDS = PERIOD


def _signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


async def browser(user) -> Client:
    """A browser session signed in as `user` (its own session cookie)."""
    return await database_sync_to_async(_signed_in)(user)


def key(client: Client) -> str:
    return client.cookies["sessionid"].value


async def assert_closed(sock, reason: str, timeout: float = 3) -> None:
    """The `closed` frame (after any room traffic), then the close with 4403."""
    deadline = time.monotonic() + timeout
    while (frame := await sock.recv(max(deadline - time.monotonic(), 0.01)))["type"] != "closed":
        assert frame["type"] in {"presence", "typing", "chat.message"}, frame
    assert frame == {"type": "closed", "reason": reason}
    assert (await sock.communicator.receive_output(timeout=timeout)) == {
        "type": "websocket.close",
        "code": 4403,
    }


async def assert_open(sock) -> None:
    """The socket still takes frames: a message is stored and comes back."""
    await sock.send({"type": "chat.message", "message": "still here"})
    assert (await sock.recv_type("chat.message"))["message"] == "still here"


async def closed_within(sock, reason: str, bound: float) -> float:
    """Wait for the close; how long it took from now."""
    started = time.monotonic()
    await assert_closed(sock, reason, timeout=bound + 1)
    return time.monotonic() - started


# --- Password change and reset --------------------------------------------------------------


async def test_password_change_closes_other_sessions_sockets_and_keeps_its_own(
    layer, room, alice, connect, fast_check
):
    laptop, phone = await browser(alice), await browser(alice)
    tab, _ = await connect(alice, room, cookie=key(laptop))
    other, _ = await connect(alice, room, cookie=key(phone))
    response = await database_sync_to_async(laptop.post)(
        reverse("account_change_password"),
        {"oldpassword": alice.raw_password, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    assert response.status_code == 302
    await assert_closed(other, "password_changed")
    await assert_open(tab)
    # The kept socket outlives a session check (its session got a new key) ...
    await asyncio.sleep(PERIOD * 2.5)
    await assert_open(tab)
    # ... and HTTP agrees: Django refuses the other session, keeps this one.
    assert (await database_sync_to_async(phone.get)("/chats/")).status_code == 302
    assert (await database_sync_to_async(laptop.get)("/chats/")).status_code == 200
    # Signing out later still closes it: it knows its session's new key.
    await database_sync_to_async(laptop.post)(reverse("account_logout"))
    await assert_closed(tab, "signed_out")


async def test_password_change_kept_socket_is_checked_by_its_new_key(
    room, alice, connect, fast_check
):
    laptop = await browser(alice)
    tab, _ = await connect(alice, room, cookie=key(laptop))
    old_key = key(laptop)
    await database_sync_to_async(laptop.post)(
        reverse("account_change_password"),
        {"oldpassword": alice.raw_password, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    assert key(laptop) != old_key  # Django gave the session a new key
    await assert_open(tab)
    # The new session ends elsewhere (say, sign-out in another tab of that browser).
    await database_sync_to_async(Session.objects.filter(pk=key(laptop)).delete)()
    assert await closed_within(tab, "session_expired", PERIOD + MARGIN) <= PERIOD + MARGIN


async def test_password_reset_closes_every_socket(layer, room, alice, connect):
    laptop, phone = await browser(alice), await browser(alice)
    a, _ = await connect(alice, room, cookie=key(laptop))
    b, _ = await connect(alice, room, cookie=key(phone))

    def reset():
        client = Client()  # signed out, as the emailed link is used
        client.post(reverse("account_reset_password"), {"email": alice.email})
        link = re.search(
            r"https?://[^/\s]+(/accounts/password/reset/key/\S+)", mail.outbox[-1].body
        )
        response = client.get(link.group(1), follow=True)
        form_url = response.redirect_chain[-1][0] if response.redirect_chain else link.group(1)
        return client.post(form_url, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})

    response = await database_sync_to_async(reset)()
    assert response.status_code == 302
    await assert_closed(a, "password_changed")
    await assert_closed(b, "password_changed")
    await alice.arefresh_from_db()
    assert alice.check_password(NEW_PASSWORD)


async def test_set_password_in_code_closes_every_socket(layer, room, alice, connect):
    a, _ = await connect(alice, room)
    b, _ = await connect(alice, room)

    def change():
        user = get_user_model().objects.get(pk=alice.pk)
        user.set_password(NEW_PASSWORD)
        user.save()

    await database_sync_to_async(change)()
    await assert_closed(a, "password_changed")
    await assert_closed(b, "password_changed")


async def test_changepassword_command_closes_every_socket(layer, room, alice, connect, monkeypatch):
    from django.core.management import call_command

    sock, _ = await connect(alice, room)
    monkeypatch.setattr("getpass.getpass", lambda prompt="": NEW_PASSWORD)
    await database_sync_to_async(call_command)("changepassword", "alice")
    await assert_closed(sock, "password_changed")


async def test_admin_password_form_keeps_own_session_closes_the_rest(
    layer, room_factory, user_factory, connect
):
    boss = await database_sync_to_async(user_factory)(
        username="boss", is_staff=True, is_superuser=True
    )
    bob = await database_sync_to_async(user_factory)(username="bob")
    room = await database_sync_to_async(room_factory)("Staff", owner=boss, members=[bob])
    admin_tab, elsewhere = await browser(boss), await browser(boss)
    own, _ = await connect(boss, room, cookie=key(admin_tab))
    other, _ = await connect(boss, room, cookie=key(elsewhere))
    bobs, _ = await connect(bob, room)

    def change(user):
        return admin_tab.post(
            reverse("admin:auth_user_password_change", args=[user.pk]),
            {"usable_password": "true", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
        )

    assert (await database_sync_to_async(change)(boss)).status_code == 302
    await assert_closed(other, "password_changed")
    await assert_open(own)
    assert (await database_sync_to_async(change)(bob)).status_code == 302
    await assert_closed(bobs, "password_changed")  # someone else's password: all of theirs
    await assert_open(own)


async def test_other_saves_of_the_user_close_nothing(layer, room, alice, connect):
    sock, _ = await connect(alice, room)

    def rename():
        user = get_user_model().objects.get(pk=alice.pk)
        user.display_name = "Alice L."
        user.save()

    await database_sync_to_async(rename)()
    await assert_open(sock)


# --- The session check -------------------------------------------------------------------------


async def test_session_check_closes_expired_session_within_the_period(
    room, alice, connect, fast_check
):
    laptop = await browser(alice)
    sock, _ = await connect(alice, room, cookie=key(laptop))
    await database_sync_to_async(Session.objects.filter(pk=key(laptop)).update)(
        expire_date=timezone.now() - timedelta(seconds=1)
    )
    assert await closed_within(sock, "session_expired", PERIOD + MARGIN) <= PERIOD + MARGIN


async def test_session_check_closes_deleted_session_within_the_period(
    room, alice, connect, fast_check
):
    laptop, phone = await browser(alice), await browser(alice)
    gone, _ = await connect(alice, room, cookie=key(laptop))
    kept, _ = await connect(alice, room, cookie=key(phone))
    await database_sync_to_async(Session.objects.filter(pk=key(laptop)).delete)()
    assert await closed_within(gone, "session_expired", PERIOD + MARGIN) <= PERIOD + MARGIN
    await assert_open(kept)


async def test_session_check_catches_a_password_changed_without_save(
    room, alice, connect, fast_check
):
    sock, _ = await connect(alice, room)
    await database_sync_to_async(get_user_model().objects.filter(pk=alice.pk).update)(
        password=make_password(NEW_PASSWORD)
    )
    assert await closed_within(sock, "password_changed", PERIOD + MARGIN) <= PERIOD + MARGIN


async def test_session_check_survives_a_database_error(
    room, alice, connect, fast_check, monkeypatch
):
    from django.db import OperationalError

    real, calls = sessions.read_sessions, []

    def flaky(keys):
        calls.append(len(keys))
        if len(calls) == 1:
            raise OperationalError("the database went away")
        return real(keys)

    monkeypatch.setattr(sessions, "read_sessions", flaky)
    laptop = await browser(alice)
    sock, _ = await connect(alice, room, cookie=key(laptop))
    await database_sync_to_async(Session.objects.filter(pk=key(laptop)).delete)()
    # The first round fails (logged), the second closes.
    assert await closed_within(sock, "session_expired", 2 * PERIOD + MARGIN) <= 2 * PERIOD + MARGIN
    assert len(calls) >= 2


async def test_session_check_reads_all_sockets_in_a_few_queries(room, user_factory, connect):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    people = [await database_sync_to_async(user_factory)() for _ in range(4)]
    for person in people:
        await connect(person, room)
        await connect(person, room)
    batch = {conn_id: (w.user_id, w.session_key) for conn_id, w in sessions._watches.items()}
    assert len(batch) == 8

    def judge():
        with CaptureQueriesContext(connection) as queries:
            verdicts = sessions.judge(batch)
        return verdicts, len(queries)

    verdicts, count = await database_sync_to_async(judge)()
    assert verdicts == {}  # all alive
    assert count == 2  # the sessions, the users: not one query per socket


# --- The registry, without sockets ---------------------------------------------------------


class Recorder:
    def __init__(self):
        self.events: list[dict] = []

    def __call__(self, event: dict) -> None:
        self.events.append(event)


async def test_check_closes_only_watched_and_unheld_sockets(alice):
    gone, held, unwatched = Recorder(), Recorder(), Recorder()
    sessions.watch(conn_id="a", user_id=alice.pk, session_key="no-such-1", handler=gone)
    sessions.watch(conn_id="b", user_id=alice.pk, session_key="no-such-2", handler=held)
    sessions.watch(conn_id="c", user_id=alice.pk, session_key="no-such-3", handler=unwatched)
    sessions.hold("b")
    sessions.unwatch("c")
    sessions.unwatch("c")  # twice is fine
    await sessions.check()
    assert gone.events == [{"reason": "session_expired"}]
    assert held.events == [] and unwatched.events == []
    await sessions.check()
    assert len(gone.events) == 1  # closed once, then forgotten


async def test_rekey_lifts_the_hold_and_follows_the_new_key(alice):
    laptop = await browser(alice)
    handler = Recorder()
    sessions.watch(conn_id="a", user_id=alice.pk, session_key="old-key", handler=handler)
    sessions.hold("a")
    sessions.rekey("a", key(laptop))
    await sessions.check()
    assert handler.events == []  # the new key's session is alive
    await database_sync_to_async(Session.objects.filter(pk=key(laptop)).delete)()
    await sessions.check()
    assert handler.events == [{"reason": "session_expired"}]  # checked again, by the new key


async def test_a_hold_ends_by_itself(alice, monkeypatch):
    monkeypatch.setattr(sessions, "HOLD_SECONDS", 0.2)
    handler = Recorder()
    sessions.watch(conn_id="a", user_id=alice.pk, session_key="no-such", handler=handler)
    sessions.hold("a")  # a settlement that never comes
    await sessions.check()
    assert handler.events == []
    await asyncio.sleep(0.3)
    await sessions.check()
    assert handler.events == [{"reason": "session_expired"}]


def test_watch_ignores_sockets_without_a_session():
    async def run():
        sessions.watch(conn_id="x", user_id=1, session_key="", handler=Recorder())

    asyncio.run(run())
    assert "x" not in sessions._watches


@pytest.mark.parametrize(
    "engine",
    [
        "django.contrib.sessions.backends.db",
        "django.contrib.sessions.backends.cached_db",
        "django.contrib.sessions.backends.cache",
        "django.contrib.sessions.backends.file",
        "django.contrib.sessions.backends.signed_cookies",
    ],
)
def test_read_sessions_works_with_each_session_engine(engine, settings, tmp_path):
    from importlib import import_module

    settings.SESSION_ENGINE = engine
    settings.SESSION_FILE_PATH = str(tmp_path)
    store = import_module(engine).SessionStore
    live, dead = store(), store()
    for session in (live, dead):
        session["_auth_user_id"] = "7"
        session.save()
    if not engine.endswith("signed_cookies"):  # a signed cookie cannot be deleted
        dead.delete()
    found = sessions.read_sessions([live.session_key, dead.session_key, "never-existed"])
    assert found[live.session_key]["_auth_user_id"] == "7"
    assert "never-existed" not in found
    assert engine.endswith("signed_cookies") or dead.session_key not in found


# --- On a real server ------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["daphne", "uvicorn"])
def live(request, tmp_path_factory):
    """A real server process (the development one and the production one), checking every 1 s."""
    from tests.live import Server, fresh_database, server_env

    tmp = tmp_path_factory.mktemp("live-sessions")
    with fresh_database(tmp) as url:
        env = server_env(url, CHAT_SESSION_CHECK_SECONDS=str(PERIOD))
        server = Server(env, log=tmp / "server.log", kind=request.param).start()
        try:
            yield server
        finally:
            server.stop()


async def test_password_change_on_a_real_server_closes_the_other_browser_only(live):
    import json

    import websockets

    from tests.live import Browserless, recv_json

    laptop = Browserless(live).sign_up("erin", password="first-passphrase-42")
    phone = Browserless(live).sign_in("erin", password="first-passphrase-42")
    laptop.post_form("/chats/enter/", {"name": "Live Sessions"})
    async with (
        await laptop.socket("live-sessions") as kept,
        await phone.socket("live-sessions") as other,
    ):
        await recv_json(kept, "hello")
        await recv_json(other, "hello")
        status, _ = laptop.post_form(
            "/accounts/password/change/",
            {
                "oldpassword": "first-passphrase-42",
                "password1": NEW_PASSWORD,
                "password2": NEW_PASSWORD,
            },
        )
        assert status == 200
        assert await recv_json(other, "closed") == {"type": "closed", "reason": "password_changed"}
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(other.recv(), 5)
        assert closed.value.rcvd.code == 4403
        await asyncio.sleep(PERIOD * 2.5)  # two session checks later
        await kept.send(json.dumps({"type": "chat.message", "message": "still here"}))
        assert (await recv_json(kept, "chat.message"))["message"] == "still here"
        # HTTP agrees: the other browser is signed out, this one is not.
        with phone.opener.open(live.base + "/chats/", timeout=10) as response:
            assert "/accounts/login/" in response.geturl()
        with laptop.opener.open(live.base + "/chats/", timeout=10) as response:
            assert response.geturl().endswith("/chats/")
