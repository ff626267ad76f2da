"""Lobby and room pages over HTTP: sign-in, visibility, forms, escaping."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse

from chatrooms.models import Membership, Message, Room

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "url",
    ["/chats/", "/chats/general/", "/chats/nope/"],
)
def test_chat_pages_need_sign_in(client, room_factory, alice, url):
    room_factory("General", owner=alice, slug="general")
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login") + "?next=")


@pytest.mark.parametrize("url", ["/chats/new/", "/chats/enter/"])
def test_lobby_forms_need_sign_in_and_post(client, alice, url):
    assert client.post(url, {"name": "x"}).status_code == 302
    assert not Room.objects.exists()
    client.force_login(alice)
    assert client.get(url).status_code == 405


def test_lobby_lists_my_rooms_with_unread_and_public_rooms(client, room_factory, alice, bob):
    general = room_factory("General", owner=alice, slug="general")
    room_factory("Random", owner=bob, slug="random")
    room_factory("Hidden", owner=bob, slug="hidden", is_private=True)
    Message.objects.create(room=general, author=bob, body="one")
    Message.objects.create(room=general, author=bob, body="two")
    client.force_login(alice)
    response = client.get("/chats/")
    assert response.status_code == 200
    mine = response.context["my_rooms"]
    assert [(r["room"].slug, r["unread"], r["online"]) for r in mine] == [("general", 2, 0)]
    assert [r.slug for r in response.context["public_rooms"]] == ["random"]
    body = response.content.decode()
    assert "Hidden" not in body  # a private room of others is invisible
    assert "What chat room would you like to enter?" in body


def test_create_room_makes_owner_and_redirects(client, alice):
    client.force_login(alice)
    response = client.post("/chats/new/", {"name": "Design", "topic": "Pixels", "is_private": "on"})
    assert response.status_code == 302
    room = Room.objects.get(name="Design")
    assert response["Location"] == f"/chats/{room.slug}/"
    assert room.is_private and room.topic == "Pixels" and room.created_by == alice
    assert Membership.objects.get(room=room, user=alice).role == "owner"


def test_create_room_form_errors_show_and_store_nothing(client, alice):
    client.force_login(alice)
    response = client.post("/chats/new/", {"name": "", "topic": "x" * 300})
    assert response.status_code == 400
    form = response.context["create_form"]
    assert "name" in form.errors and "topic" in form.errors
    assert "is-invalid" in response.content.decode()
    assert not Room.objects.exists()


def test_enter_box_creates_public_room_then_joins_it(client, alice, bob):
    client.force_login(alice)
    response = client.post("/chats/enter/", {"name": "Watercooler"})
    assert response["Location"] == "/chats/watercooler/"
    room = Room.objects.get(slug="watercooler")
    assert not room.is_private
    client.force_login(bob)
    assert client.post("/chats/enter/", {"name": "watercooler"})["Location"] == (
        "/chats/watercooler/"
    )
    assert Room.objects.count() == 1


def test_enter_box_refuses_others_private_room_and_bad_names(client, room_factory, alice, bob):
    room_factory("Secret", owner=alice, slug="secret", is_private=True)
    client.force_login(bob)
    response = client.post("/chats/enter/", {"name": "secret"})
    assert response.status_code == 403
    assert "not open to you" in response.content.decode()
    response = client.post("/chats/enter/", {"name": "!!!"})
    assert response.status_code == 400
    assert not Membership.objects.filter(user=bob).exists()


def test_room_page_joins_public_room_and_has_accessible_parts(client, room_factory, alice, bob):
    room_factory("General", owner=alice, slug="general", topic="All <b>hands</b>")
    client.force_login(bob)
    response = client.get("/chats/general/")
    assert response.status_code == 200
    assert Membership.objects.get(room__slug="general", user=bob).role == "member"
    body = response.content.decode()
    assert 'role="log"' in body and 'aria-label="Messages"' in body
    assert re.search(r"<label[^>]*>\s*Message\s*</label>", body)
    assert re.search(r"<button[^>]*>\s*Send\s*</button>", body)
    assert 'aria-label="Online"' in body
    assert 'role="status"' in body
    assert "All &lt;b&gt;hands&lt;/b&gt;" in body  # the topic is escaped
    config = json.loads(
        re.search(r'<script id="chat-config" type="application/json">(.*?)</script>', body).group(1)
    )
    assert config["wsPath"] == "/ws/chat/general/" and config["username"] == "bob"


def test_room_page_of_private_room_is_404_for_non_members(client, room_factory, alice, bob):
    room_factory("Secret", owner=alice, slug="secret", is_private=True)
    client.force_login(bob)
    assert client.get("/chats/secret/").status_code == 404
    assert not Membership.objects.filter(user=bob).exists()
    client.force_login(alice)
    assert client.get("/chats/secret/").status_code == 200


def test_leaving_a_room_one_is_not_in_answers_as_if_it_did_not_exist(
    client, room_factory, alice, bob
):
    """A non-member (or a banned one) learns nothing: the same 404 as a missing slug,
    where a private room's leave answered a redirect and "not a member"."""
    room_factory("Secret", owner=alice, slug="secret", is_private=True)
    general = room_factory("General", owner=alice, slug="general")
    Membership.objects.create(room=general, user=bob, is_banned=True)
    client.force_login(bob)
    for slug in ("secret", "general", "missing"):
        response = client.post(f"/chats/{slug}/leave/")
        assert response.status_code == 404, slug
        assert "member" not in response.content.decode().lower()
    assert Membership.objects.filter(room=general, user=bob, is_banned=True).exists()


