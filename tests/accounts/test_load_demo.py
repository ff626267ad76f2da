"""The demo data of fixtures/ loads once, and its users can sign in."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

pytestmark = pytest.mark.django_db


def test_demo_data_loads_once_and_users_sign_in(client, settings):
    settings.DEBUG = True
    call_command("load_demo")
    users = get_user_model().objects
    assert set(users.values_list("username", flat=True)) >= {"admin", "alice", "bob", "carol"}
    assert users.get(username="admin").is_staff
    from chatrooms.models import Membership, Message, Room

    assert set(Room.objects.values_list("slug", flat=True)) == {"general", "random", "leads"}
    assert Room.objects.get(slug="leads").is_private
    assert Membership.objects.get(room__slug="general", user__username="alice").role == "owner"
    assert Message.objects.filter(room__slug="general").count() >= 10
    response = client.post(
        "/accounts/login/", {"login": "alice@example.com", "password": "demo-password-123"}
    )
    assert response.status_code == 302
    count = users.count()
    users.filter(username="bob").update(display_name="Changed")
    call_command("load_demo")  # a second run leaves the data alone
    assert users.count() == count
    assert users.get(username="bob").display_name == "Changed"


def test_demo_data_refused_in_production(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DJANGO_DEBUG=0"):
        call_command("load_demo")
    assert not get_user_model().objects.exists()
