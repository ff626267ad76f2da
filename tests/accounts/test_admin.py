"""The users list in the admin: its own section, few columns, a readable last login."""

from __future__ import annotations

import datetime

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_the_users_are_in_a_section_of_their_own(client, user_factory):
    client.force_login(user_factory(username="boss", is_staff=True, is_superuser=True))
    apps = {app["app_label"]: app["name"] for app in client.get("/admin/").context["app_list"]}
    # allauth's "account" app is "Accounts" (email addresses): ours must not be too.
    assert apps["accounts"] == "People"
    names = [name.casefold() for name in apps.values()]
    assert len(names) == len(set(names)), names


def test_the_users_list_shows_the_day_of_the_last_login(client, user_factory, settings):
    settings.TIME_ZONE = "UTC"
    seen = user_factory(username="seen")
    seen.last_login = datetime.datetime(2026, 3, 4, 23, 30, tzinfo=datetime.UTC)
    seen.save(update_fields=["last_login"])
    user_factory(username="never")
    client.force_login(user_factory(username="boss", is_staff=True, is_superuser=True))
    url = reverse("admin:accounts_user_changelist")
    response = client.get(url, {"o": "5"})  # the fifth column: last login, oldest first
    assert response.context["cl"].list_display == [
        "action_checkbox",
        "username",
        "display_name",
        "email",
        "is_active",
        "last_login_day",
    ]
    body = response.content.decode()
    assert '<td class="field-last_login_day">4 Mar 2026</td>' in body
    assert '<td class="field-last_login_day">-</td>' in body
    ordered = [u.username for u in response.context["cl"].result_list]
    assert ordered.index("seen") < ordered.index("boss")