def test_room_page_is_404_for_banned_missing_and_archived(client, room_factory, alice, bob):
    from django.utils import timezone

    general = room_factory("General", owner=alice, slug="general")
    room_factory("Old", owner=alice, slug="old", archived_at=timezone.now())
    Membership.objects.create(room=general, user=bob, is_banned=True)
    client.force_login(bob)
    assert client.get("/chats/general/").status_code == 404
    assert client.get("/chats/old/").status_code == 404
    assert client.get("/chats/missing/").status_code == 404


def test_display_names_and_room_names_are_escaped_in_the_lobby(client, room_factory, user_factory):
    evil = user_factory(username="evil", display_name="<script>alert(1)</script>")
    room_factory("<img src=x onerror=alert(1)>", owner=evil, slug="evil-room")
    client.force_login(evil)
    body = client.get("/chats/").content.decode()
    assert "<img src=x onerror" not in body and "<script>alert(1)" not in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body


# --- Invite links: opening one changes nothing, joining is a POST ---------------------


def _writes(queries) -> list[str]:
    return [
        q["sql"]
        for q in queries
        if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE", "REPLACE"))
    ]


def _sign_in_next(location: str) -> str:
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(location)
    assert parts.path == reverse("account_login")
    return parse_qs(parts.query)["next"][0]


def _invite_row(invite) -> dict:
    from chatrooms.models import Invite

    return Invite.objects.filter(id=invite.id).values().get()


@pytest.fixture
def private_room(room_factory, alice, bob):
    """alice's private room with bob in it and a topic."""
    return room_factory(
        "Launch <Plans>",
        owner=alice,
        members=[bob],
        slug="launch",
        is_private=True,
        topic="Dates, owners and risks",
    )


@pytest.fixture
def carol(user_factory):
    return user_factory(username="carol", display_name="Carol")


