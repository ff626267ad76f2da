"""No second room of the same name: the lobby's create form offers the existing one."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import field

pytestmark = pytest.mark.e2e


def test_creating_a_room_whose_name_is_taken_offers_to_open_it(people):
    uma = people("uma")
    vera = people("vera")
    slug = uma.create_room("Coffee Talk")

    page = vera.page
    page.goto("/chats/")
    form = page.get_by_role("region", name="Create a room")
    form.get_by_label(field("Name")).fill("  coffee TALK ")
    form.get_by_role("button", name="Create room").click()
    expect(page).to_have_url(re.compile(r"/chats/new/$"))
    form = page.get_by_role("region", name="Create a room")
    expect(form).to_contain_text(
        "A room named Coffee Talk already exists: open it, or choose another name."
    )
    form.get_by_role("link", name="open it").click()
    expect(page).to_have_url(re.compile(rf"/chats/{slug}/$"))
    vera.expect_connected()
    page.goto("/chats/")
    rooms = page.get_by_role("region", name="Your rooms")
    expect(rooms.get_by_role("link", name="Coffee Talk", exact=True)).to_have_count(1)
