"""Private rooms, invite links and their end, moderation and the admin, in
real browsers: a room's owner invites someone who has no account yet, kicks
someone whose page is open, revokes a link; staff deactivate an account
whose page is open."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import INVITE_URL, PASSWORD, ROOM_URL, SIGN_IN_URL, field

pytestmark = pytest.mark.e2e

TIME = r"\d{2}:\d{2}"


def test_an_invite_brings_someone_without_an_account_into_a_private_room(people, site):
    alice = people("alice", display_name="Alice Liddell")
    alice.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.base)
    slug = alice.create_room("Launch Plans", topic="Dates, owners and risks", private=True)
    page = alice.page
    expect(page.get_by_text("Private", exact=True)).to_be_visible()
    expect(page.get_by_text("Dates, owners and risks")).to_be_visible()

    alice.open_settings()
    for heading in ("Name and topic", "Invite links", "Archive", "Members"):
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
    expect(page.get_by_text("You are the owner of this private room.")).to_be_visible()
    expect(page.get_by_text("No live invite links.")).to_be_visible()
    link = alice.create_invite(expires="1 day", max_uses=2)
    item = alice.invite_item(link)
    expect(item).to_contain_text("Used 0 of 2 times")
    expect(item).to_contain_text("by Alice Liddell")
    item.get_by_role("button", name="Copy link").click()
    expect(item.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == link

    # Someone without an account: the link sends them to sign in, which says
    # which room waits; "Sign up" in the top bar keeps the invitation, and
    # sign-up comes back to the link's page, which shows the room and joins
    # only when Join is pressed.
    bob = people("bob", account="none")
    bob.page.goto(link)
    expect(bob.page).to_have_url(SIGN_IN_URL)
    expect(bob.page).to_have_title("Sign in to join Launch Plans · Chat")
    expect(
        bob.page.get_by_role("heading", name="Sign in to join Launch Plans", exact=True)
    ).to_be_visible()
    bob.page.get_by_role("navigation", name="Main").get_by_role(
        "link", name="Sign up", exact=True
    ).click()
    expect(bob.page).to_have_url(re.compile(r"/accounts/signup/\?next=%2Fchats%2Finvite%2F"))
    expect(
        bob.page.get_by_role("heading", name="Sign up to join Launch Plans", exact=True)
    ).to_be_visible()
    # The page's own "sign in" link keeps it too, and so does its way back.
    sign_in = bob.page.get_by_role("main").get_by_role("link", name="sign in", exact=True)
    expect(sign_in).to_have_attribute("href", re.compile(r"\?next=%2Fchats%2Finvite%2F"))
    bob.sign_up(here=True, lands=INVITE_URL)
    invitation = bob.page.get_by_role("region", name="Launch Plans")
    expect(invitation.get_by_role("heading", name="Launch Plans")).to_be_visible()
    expect(invitation).to_contain_text(f"Alice Liddell @{alice.username}")
    expect(invitation).to_contain_text("Private")
    expect(invitation).to_contain_text("1 member")
    expect(invitation).to_contain_text("Dates, owners and risks")
    # Opening the link spent nothing.
    page.reload()
    expect(alice.invite_item(link)).to_contain_text("Used 0 of 2 times")
    bob.page.get_by_role("button", name="Join room").click()
    expect(bob.page).to_have_url(re.compile(rf"/chats/{slug}/$"))
    bob.expect_connected()
    expect(bob.page.get_by_role("heading", name="Launch Plans")).to_be_visible()
    # A member, not a moderator: no way to the settings.
    expect(bob.page.get_by_role("link", name="Room settings")).to_have_count(0)

    alice.open_room(slug)
    expect(alice.online.get_by_role("listitem")).to_have_count(2)
    expect(alice.online).to_contain_text(bob.username)

    alice.say("Welcome Bob! The launch is on the 14th.")
    welcome = bob.message("Welcome Bob! The launch is on the 14th.")
    expect(welcome).to_have_count(1)
    expect(welcome).to_have_accessible_name(re.compile(rf"^Alice Liddell, {TIME}$"))
    bob.say("Thanks! I'll bring the checklist.")
    reply = alice.message("Thanks! I'll bring the checklist.")
    expect(reply).to_have_count(1)
    expect(reply).to_have_accessible_name(re.compile(rf"^{bob.username}, {TIME}$"))
    for person in (alice, bob):
        expect(person.articles).to_have_text(
            [re.compile("The launch is on the 14th"), re.compile("bring the checklist")]
        )

    # The link counted one use; bob is in the members table and in his lobby.
    alice.open_settings()
    expect(alice.invite_item(link)).to_contain_text("Used 1 of 2 times")
    expect(alice.member_row(bob.username)).to_contain_text("Member")
    bob.page.goto("/chats/")
    expect(
        bob.page.get_by_role("region", name="Your rooms").get_by_role("link", name="Launch Plans")
    ).to_be_visible()


def test_a_kicked_member_is_told_and_the_page_stays_closed(people):
    carol = people("carol", display_name="Carol")
    dave = people("dave", display_name="Dave")
    slug = carol.create_room("Hiring", private=True)
    carol.open_settings()
    link = carol.create_invite()
    # Signed in already: the link shows the room, Join lands him in it.
    dave.page.goto(link)
    dave.page.get_by_role("button", name="Join room").click()
    expect(dave.page).to_have_url(re.compile(rf"/chats/{slug}/$"))
    dave.expect_connected()
    dave.say("Hello, I'm in.")

    # carol keeps the room open in a tab of its own, and kicks from the settings.
    room = carol.new_page()
    room.goto(f"/chats/{slug}/")
    online = room.get_by_role("list", name="Online").get_by_role("listitem")
    expect(online).to_have_count(2)
    expect(room.get_by_role("log", name="Messages")).to_contain_text("Hello, I'm in.")
    carol.page.reload()
    row = carol.member_row(dave.username)
    expect(row).to_contain_text("Dave")
    expect(row).to_contain_text("Member")
    opened = dave.watch_sockets()
    carol.member_action("Kick", dave.username, done="Dave was removed from the room.")
    expect(carol.member_row(dave.username)).to_have_count(0)

    dave.expect_closed("You have been removed from this room.")
    expect(online).to_have_count(1)
    dave.expect_stays_closed(opened)
    expect(dave.page.get_by_role("alert")).to_have_count(1)
    # The private room is gone for him; a new invite would bring him back.
    assert dave.page.reload().status == 404


def test_staff_deactivate_an_account_whose_room_page_is_open(people, site):
    staff = site.create_user("root", display_name="Site Admin", staff=True)
    erin = people("erin", display_name="Erin")
    frank = people("frank", display_name="Frank")
    slug = erin.enter_room("Support")
    frank.open_room(slug)
    expect(erin.online.get_by_role("listitem")).to_have_count(2)

    admin = people(staff, account="existing")
    admin.page.get_by_role("link", name="Admin", exact=True).click()
    expect(admin.page.get_by_role("heading", name="Site administration")).to_be_visible()
    opened = frank.watch_sockets()
    admin.deactivate_in_admin(frank.username)

    frank.expect_closed("Your account has been deactivated.")
    expect(erin.online.get_by_role("listitem")).to_have_count(1)
    erin.say("Still here")  # the others chat on
    frank.expect_stays_closed(opened)
    expect(frank.message("Still here")).to_have_count(0)

    # Signed out everywhere: a reload asks him to sign in, and he cannot.
    frank.page.reload()
    expect(frank.page).to_have_url(SIGN_IN_URL)
    frank.page.get_by_label(field("Login")).fill(frank.username)
    frank.page.get_by_label(field("Password")).fill(PASSWORD)
    frank.page.get_by_role("button", name="Sign In").click()
    expect(frank.page).not_to_have_url(ROOM_URL)
    expect(frank.page.get_by_text("This account is inactive")).to_be_visible()


def test_reactivating_an_account_does_not_bring_its_old_sessions_back(people, site):
    staff = site.create_user("root", staff=True)
    mona = people("mona")
    admin = people(staff, account="existing")
    admin.deactivate_in_admin(mona.username)
    mona.page.goto("/chats/")
    expect(mona.page).to_have_url(SIGN_IN_URL)

    # "Deactivate: end their sessions": once back, she signs in again.
    admin.reactivate_in_admin(mona.username)
    mona.page.goto("/chats/")
    expect(mona.page).to_have_url(SIGN_IN_URL, timeout=2_000)


def test_revoked_and_used_up_links_do_not_work(people):
    grace = people("grace", display_name="Grace")
    heidi = people("heidi")
    ivan = people("ivan")
    slug = grace.create_room("Board", private=True)
    grace.open_settings()
    revoked = grace.create_invite(expires="Never")
    once = grace.create_invite(expires="1 hour", max_uses=1)
    expect(grace.invite_item(revoked)).to_contain_text("never expires")

    grace.invite_item(revoked).get_by_role("button", name="Revoke").click()
    grace.expect_flash("Invite link revoked.")
    assert grace.links_shown() == [once]

    response = heidi.page.goto(revoked)
    assert response.status == 410
    expect(heidi.page.get_by_role("heading", name="This invite link does not work")).to_be_visible()
    expect(heidi.page.get_by_text("It was revoked")).to_be_visible()
    assert heidi.page.goto(f"/chats/{slug}/").status == 404  # it granted nothing

    # One use: ivan only looks (that spends nothing), heidi takes it, ivan is too late.
    assert ivan.page.goto(once).status == 200
    heidi.page.goto(once)
    heidi.page.get_by_role("button", name="Join room").click()
    expect(heidi.page).to_have_url(re.compile(rf"/chats/{slug}/$"))
    heidi.expect_connected()
    response = ivan.page.reload()
    assert response.status == 410
    expect(ivan.page.get_by_role("heading", name="This invite link does not work")).to_be_visible()
    expect(ivan.page.get_by_text("It has been used as many times as it allows.")).to_be_visible()
    ivan.page.get_by_role("link", name="Back to the rooms").click()
    expect(ivan.page.get_by_role("link", name="Board")).to_have_count(0)

    grace.page.reload()
    expect(grace.invite_links).to_have_count(0)
    expect(grace.page.get_by_text("No live invite links.")).to_be_visible()


def test_a_moderator_bans_and_unbans_and_no_link_lets_a_banned_person_in(people):
    judy = people("judy", display_name="Judy")
    kim = people("kim", display_name="Kim")
    leo = people("leo", display_name="Leo")
    slug = judy.create_room("Town Hall", topic="Questions for the founders")
    for person in (kim, leo):
        person.open_room(slug)  # a public room: opening it joins
    judy.open_settings()
    judy.member_action("Make moderator", leo.username, done="Leo is now a moderator.")
    expect(judy.member_row(leo.username)).to_contain_text("Moderator")
    link = judy.create_invite()

    # The moderator acts on members only, and has no owner's buttons.
    leo.open_room(slug)
    leo.open_settings()
    expect(leo.page.get_by_text("You are a moderator of this public room.")).to_be_visible()
    expect(leo.page.get_by_role("heading", name="Archive")).to_have_count(0)
    expect(leo.member_row(judy.username).get_by_role("button")).to_have_count(0)
    expect(leo.member_row(kim.username).get_by_role("button")).to_have_text(["Kick", "Ban"])

    opened = kim.watch_sockets()
    leo.member_action("Ban", kim.username, done="Kim is banned from the room.")
    expect(leo.member_row(kim.username)).to_contain_text("Banned")
    kim.expect_closed("You have been banned from this room.")
    kim.expect_stays_closed(opened, seconds=1)

    # No way back in: not the room's address, not an invite link.
    assert kim.page.reload().status == 404
    response = kim.page.goto(link)
    assert response.status == 403
    expect(kim.page.get_by_text("You cannot join this room.")).to_be_visible()

    leo.member_action("Unban", kim.username, done="Kim is no longer banned.")
    expect(leo.member_row(kim.username)).to_have_count(0)
    kim.page.goto(link)
    kim.page.get_by_role("button", name="Join room").click()
    expect(kim.page).to_have_url(re.compile(rf"/chats/{slug}/$"))
    kim.expect_connected()
    kim.say("Thanks for letting me back in")
    judy.open_room(slug)
    expect(judy.message("Thanks for letting me back in")).to_have_count(1)