def test_opening_an_invite_shows_the_room_and_a_join_form_and_writes_nothing(
    client, private_room, alice, carol
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from chatrooms import services

    invite = services.invite_create(user=alice, room=private_room, max_uses=1)
    url = reverse("chatrooms:invite_redeem", args=[invite.token])
    before = _invite_row(invite)
    client.force_login(carol)
    with CaptureQueriesContext(connection) as queries:
        page = client.get(url)
        head = client.head(url)
    assert page.status_code == 200 and head.status_code == 200
    assert _writes(queries.captured_queries) == []
    assert _invite_row(invite) == before
    assert not Membership.objects.filter(room=private_room, user=carol).exists()

    body = page.content.decode()
    assert "<bdi>Launch &lt;Plans&gt;</bdi>" in body
    assert "<bdi>Dates, owners and risks</bdi>" in body
    assert "Private" in body and "2 members" in body
    assert (
        '<bdi class="person-name">Alice Liddell</bdi> <bdi class="person-handle">@alice</bdi>'
        " invited you to join" in body
    )
    form = re.search(r'<form method="post">(.*?)</form>', body, re.S)
    assert form, "a POST form"
    assert 'name="csrfmiddlewaretoken"' in form[1]
    assert re.search(r'<button type="submit"[^>]*>Join room</button>', form[1])
    assert 'name="robots" content="noindex"' in body


def test_a_member_opening_an_invite_gets_open_room_and_spends_nothing(
    client, private_room, alice, bob
):
    from chatrooms import services

    invite = services.invite_create(user=alice, room=private_room, max_uses=1)
    client.force_login(bob)
    body = client.get(reverse("chatrooms:invite_redeem", args=[invite.token])).content.decode()
    assert re.search(r'<a class="btn btn-primary" href="/chats/launch/">Open room</a>', body)
    assert "Join room" not in body and '<form method="post">' not in body
    response = client.post(reverse("chatrooms:invite_redeem", args=[invite.token]))
    assert response["Location"] == "/chats/launch/"
    assert _invite_row(invite)["use_count"] == 0


def test_a_one_use_invite_survives_any_number_of_opens_then_one_post_spends_it(
    client, private_room, alice, carol, user_factory
):
    from chatrooms import services

    invite = services.invite_create(user=alice, room=private_room, max_uses=1)
    url = reverse("chatrooms:invite_redeem", args=[invite.token])
    before = _invite_row(invite)
    dave = user_factory(username="dave")
    for person in (carol, dave):  # a preview bot signed in as anyone, as often as it likes
        client.force_login(person)
        for _ in range(5):
            assert client.get(url).status_code == 200
            assert client.head(url).status_code == 200
    assert _invite_row(invite) == before

    client.force_login(carol)
    response = client.post(url)
    assert response.status_code == 302 and response["Location"] == "/chats/launch/"
    assert Membership.objects.filter(room=private_room, user=carol, role="member").exists()
    assert _invite_row(invite)["use_count"] == 1

    # Spent: the next person is told so on opening, and a POST grants nothing either.
    client.force_login(dave)
    response = client.get(url)
    assert response.status_code == 410
    assert "It has been used as many times as it allows." in response.content.decode()
    assert client.post(url).status_code == 410
    assert not Membership.objects.filter(room=private_room, user=dave).exists()
    assert _invite_row(invite)["use_count"] == 1


@pytest.mark.parametrize(
    "state, status",
    [("expired", 410), ("revoked", 410), ("used_up", 410), ("archived", 410), ("banned", 403)],
)
def test_a_dead_invite_says_why_on_opening_and_counts_nothing(
    client, private_room, alice, carol, state, status
):
    from datetime import timedelta

    from django.utils import timezone

    from chatrooms import services
    from chatrooms.models import Invite

    invite = services.invite_create(user=alice, room=private_room, max_uses=3)
    if state == "expired":
        Invite.objects.filter(id=invite.id).update(expires_at=timezone.now() - timedelta(1))
    elif state == "revoked":
        services.invite_revoke(user=alice, invite=invite)
    elif state == "used_up":
        Invite.objects.filter(id=invite.id).update(use_count=3)
    elif state == "archived":
        services.room_set_archived(user=alice, room=private_room, archived=True)
    else:
        Membership.objects.create(room=private_room, user=carol, is_banned=True)
    before = _invite_row(invite)
    client.force_login(carol)
    url = reverse("chatrooms:invite_redeem", args=[invite.token])
    response = client.get(url)
    assert response.status_code == status
    assert "This invite link does not work" in response.content.decode()
    assert client.head(url).status_code == status
    assert client.post(url).status_code == status  # the page and the join agree
    assert _invite_row(invite) == before
    assert not Membership.objects.filter(room=private_room, user=carol, is_banned=False).exists()


def test_joining_needs_the_forms_csrf_token(private_room, alice, carol):
    from django.test import Client

    from chatrooms import services

    invite = services.invite_create(user=alice, room=private_room)
    url = reverse("chatrooms:invite_redeem", args=[invite.token])
    client = Client(enforce_csrf_checks=True)
    client.force_login(carol)
    assert client.post(url).status_code == 403  # a cross-site form cannot join anyone
    assert _invite_row(invite)["use_count"] == 0
    assert not Membership.objects.filter(room=private_room, user=carol).exists()

    page = client.get(url).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]
    response = client.post(url, {"csrfmiddlewaretoken": token})
    assert response["Location"] == "/chats/launch/"
    assert Membership.objects.filter(room=private_room, user=carol).exists()


