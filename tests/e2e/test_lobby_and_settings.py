"""The lobby and a room's settings as the README's screenshots show them
(tests/e2e/screenshots.py takes those): the lobby's unread and online
counts and the public rooms to join; the owner's view of the members, their
roles and what may be done to each, and the live invite links."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


def test_the_lobby_shows_unread_and_online_counts_and_rooms_to_join(people):
    uma = people("uma", display_name="Uma")
    vic = people("vic", display_name="Vic")
    slug = uma.create_room("Release Train", topic="Dates, owners and blockers")
    uma.page.goto("/chats/")  # away from the room while vic talks
    vic.create_room("Coffee Corner", topic="Beans and brewing")
    vic.create_room("Vic's Notes", private=True)
    vic.open_room(slug)  # a public room: opening it joins; his page stays open there
    vic.say("The release branch is cut.")
    vic.say("Tests are green.")

    uma.page.reload()
    lobby = uma.page
    mine = lobby.get_by_role("region", name="Your rooms")
    release = mine.get_by_role("listitem").filter(
        has=lobby.get_by_role("link", name="Release Train", exact=True)
    )
    expect(release).to_have_count(1)
    expect(release).to_contain_text("Dates, owners and blockers")
    expect(release).to_contain_text("2 unread messages")  # vic's two, none of her own
    expect(release).to_contain_text("1 online")  # vic, whose page is open there
    # Public rooms she is not in, with their topics; never someone's private room.
    public = lobby.get_by_role("region", name="Public rooms")
    expect(public.get_by_role("link", name="Coffee Corner", exact=True)).to_be_visible()
    expect(public).to_contain_text("Beans and brewing")
    expect(public.get_by_role("link", name="Release Train", exact=True)).to_have_count(0)
    expect(lobby.get_by_text("Vic's Notes")).to_have_count(0)

    # Opening a room from the lobby: the messages she missed are there.
    mine.get_by_role("link", name="Release Train", exact=True).click()
    uma.expect_connected()
    expect(uma.articles).to_have_text(
        [re.compile("The release branch is cut"), re.compile("Tests are green")]
    )
    expect(uma.online.get_by_role("listitem")).to_have_count(2)
    expect(uma.online.get_by_role("listitem").filter(has_text=vic.username)).to_be_visible()
    # vic's lobby lists his private room as his, with its badge.
    vic.page.goto("/chats/")
    notes = (
        vic.page.get_by_role("region", name="Your rooms")
        .get_by_role("listitem")
        .filter(has=vic.page.get_by_role("link", name="Vic's Notes", exact=True))
    )
    expect(notes).to_contain_text("Private")
    expect(notes).to_contain_text("0 online")


def test_the_owner_sees_each_members_role_and_hands_moderation_out_and_back(people):
    wes = people("wes", display_name="Wes")
    xia = people("xia", display_name="Xia")
    yan = people("yan", display_name="Yan")
    slug = wes.create_room("Roadmap", topic="Next quarter")
    for person in (xia, yan):
        person.open_room(slug)  # a public room: opening it joins
    wes.open_settings(slug)

    # The owner first; nothing to do to oneself.
    owner = wes.member_row(wes.username)
    expect(owner).to_contain_text("Owner")
    expect(owner.get_by_role("button")).to_have_count(0)
    wes.member_action("Make moderator", yan.username, done="Yan is now a moderator.")
    moderator = wes.member_row(yan.username)
    expect(moderator).to_contain_text("Moderator")
    expect(moderator.get_by_role("button")).to_have_text(
        ["Kick", "Ban", "Remove moderator", "Make owner"]
    )
    expect(wes.member_row(xia.username).get_by_role("button")).to_have_text(
        ["Kick", "Ban", "Make moderator", "Make owner"]
    )
    # Owner, then moderators, then members.
    expect(wes.page.get_by_role("rowheader")).to_have_text(
        [f"Wes @{wes.username}", f"Yan @{yan.username}", f"Xia @{xia.username}"]
    )

    # Two live links, newest first, with their use counts.
    forever = wes.create_invite(expires="Never")
    limited = wes.create_invite(expires="7 days", max_uses=10)
    assert wes.links_shown() == [limited, forever]
    expect(wes.invite_item(forever)).to_contain_text("Used 0 times")
    expect(wes.invite_item(forever)).to_contain_text("never expires")
    expect(wes.invite_item(limited)).to_contain_text("Used 0 of 10 times")

    wes.member_action("Remove moderator", yan.username, done="Yan is no longer a moderator.")
    expect(wes.member_row(yan.username)).to_contain_text("Member")
    expect(
        wes.page.get_by_role("button", name=f"Make moderator: {yan.username}", exact=True)
    ).to_be_visible()


def test_a_rename_reaches_pages_already_open(people):
    """The owner renames the room; a member's open page follows without a reload."""
    owner = people("xena")
    member = people("yuri")
    slug = owner.create_room("Ops Chat", topic="Pages and alerts")
    member.open_room(slug)
    heading = member.page.get_by_role("heading", level=1)
    expect(heading).to_have_text("Ops Chat")
    opened = member.watch_sockets()

    owner.open_settings(slug)
    naming = owner.page.get_by_role("region", name="Name and topic")
    naming.get_by_role("textbox").first.fill("Incident Room")
    naming.get_by_role("textbox").nth(1).fill("One incident at a time")
    naming.get_by_role("button", name="Save").click()

    expect(heading).to_have_text("Incident Room")
    expect(member.page.locator("#chat-room-topic")).to_have_text("One incident at a time")
    expect(member.page).to_have_title(re.compile("^Incident Room"))
    assert opened == []  # the same socket: no reload, no reconnect
