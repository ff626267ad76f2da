"""Private rooms, invites, roles and moderation: who may do what, over HTTP
and WebSocket, and how decisions reach open sockets at once."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from accounts import services as accounts_services
from chatrooms import services
from chatrooms.models import Invite, Membership, Message, Room

ROLES = ["anonymous", "nonmember", "member", "moderator", "owner", "banned", "staff"]


@pytest.fixture
def cast(db, user_factory, room_factory):
    """A room with someone in every role, and a plain member to act on."""
    owner = user_factory(username="olivia")
    room = room_factory("Team", owner=owner, slug="team", is_private=True)
    people = {"owner": owner}
    for role in ("moderator", "member", "banned", "nonmember", "staff", "target", "target_mod"):
        people[role] = user_factory(username=role.replace("_", ""), is_staff=role == "staff")
    Membership.objects.create(room=room, user=people["moderator"], role="moderator")
    Membership.objects.create(room=room, user=people["member"])
    Membership.objects.create(room=room, user=people["banned"], is_banned=True)
    Membership.objects.create(room=room, user=people["target"])
    Membership.objects.create(room=room, user=people["target_mod"], role="moderator")
    people["room"] = room
    return people


def _as(client, cast, role):
    if role != "anonymous":
        client.force_login(cast[role])
    return client


# (action, POST data builder, who may, check the effect happened)
def _actions(cast):
    room, target = cast["room"], cast["target"]
    invite = Invite.objects.create(room=room, token="tok-matrix", created_by=cast["owner"])
    return {
        "rename": (
            {"action": "rename", "name": "Renamed", "topic": "t"},
            {"owner", "moderator"},
            lambda: Room.objects.get(id=room.id).name == "Renamed",
        ),
        "invite": (
            {"action": "invite", "lifetime": "1d", "max_uses": "3"},
            {"owner", "moderator"},
            lambda: Invite.objects.filter(room=room, max_uses=3).exists(),
        ),
        "revoke": (
            {"action": "revoke", "invite": invite.id},
            {"owner", "moderator"},
            lambda: Invite.objects.get(id=invite.id).revoked_at is not None,
        ),
        "kick": (
            {"action": "kick", "user": target.id},
            {"owner", "moderator"},
            lambda: not Membership.objects.filter(room=room, user=target).exists(),
        ),
        "ban": (
            {"action": "ban", "user": target.id},
            {"owner", "moderator"},
            lambda: Membership.objects.get(room=room, user=target).is_banned,
        ),
        "unban": (
            {"action": "unban", "user": cast["banned"].id},
            {"owner", "moderator"},
            lambda: not Membership.objects.filter(room=room, user=cast["banned"]).exists(),
        ),
        "promote": (
            {"action": "promote", "user": target.id},
            {"owner"},
            lambda: Membership.objects.get(room=room, user=target).role == "moderator",
        ),
        "demote": (
            {"action": "demote", "user": cast["target_mod"].id},
            {"owner"},
            lambda: Membership.objects.get(room=room, user=cast["target_mod"]).role == "member",
        ),
        "transfer": (
            {"action": "transfer", "user": target.id},
            {"owner"},
            lambda: Membership.objects.get(room=room, user=target).role == "owner",
        ),
        "archive": (
            {"action": "archive"},
            {"owner"},
            lambda: Room.objects.get(id=room.id).archived_at is not None,
        ),
        "kick_owner": (
            {"action": "kick", "user": cast["owner"].id},
            set(),
            lambda: not Membership.objects.filter(room=room, user=cast["owner"]).exists(),
        ),
        "kick_moderator": (
            {"action": "kick", "user": cast["target_mod"].id},
            {"owner"},
            lambda: not Membership.objects.filter(room=room, user=cast["target_mod"]).exists(),
        ),
    }


ACTIONS = [
    "rename",
    "invite",
    "revoke",
    "kick",
    "ban",
    "unban",
    "promote",
    "demote",
    "transfer",
    "archive",
    "kick_owner",
    "kick_moderator",
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", ACTIONS)
def test_settings_permission_matrix_over_http(client, cast, role, action):
    data, allowed, happened = _actions(cast)[action]
    _as(client, cast, role)
    url = reverse("chatrooms:room_settings", args=["team"])
    response = client.post(url, data)
    if role in allowed:
        assert response.status_code == 302, response.content[:300]
        assert happened()
    else:
        assert not happened()
        if role == "anonymous":
            assert response["Location"].startswith(reverse("account_login"))
        else:
            assert response.status_code in (403, 404)


@pytest.mark.parametrize("role", ROLES)
def test_settings_page_visibility(client, cast, role):
    _as(client, cast, role)
    response = client.get(reverse("chatrooms:room_settings", args=["team"]))
    expected = {
        "anonymous": 302,
        "nonmember": 404,
        "banned": 404,
        "staff": 404,
        "member": 403,
        "moderator": 200,
        "owner": 200,
    }[role]
    assert response.status_code == expected


@pytest.mark.parametrize("role", ROLES)
def test_room_page_visibility_of_a_private_room(client, cast, role):
    _as(client, cast, role)
    response = client.get(reverse("chatrooms:room_detail", args=["team"]))
    expected = {
        "anonymous": 302,
        "nonmember": 404,
        "banned": 404,
        "staff": 404,
        "member": 200,
        "moderator": 200,
        "owner": 200,
    }[role]
    assert response.status_code == expected


def test_members_leave_and_owner_must_hand_over_first(client, cast):
    client.force_login(cast["member"])
    assert client.post(reverse("chatrooms:room_leave", args=["team"])).status_code == 302
    assert not Membership.objects.filter(room=cast["room"], user=cast["member"]).exists()
    client.force_login(cast["owner"])
    client.post(reverse("chatrooms:room_leave", args=["team"]))
    assert Membership.objects.get(room=cast["room"], user=cast["owner"]).role == "owner"


def test_transfer_makes_old_owner_a_moderator(cast):
    services.room_transfer_ownership(
        user=cast["owner"], room=cast["room"], user_id=cast["target"].id
    )
    roles = dict(Membership.objects.filter(room=cast["room"]).values_list("user__username", "role"))
    assert roles["olivia"] == "moderator" and roles["target"] == "owner"


def test_archived_room_leaves_lobby_and_owner_unarchives(client, cast):
    services.room_set_archived(user=cast["owner"], room=cast["room"], archived=True)
    client.force_login(cast["owner"])
    assert "Team" not in [r["room"].name for r in client.get("/chats/").context["my_rooms"]]
    # Read-only, with no client to connect (tests/chatrooms/test_views.py has the rest).
    archived = client.get("/chats/team/")
    assert archived.status_code == 200 and "chat-config" not in archived.content.decode()
    page = client.get(reverse("chatrooms:room_settings", args=["team"]))
    assert page.status_code == 200 and "Unarchive room" in page.content.decode()
    client.post(reverse("chatrooms:room_settings", args=["team"]), {"action": "unarchive"})
    assert client.get("/chats/team/").status_code == 200


def test_settings_page_escapes_and_lists_links(client, cast):
    cast["target"].display_name = "<b>T</b>"
    cast["target"].save()
    services.invite_create(user=cast["owner"], room=cast["room"], lifetime="never")
    client.force_login(cast["owner"])
    body = client.get(reverse("chatrooms:room_settings", args=["team"])).content.decode()
    assert "&lt;b&gt;T&lt;/b&gt;" in body and "<b>T</b>" not in body
    assert "/chats/invite/" in body and "Copy link" in body and "never expires" in body


# --- Invites ----------------------------------------------------------------------------


def test_invite_tokens_are_unguessable(cast):
    invite = services.invite_create(user=cast["owner"], room=cast["room"])
    assert len(invite.token) >= 43  # 32 random bytes, base64: 256 bits
    assert invite.expires_at - timezone.now() > timedelta(days=6, hours=23)  # 7 days default


def test_signed_in_user_redeems_and_lands_in_the_room(client, cast):
    invite = services.invite_create(user=cast["owner"], room=cast["room"], max_uses=5)
    client.force_login(cast["nonmember"])
    response = client.post(reverse("chatrooms:invite_redeem", args=[invite.token]))
    assert response["Location"] == "/chats/team/"
    assert Membership.objects.get(room=cast["room"], user=cast["nonmember"]).role == "member"
    client.post(reverse("chatrooms:invite_redeem", args=[invite.token]))  # again: no new use
    invite.refresh_from_db()
    assert invite.use_count == 1


def test_signed_out_visitor_signs_in_and_comes_back(client, cast):
    invite = services.invite_create(user=cast["owner"], room=cast["room"])
    url = reverse("chatrooms:invite_redeem", args=[invite.token])
    response = client.get(url)
    assert response.status_code == 302
    login = response["Location"]
    assert login.startswith(reverse("account_login")) and "next=" in login
    response = client.post(
        login, {"login": "nonmember", "password": cast["nonmember"].raw_password}
    )
    assert response["Location"] == url
    assert client.get(url).status_code == 200  # the invite's page: joining is its POST
    assert client.post(url)["Location"] == "/chats/team/"
    assert Membership.objects.filter(room=cast["room"], user=cast["nonmember"]).exists()


def test_signed_out_visitor_signs_up_and_comes_back(client, cast):
    invite = services.invite_create(user=cast["owner"], room=cast["room"])
    url = reverse("chatrooms:invite_redeem", args=[invite.token])
    login_page = client.get(client.get(url)["Location"]).content.decode()
    assert f'href="/accounts/signup/?next={url.replace("/", "%2F")}"' in login_page
    response = client.post(
        f"/accounts/signup/?next={url}",
        {
            "username": "newcomer",
            "email": "newcomer@example.com",
            "password1": "a-long-fine-secret",
            "password2": "a-long-fine-secret",
            "next": url,
        },
    )
    assert response["Location"] == url
    assert client.get(url).status_code == 200  # the invite's page: joining is its POST
    assert client.post(url)["Location"] == "/chats/team/"
    assert Membership.objects.filter(room=cast["room"], user__username="newcomer").exists()


@pytest.mark.parametrize("state", ["expired", "revoked", "used_up"])
def test_dead_invites_grant_nothing(client, cast, state):
    invite = services.invite_create(user=cast["owner"], room=cast["room"], max_uses=1)
    if state == "expired":
        Invite.objects.filter(id=invite.id).update(expires_at=timezone.now() - timedelta(1))
    elif state == "revoked":
        services.invite_revoke(user=cast["moderator"], invite=invite)
    else:
        Invite.objects.filter(id=invite.id).update(use_count=1)
    client.force_login(cast["nonmember"])
    url = reverse("chatrooms:invite_redeem", args=[invite.token])
    for response in (client.get(url), client.post(url)):
        assert response.status_code == 410
        assert "does not work" in response.content.decode()
    assert not Membership.objects.filter(room=cast["room"], user=cast["nonmember"]).exists()


def test_unknown_token_is_404_signed_in_or_out(client, cast):
    url = reverse("chatrooms:invite_redeem", args=["no-such-token"])
    assert client.get(url).status_code == 404
    assert client.post(url).status_code == 404
    client.force_login(cast["nonmember"])
    assert client.get(url).status_code == 404
    assert client.post(url).status_code == 404


def test_banned_user_gets_nothing_from_an_invite(client, cast):
    invite = services.invite_create(user=cast["owner"], room=cast["room"])
    client.force_login(cast["banned"])
    url = reverse("chatrooms:invite_redeem", args=[invite.token])
    assert client.get(url).status_code == 403
    response = client.post(url)
    assert response.status_code == 403
    assert Membership.objects.get(room=cast["room"], user=cast["banned"]).is_banned
    invite.refresh_from_db()
    assert invite.use_count == 0


def test_use_count_cannot_pass_max_uses(cast):
    from django.db import IntegrityError, transaction

    invite = services.invite_create(user=cast["owner"], room=cast["room"], max_uses=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        Invite.objects.filter(id=invite.id).update(use_count=2)


@pytest.mark.django_db(transaction=True)
def test_two_people_racing_for_the_last_use_one_wins(user_factory, room_factory):
    if connection.vendor == "sqlite":
        pytest.skip(
            "SQLite's shared in-memory test database refuses a second writer instead of "
            "queueing it; CI runs this race on PostgreSQL"
        )
    owner = user_factory(username="owner")
    room = room_factory("Race", owner=owner, slug="race", is_private=True)
    invite = services.invite_create(user=owner, room=room, max_uses=1)
    racers = [user_factory(username=f"racer{n}") for n in range(2)]
    barrier = threading.Barrier(2)
    results = []

    def race(user):
        try:
            barrier.wait(5)
            services.invite_redeem(user=user, token=invite.token)
            results.append("won")
        except services.InviteError as exc:
            results.append(exc.reason)
        except Exception as exc:  # any other failure is a result too
            results.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=race, args=(user,)) for user in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert sorted(results) == ["used_up", "won"]
    invite.refresh_from_db()
    assert invite.use_count == 1
    assert Membership.objects.filter(room=room, user__in=racers).count() == 1


# --- Live effect on open sockets ------------------------------------------------------------


@pytest.fixture
def live_cast(transactional_db, user_factory, room_factory):
    owner = user_factory(username="olivia")
    bob = user_factory(username="bob")
    room = room_factory("Team", owner=owner, slug="team")
    other = room_factory("Other", owner=owner, slug="other")
    Membership.objects.create(room=room, user=bob)
    Membership.objects.create(room=other, user=bob)
    return {"owner": owner, "bob": bob, "room": room, "other": other}


async def _closed(sock, reason):
    assert (await sock.recv_type("closed", timeout=5)) == {"type": "closed", "reason": reason}
    assert (await sock.communicator.receive_output(timeout=3)) == {
        "type": "websocket.close",
        "code": 4403,
    }


@pytest.mark.parametrize("action, reason", [("kick", "kicked"), ("ban", "banned")])
async def test_kick_and_ban_close_that_room_only(layer, live_cast, connect, action, reason):
    bob, room = live_cast["bob"], live_cast["room"]
    in_room, _ = await connect(bob, room)
    elsewhere, _ = await connect(bob, live_cast["other"])
    service = services.member_kick if action == "kick" else services.member_ban
    await database_sync_to_async(service)(user=live_cast["owner"], room=room, user_id=bob.id)
    await _closed(in_room, reason)
    await elsewhere.send({"type": "ping"})
    assert (await elsewhere.recv_type("pong"))["type"] == "pong"
    from tests.chatrooms.conftest import open_socket

    accepted, _ = await open_socket(bob, room.slug)
    assert accepted is (action == "kick")  # a public room: a kicked member may come back


async def test_archive_closes_every_socket_of_the_room(layer, live_cast, connect):
    owner_sock, _ = await connect(live_cast["owner"], live_cast["room"])
    bob_sock, _ = await connect(live_cast["bob"], live_cast["room"])
    await database_sync_to_async(services.room_set_archived)(
        user=live_cast["owner"], room=live_cast["room"], archived=True
    )
    await _closed(bob_sock, "archived")
    await _closed(owner_sock, "archived")


async def test_admin_deactivation_closes_every_socket_of_the_user(
    layer, live_cast, connect, user_factory
):
    from django.test import Client

    bob = live_cast["bob"]
    a, _ = await connect(bob, live_cast["room"])
    b, _ = await connect(bob, live_cast["other"])
    staff = await database_sync_to_async(user_factory)(
        username="boss", is_staff=True, is_superuser=True
    )

    def deactivate():
        client = Client()
        client.force_login(staff)
        return client.post(
            reverse("admin:accounts_user_changelist"),
            {"action": "deactivate", "_selected_action": [bob.id]},
        )

    response = await database_sync_to_async(deactivate)()
    assert response.status_code == 302
    await _closed(a, "deactivated")
    await _closed(b, "deactivated")
    await bob.arefresh_from_db()
    assert not bob.is_active
    from tests.chatrooms.conftest import open_socket

    accepted, _ = await open_socket(bob, live_cast["room"].slug)
    assert not accepted


async def test_admin_soft_delete_reaches_open_rooms(layer, live_cast, connect, user_factory):
    from django.test import Client

    message = await database_sync_to_async(Message.objects.create)(
        room=live_cast["room"], author=live_cast["bob"], body="rude"
    )
    sock, hello = await connect(live_cast["owner"], live_cast["room"])
    assert [m["id"] for m in hello["messages"]] == [message.id]
    staff = await database_sync_to_async(user_factory)(
        username="boss", is_staff=True, is_superuser=True
    )

    def soft_delete():
        client = Client()
        client.force_login(staff)
        return client.post(
            reverse("admin:chatrooms_message_changelist"),
            {"action": "soft_delete", "_selected_action": [message.id]},
        )

    assert (await database_sync_to_async(soft_delete)()).status_code == 302
    assert (await sock.recv_type("chat.delete")) == {"type": "chat.delete", "id": message.id}
    await message.arefresh_from_db()
    assert message.deleted_at is not None and message.body == "rude"


@pytest.mark.parametrize("role, allowed", [("member", False), ("moderator", True), ("owner", True)])
async def test_deleting_others_messages_over_websocket(
    layer, live_cast, connect, user_factory, role, allowed
):
    room = live_cast["room"]
    actor = (
        live_cast["owner"]
        if role == "owner"
        else await database_sync_to_async(user_factory)(username=f"actor{role}")
    )
    if role != "owner":
        await database_sync_to_async(Membership.objects.create)(room=room, user=actor, role=role)
    message = await database_sync_to_async(Message.objects.create)(
        room=room, author=live_cast["bob"], body="x"
    )
    sock, _ = await connect(actor, room)
    await sock.send({"type": "chat.delete", "id": message.id})
    frame = await sock.recv_type("chat.delete" if allowed else "error")
    if not allowed:
        assert frame["code"] == "forbidden"
    await message.arefresh_from_db()
    assert (message.deleted_at is not None) is allowed


def test_deactivation_ends_sessions_so_reactivation_signs_nobody_back_in(client, cast):
    bob = cast["member"]
    client.force_login(bob)
    assert client.get("/chats/").status_code == 200
    accounts_services.user_set_active(user=bob, active=False)
    accounts_services.user_set_active(user=bob, active=True)
    response = client.get("/chats/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_archived_room_invite_says_so(client, cast):
    invite = services.invite_create(user=cast["owner"], room=cast["room"])
    services.room_set_archived(user=cast["owner"], room=cast["room"], archived=True)
    client.force_login(cast["nonmember"])
    url = reverse("chatrooms:invite_redeem", args=[invite.token])
    for response in (client.get(url), client.post(url)):
        assert response.status_code == 410 and "archived" in response.content.decode()