def test_an_invite_answers_get_head_and_post_only(client, private_room, alice, carol):
    from chatrooms import services

    invite = services.invite_create(user=alice, room=private_room)
    url = reverse("chatrooms:invite_redeem", args=[invite.token])
    client.force_login(carol)
    for method in (client.put, client.delete, client.patch):
        assert method(url).status_code == 405
    assert _invite_row(invite)["use_count"] == 0


def test_signed_out_post_joins_nobody_and_goes_to_sign_in(client, private_room, alice):
    from chatrooms import services

    invite = services.invite_create(user=alice, room=private_room)
    url = reverse("chatrooms:invite_redeem", args=[invite.token])
    response = client.post(url)
    assert response.status_code == 302
    assert _sign_in_next(response["Location"]) == url
    assert _invite_row(invite)["use_count"] == 0


def test_a_visitor_without_an_account_signs_up_from_the_link_and_comes_back_to_join(
    client, private_room, alice
):
    from chatrooms import services

    invite = services.invite_create(user=alice, room=private_room, max_uses=1)
    url = reverse("chatrooms:invite_redeem", args=[invite.token])
    before = _invite_row(invite)
    login = client.get(url)["Location"]
    assert _sign_in_next(login) == url
    assert _invite_row(invite) == before

    # The sign-in page's "sign up" link keeps `next`; so does the sign-up form.
    login_page = client.get(login).content.decode()
    signup = re.search(r'href="(/accounts/signup/\?next=[^"]+)"', login_page)
    assert signup, "a sign-up link carrying next"
    signup_url = signup[1].replace("&amp;", "&")
    signup_page = client.get(signup_url).content.decode()
    assert re.search(rf'name="next" value="{re.escape(url)}"', signup_page)
    response = client.post(
        signup_url,
        {
            "username": "newcomer",
            "email": "newcomer@example.com",
            "password1": "a-long-fine-secret",
            "password2": "a-long-fine-secret",
            "next": url,
        },
    )
    assert response.status_code == 302 and response["Location"] == url

    # Back on the invite's page, signed in and not joined yet: they click Join.
    page = client.get(url)
    assert page.status_code == 200 and "Join room" in page.content.decode()
    assert not Membership.objects.filter(room=private_room, user__username="newcomer").exists()
    assert _invite_row(invite) == before
    assert client.post(url)["Location"] == "/chats/launch/"
    assert Membership.objects.filter(room=private_room, user__username="newcomer").exists()
    assert _invite_row(invite)["use_count"] == 1


# --- Names that cannot deceive: @username beside display names, bidi isolated ---------


def test_settings_members_show_display_name_and_username_each_isolated(
    client, room_factory, alice, bob, user_factory
):
    from chatrooms import services

    # "аlice": a Cyrillic а, a look-alike of alice's username as a display name.
    mallory = user_factory(username="mallory", display_name="\u0430lice")
    room = room_factory("General", owner=alice, members=[bob, mallory], slug="general")
    services.invite_create(user=alice, room=room)
    client.force_login(alice)
    body = client.get(reverse("chatrooms:room_settings", args=["general"])).content.decode()
    cells = re.findall(r'<th scope="row" class="fw-normal">(.*?)</th>', body, re.S)
    rows = {re.search(r"@([\w.@+-]+)</bdi>$", cell)[1]: cell for cell in cells}
    assert len(rows) == 3
    assert rows["alice"] == (
        '<bdi class="person-name">Alice Liddell</bdi> <bdi class="person-handle">@alice</bdi>'
    )
    assert rows["mallory"] == (
        '<bdi class="person-name">\u0430lice</bdi> <bdi class="person-handle">@mallory</bdi>'
    )
    # No display name: the username once.
    assert rows["bob"] == '<bdi class="person-name">@bob</bdi>'
    # The invite list says who made each link the same way.
    assert (
        '· by <bdi class="person-name">Alice Liddell</bdi> <bdi class="person-handle">@alice</bdi>'
        in body
    )
    assert "Room settings: <bdi>General</bdi>" in body


