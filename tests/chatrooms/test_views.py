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