def test_lobby_isolates_room_names_and_topics(client, room_factory, alice, bob):
    room_factory(
        "\u05e9\u05dc\u05d5\u05dd 1", owner=alice, slug="mine", topic="\u05e0\u05d5\u05e9\u05d0"
    )
    room_factory("Other", owner=bob, slug="other", topic="Theirs")
    client.force_login(alice)
    body = client.get("/chats/").content.decode()
    assert (
        '<a class="lobby-room-name" href="/chats/mine/"><bdi>\u05e9\u05dc\u05d5\u05dd 1</bdi></a>'
        in body
    )
    assert '<p class="lobby-room-topic"><bdi>\u05e0\u05d5\u05e9\u05d0</bdi></p>' in body
    assert '<a class="lobby-room-name" href="/chats/other/"><bdi>Other</bdi></a>' in body
    assert '<p class="lobby-room-topic"><bdi>Theirs</bdi></p>' in body


def test_profile_shows_how_others_see_the_name(client, alice, bob):
    client.force_login(alice)
    body = client.get(reverse("profile")).content.decode()
    assert (
        '<bdi class="person-name">Alice Liddell</bdi> <bdi class="person-handle">@alice</bdi>'
        in body
    )
    client.force_login(bob)
    assert '<bdi class="person-name">@bob</bdi>' in client.get(reverse("profile")).content.decode()


def test_the_person_stylesheet_isolates_names():
    from pathlib import Path

    from django.conf import settings

    css = (Path(settings.BASE_DIR) / "static" / "css" / "site.css").read_text()
    rule = re.search(r"\.person-name,\s*\.person-handle\s*\{([^}]*)\}", css)
    assert rule and "unicode-bidi: isolate" in rule[1]
    chat_css = (Path(settings.BASE_DIR) / "static" / "chat" / "chat.css").read_text()
    rule = re.search(r"\.chat-msg-author,\s*\.chat-msg-text,[^{]*\{([^}]*)\}", chat_css)
    assert rule and "unicode-bidi: isolate" in rule[1]


# --- Archived rooms stay readable; moderation asks first ------------------------------


@pytest.fixture
def archived(room_factory, message_factory, alice, bob):
    """alice's archived public room "Old Plans", bob a member, two messages."""
    from django.utils import timezone

    room = room_factory("Old Plans", owner=alice, members=[bob], slug="old", topic="Q3")
    message_factory(room, alice, "First <b>idea</b>")
    message_factory(room, bob, "\u202eevil\nsecond line")
    room.archived_at = timezone.now()
    room.save(update_fields=["archived_at"])
    return room


def test_an_archived_room_is_readable_by_its_members_and_read_only(client, archived, bob):
    client.force_login(bob)
    response = client.get("/chats/old/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "This room is archived: read-only." in body
    log = body.split('role="log" aria-label="Messages"', 1)[1]
    articles = re.findall(r"<article.*?</article>", log, re.S)
    assert len(articles) == 2
    # Escaped, isolated, in order, as the client shows them.
    assert '<bdi class="chat-msg-text">First &lt;b&gt;idea&lt;/b&gt;</bdi>' in articles[0]
    assert (
        '<bdi class="chat-msg-author person-name">Alice Liddell</bdi> '
        '<bdi class="person-handle">@alice</bdi>' in articles[0]
    )
    assert '<bdi class="chat-msg-text">\u202eevil\nsecond line</bdi>' in articles[1]
    assert '<bdi class="chat-msg-author person-name">@bob</bdi>' in articles[1]
    # No composer, no client, no socket; nothing to unarchive for a member.
    for absent in ("chat-config", "chat/chat.js", 'id="chat-input"', ">Send<", "Unarchive"):
        assert absent not in body, absent
    assert "Leave room" in body


def test_the_owner_unarchives_from_the_archived_room_page(client, archived, alice):
    client.force_login(alice)
    body = client.get("/chats/old/").content.decode()
    form = re.search(r'<form method="post" action="/chats/old/settings/">(.*?)</form>', body, re.S)
    assert form and "Unarchive room" in form[1] and 'name="action" value="unarchive"' in form[1]
    response = client.post(
        "/chats/old/settings/", {"action": "unarchive", "back": "room"}, follow=True
    )
    assert response.redirect_chain[-1][0] == "/chats/old/"
    archived.refresh_from_db()
    assert archived.archived_at is None
    body = response.content.decode()
    assert "chat-config" in body and "Room unarchived." in body


def test_an_archived_room_is_404_for_non_members_and_the_banned(client, archived, user_factory):
    from chatrooms.models import Membership

    carol = user_factory(username="carol")
    dave = user_factory(username="dave")
    Membership.objects.create(room=archived, user=dave, is_banned=True)
    for person in (carol, dave):
        client.force_login(person)
        assert client.get("/chats/old/").status_code == 404, person
        assert "Old Plans" not in client.get("/chats/").content.decode()
    # Visiting a public archived room joins nobody.
    assert not Membership.objects.filter(room=archived, user=carol).exists()


def test_an_archived_room_pages_back_through_its_history(
    client, room_factory, message_factory, alice, settings
):
    from django.utils import timezone

    settings.CHAT_HISTORY_PAGE = 2
    room = room_factory("Old", owner=alice, slug="old")
    ids = [message_factory(room, alice, f"m{n}").id for n in range(5)]
    Room.objects.filter(id=room.id).update(archived_at=timezone.now())
    client.force_login(alice)
    body = client.get("/chats/old/").content.decode()
    assert re.findall(r'data-id="(\d+)"', body) == [str(i) for i in ids[3:]]
    assert f'href="?before={ids[3]}"' in body and "beginning of the room" not in body
    body = client.get(f"/chats/old/?before={ids[1]}").content.decode()
    assert re.findall(r'data-id="(\d+)"', body) == [str(ids[0])]
    assert "Older messages" not in body and "This is the beginning of the room" in body
    assert "Latest messages" in body
    assert client.get("/chats/old/?before=x").status_code == 404


def test_the_lobby_lists_my_archived_rooms_under_archived(client, archived, room_factory, bob):
    from django.utils import timezone

    room_factory("Not Mine", owner=None, slug="not-mine", archived_at=timezone.now())
    client.force_login(bob)
    response = client.get("/chats/")
    body = response.content.decode()
    section = re.search(r'aria-labelledby="archived-rooms-heading">(.*?)</section>', body, re.S)
    assert section, "no Archived section"
    assert '<a class="lobby-room-name" href="/chats/old/"><bdi>Old Plans</bdi></a>' in section[1]
    assert "Not Mine" not in body
    assert "Old Plans" not in [item["room"].name for item in response.context["my_rooms"]]


def test_the_lobby_has_no_archived_section_without_archived_rooms(client, room, bob):
    client.force_login(bob)
    assert "archived-rooms-heading" not in client.get("/chats/").content.decode()


@pytest.mark.parametrize(
    "action, question, consequence",
    [
        ("kick", "Kick", "They are removed from <bdi>General</bdi>; the room is public"),
        ("ban", "Ban", "cannot come back through any invite until unbanned"),
        ("transfer", "Make", "You become a moderator and cannot undo this yourself."),
    ],
)
def test_kick_ban_and_make_owner_ask_first_naming_the_person(
    client, room, alice, user_factory, action, question, consequence
):
    carol = user_factory(username="carol", display_name="Carol <C>")
    Membership.objects.create(room=room, user=carol)
    client.force_login(alice)
    url = reverse("chatrooms:room_settings", args=["general"])
    # The settings page: the form asks (ask=1), the question is in its <template>.
    body = client.get(url).content.decode()
    label = {"kick": "Kick", "ban": "Ban", "transfer": "Make owner"}[action]
    form = re.search(
        rf'<form method="post" data-confirm="{label}">((?:(?!</form>).)*'
        rf'value="{action}"(?:(?!</form>).)*)</form>',
        body,
        re.S,
    )
    assert form, f"no asking form for {action}"
    assert '<input type="hidden" name="ask" value="1">' in form[1]
    person = (
        '<bdi class="person-name">Carol &lt;C&gt;</bdi> <bdi class="person-handle">@carol</bdi>'
    )
    assert f"{question} {person}" in form[1] and consequence in form[1]
    # Without a script: ask=1 answers the question as a page and changes nothing.
    page = client.post(url, {"action": action, "user": carol.id, "ask": "1"})
    assert page.status_code == 200
    text = page.content.decode()
    assert f"{question} {person}" in text and consequence in text
    assert f'<input type="hidden" name="user" value="{carol.id}">' in text
    assert 'name="ask"' not in text
    membership = Membership.objects.get(room=room, user=carol)
    assert (membership.role, membership.is_banned) == ("member", False)
    # Confirmed (no ask): done.
    assert client.post(url, {"action": action, "user": carol.id}).status_code == 302
    assert not Membership.objects.filter(room=room, user=carol, role="member", is_banned=False)


def test_archive_asks_first_and_unarchive_does_not(client, room, alice):
    client.force_login(alice)
    url = reverse("chatrooms:room_settings", args=["general"])
    body = client.get(url).content.decode()
    form = re.search(r'<form method="post" data-confirm="Archive room">(.*?)</form>', body, re.S)
    assert form and 'name="ask" value="1"' in form[1]
    assert "Archive <bdi>General</bdi>?" in form[1]
    assert "Nobody can post; members can still read it; you can unarchive it." in form[1]
    page = client.post(url, {"action": "archive", "ask": "1"})
    assert page.status_code == 200 and "Archive <bdi>General</bdi>?" in page.content.decode()
    room.refresh_from_db()
    assert room.archived_at is None
    assert client.post(url, {"action": "archive"}).status_code == 302
    room.refresh_from_db()
    assert room.archived_at is not None
    body = client.get(url).content.decode()
    unarchive = re.search(r"<form method=\"post\">(?:(?!</form>).)*value=\"unarchive\"", body, re.S)
    assert unarchive and "ask" not in unarchive[0] and "data-confirm" not in unarchive[0]


def test_harmless_actions_do_not_ask(client, room, alice, bob):
    Membership.objects.filter(room=room, user=bob).delete()
    Membership.objects.create(room=room, user=bob)
    client.force_login(alice)
    body = client.get(reverse("chatrooms:room_settings", args=["general"])).content.decode()
    promote = re.search(r"<form method=\"post\">(?:(?!</form>).)*value=\"promote\"", body, re.S)
    assert promote and 'name="ask"' not in promote[0]


def test_asking_checks_who_asks_and_about_whom(client, room, alice, bob, user_factory):
    """The question page is no way around the rules: a moderator is not asked
    about the owner's actions, and an unknown member is 404."""
    Membership.objects.filter(room=room, user=bob).delete()
    Membership.objects.create(room=room, user=bob, role="moderator")
    carol = user_factory(username="carol")
    Membership.objects.create(room=room, user=carol)
    url = reverse("chatrooms:room_settings", args=["general"])
    client.force_login(bob)
    assert client.post(url, {"action": "archive", "ask": "1"}).status_code == 403
    assert client.post(url, {"action": "transfer", "user": carol.id, "ask": "1"}).status_code == 403
    assert client.post(url, {"action": "ban", "user": 2**40, "ask": "1"}).status_code == 404
    assert client.post(url, {"action": "ban", "user": carol.id, "ask": "1"}).status_code == 200
    assert not Membership.objects.get(room=room, user=carol).is_banned


# --- Creating a room whose name is taken (helper "pages") ----------------------------


def test_creating_a_room_with_a_taken_name_offers_to_open_it(client, room_factory, alice, bob):
    room_factory("General", owner=bob, slug="general")
    client.force_login(alice)
    response = client.post(reverse("chatrooms:room_create"), {"name": " general ", "topic": ""})
    assert response.status_code == 400
    body = response.content.decode()
    assert (
        'A room named <bdi>General</bdi> already exists: <a href="/chats/general/">open it</a>,'
        " or choose another name." in body
    )
    assert Room.objects.count() == 1
    assert not Membership.objects.filter(user=alice).exists()


def test_the_taken_name_error_escapes_the_name(client, room_factory, alice, bob):
    room_factory("<b>x</b>", owner=bob, slug="b-x")
    client.force_login(alice)
    response = client.post(reverse("chatrooms:room_create"), {"name": "<B>X</B>"})
    assert response.status_code == 400
    body = response.content.decode()
    assert "<bdi>&lt;b&gt;x&lt;/b&gt;</bdi> already exists" in body
    assert "<b>x</b>" not in body


def test_banned_from_the_room_of_that_name_no_link_is_offered(client, room_factory, alice, bob):
    room = room_factory("General", owner=bob, slug="general")
    Membership.objects.create(room=room, user=alice, is_banned=True)
    client.force_login(alice)
    response = client.post(reverse("chatrooms:room_create"), {"name": "General"})
    assert response.status_code == 400
    body = response.content.decode()
    assert "A room named General already exists: choose another name." in body
    assert 'href="/chats/general/"' not in body


def test_a_private_room_of_others_does_not_block_its_name(client, room_factory, alice, bob):
    room_factory("Leads", owner=bob, slug="leads", is_private=True)
    client.force_login(alice)
    response = client.post(reverse("chatrooms:room_create"), {"name": "Leads"})
    assert response.status_code == 302
    assert response["Location"] == "/chats/leads-2/"
