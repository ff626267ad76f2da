"""Accounts as a person meets them: sign up, sign in, sign out, reset, profile, admin."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.urls import reverse

pytestmark = pytest.mark.django_db


def _signed_in_username(client) -> str | None:
    response = client.get(reverse("profile"))
    if response.status_code != 200:
        return None
    return response.context["user"].username


def test_home_sends_visitors_to_sign_in_and_members_to_lobby(client, user_factory):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == reverse("account_login")
    client.force_login(user_factory())
    assert client.get("/")["Location"] == reverse("chatrooms:lobby")


def test_signup_creates_account_signs_in_and_mails_confirmation(client):
    response = client.post(
        reverse("account_signup"),
        {
            "username": "newbie",
            "email": "newbie@example.com",
            "password1": "correct-horse-battery",
            "password2": "correct-horse-battery",
        },
    )
    assert response.status_code == 302
    assert response["Location"] == "/chats/"
    user = get_user_model().objects.get(username="newbie")
    assert user.email == "newbie@example.com"
    assert _signed_in_username(client) == "newbie"
    # Verification is optional by default: a confirmation mail is still sent.
    assert len(mail.outbox) == 1
    assert "newbie@example.com" in mail.outbox[0].to


def test_signup_form_shows_errors_and_creates_nothing(client, user_factory):
    user_factory(username="taken")
    response = client.post(
        reverse("account_signup"),
        {"username": "taken", "email": "bad", "password1": "x", "password2": "y"},
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert "invalid-feedback" in body or "is-invalid" in body
    assert get_user_model().objects.filter(username="taken").count() == 1
    assert not get_user_model().objects.filter(email="bad").exists()


def test_mandatory_email_verification_does_not_sign_in(client, settings):
    settings.ACCOUNT_EMAIL_VERIFICATION = "mandatory"
    response = client.post(
        reverse("account_signup"),
        {
            "username": "careful",
            "email": "careful@example.com",
            "password1": "correct-horse-battery",
            "password2": "correct-horse-battery",
        },
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("account_email_verification_sent")
    assert _signed_in_username(client) is None
    assert len(mail.outbox) == 1


@pytest.mark.parametrize("login_field", ["username", "email"])
def test_sign_in_by_username_or_email(client, user_factory, login_field):
    user = user_factory(username="alice")
    response = client.post(
        reverse("account_login"),
        {"login": getattr(user, login_field), "password": user.raw_password},
    )
    assert response.status_code == 302
    assert response["Location"] == "/chats/"
    assert _signed_in_username(client) == "alice"


def test_sign_in_with_wrong_password_shows_error(client, user_factory):
    user = user_factory(username="alice")
    response = client.post(reverse("account_login"), {"login": user.username, "password": "nope"})
    assert response.status_code == 200
    assert "not correct" in response.content.decode()
    assert _signed_in_username(client) is None


def test_sign_in_attempts_are_rate_limited(client, user_factory):
    user = user_factory(username="alice")
    for _ in range(5):
        client.post(reverse("account_login"), {"login": user.username, "password": "nope"})
    # The right password no longer helps once the attempts are used up.
    response = client.post(
        reverse("account_login"), {"login": user.username, "password": user.raw_password}
    )
    assert response.status_code == 200
    assert "Too many failed login attempts" in response.content.decode()
    assert _signed_in_username(client) is None


def test_sign_up_refuses_a_username_with_look_alike_letters(client, user_factory):
    user_factory(username="alice")
    response = client.post(
        reverse("account_signup"),
        {
            "username": "\u0430lice",  # a Cyrillic "а", then Latin "lice"
            "email": "mallory@example.com",
            "password1": "correct-horse-battery",
            "password2": "correct-horse-battery",
        },
    )
    assert response.status_code == 200
    assert "username" in response.context["form"].errors
    assert not get_user_model().objects.filter(email="mallory@example.com").exists()


def test_the_session_cookie_is_httponly_and_samesite_lax(client, user_factory):
    # SameSite keeps the cookie off cross-site requests (a second line of defence
    # against cross-site WebSocket hijacking, behind the Origin check); HttpOnly
    # keeps it from page scripts.
    user = user_factory(username="alice")
    response = client.post(
        reverse("account_login"), {"login": user.username, "password": user.raw_password}
    )
    assert response.status_code == 302
    cookie = response.cookies["sessionid"]
    assert cookie["samesite"] == "Lax"
    assert cookie["httponly"] is True


def test_sign_out_needs_post(client, user_factory):
    client.force_login(user_factory(username="alice"))
    response = client.get(reverse("account_logout"))
    assert response.status_code == 200  # a confirmation page, not a sign-out
    assert _signed_in_username(client) == "alice"
    response = client.post(reverse("account_logout"))
    assert response.status_code == 302
    assert _signed_in_username(client) is None


def test_password_reset_mails_a_working_link(client, user_factory):
    user = user_factory(username="alice")
    response = client.post(reverse("account_reset_password"), {"email": user.email})
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    link = re.search(r"https?://[^/\s]+(/accounts/password/reset/key/\S+)", mail.outbox[0].body)
    assert link, mail.outbox[0].body
    response = client.get(link.group(1), follow=True)
    assert response.status_code == 200
    form_url = response.redirect_chain[-1][0] if response.redirect_chain else link.group(1)
    response = client.post(
        form_url, {"password1": "brand-new-secret-9", "password2": "brand-new-secret-9"}
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password("brand-new-secret-9")


def test_password_change(client, user_factory):
    user = user_factory(username="alice")
    client.force_login(user)
    response = client.post(
        reverse("account_change_password"),
        {
            "oldpassword": user.raw_password,
            "password1": "another-fine-secret",
            "password2": "another-fine-secret",
        },
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password("another-fine-secret")


def test_profile_needs_sign_in(client):
    response = client.get(reverse("profile"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


def test_profile_changes_display_name(client, user_factory):
    user = user_factory(username="alice")
    client.force_login(user)
    response = client.post(reverse("profile"), {"display_name": "  Alice   L.  "})
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.display_name == "Alice L."
    page = client.get(reverse("profile")).content.decode()
    assert "Alice L." in page


def test_profile_rejects_control_characters_and_keeps_old_name(client, user_factory):
    user = user_factory(username="alice", display_name="Alice")
    client.force_login(user)
    response = client.post(reverse("profile"), {"display_name": "evil\u202ename"})
    assert response.status_code == 200
    assert "letters, digits" in response.content.decode()
    user.refresh_from_db()
    assert user.display_name == "Alice"


def test_profile_escapes_display_name(client, user_factory):
    user = user_factory(username="alice", display_name="<script>alert(1)</script>")
    client.force_login(user)
    body = client.get(reverse("profile")).content.decode()
    assert "<script>alert(1)</script>" not in body
    assert "&lt;script&gt;" in body


def test_auth_pages_use_site_layout_and_local_bootstrap(client):
    body = client.get(reverse("account_login")).content.decode()
    assert 'aria-label="Main"' in body  # the site's navbar from base.html
    assert "/static/vendor/bootstrap/bootstrap.min.css" in body
    assert "cdn" not in body.lower()
    assert 'form-control" required id="id_login"' in body  # crispy-forms, bootstrap5


def test_admin_is_for_staff_only(client, user_factory):
    client.force_login(user_factory(username="plain"))
    response = client.get(reverse("admin:accounts_user_changelist"))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]

    staff = user_factory(username="boss", is_staff=True, is_superuser=True)
    client.force_login(staff)
    response = client.get(reverse("admin:accounts_user_changelist"))
    assert response.status_code == 200
    body = response.content.decode()
    # The join date is a filter ("By date joined"), the last login a column.
    assert "By date joined" in body and "Last login" in body


def test_admin_user_search_and_filters(client, user_factory):
    user_factory(username="zelda", email="zelda@hyrule.example")
    user_factory(username="link")
    client.force_login(user_factory(username="boss", is_staff=True, is_superuser=True))
    url = reverse("admin:accounts_user_changelist")
    found = client.get(url, {"q": "hyrule"}).context["cl"].result_list
    assert [u.username for u in found] == ["zelda"]
    staff_only = client.get(url, {"is_staff__exact": "1"}).context["cl"].result_list
    assert [u.username for u in staff_only] == ["boss"]
    inactive = client.get(url, {"is_active__exact": "0"}).context["cl"].result_list
    assert list(inactive) == []


# --- Sign-in and sign-up keep where the visitor was going (`next`) -----------------


def _top_bar_links(body: str) -> dict[str, str]:
    nav = body.split('aria-label="Main"', 1)[1].split("</nav>", 1)[0]
    return {
        text: href
        for href, text in re.findall(r'<a class="nav-link" href="([^"]*)">([^<]+)</a>', nav)
    }


@pytest.fixture
def invite(user_factory, room_factory):
    from chatrooms import services

    owner = user_factory(username="olga")
    room = room_factory("General", owner=owner, is_private=True)
    return services.invite_create(user=owner, room=room, max_uses=1)


def test_top_bar_sign_in_and_up_links_keep_next(client):
    response = client.get(reverse("account_login"), {"next": "/chats/invite/abc/"})
    links = _top_bar_links(response.content.decode())
    assert links["Sign in"] == "/accounts/login/?next=%2Fchats%2Finvite%2Fabc%2F"
    assert links["Sign up"] == "/accounts/signup/?next=%2Fchats%2Finvite%2Fabc%2F"
    # allauth's own cross-link on the page keeps it too.
    assert 'href="/accounts/signup/?next=%2Fchats%2Finvite%2Fabc%2F"' in response.content.decode()
    response = client.get(reverse("account_signup"), {"next": "/chats/invite/abc/"})
    assert 'href="/accounts/login/?next=%2Fchats%2Finvite%2Fabc%2F"' in response.content.decode()


def test_top_bar_links_without_next_lead_to_the_plain_pages(client):
    links = _top_bar_links(client.get(reverse("account_login")).content.decode())
    assert links == {"Sign in": "/accounts/login/", "Sign up": "/accounts/signup/"}
    # The password reset page is no place to come back to.
    links = _top_bar_links(client.get(reverse("account_reset_password")).content.decode())
    assert links == {"Sign in": "/accounts/login/", "Sign up": "/accounts/signup/"}


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/chats/",
        "//evil.example/chats/",
        "/\\evil.example/chats/",
        "javascript:alert(1)",
        "chats/",
    ],
)
def test_top_bar_links_drop_a_next_that_leaves_the_site(client, target):
    response = client.get(reverse("account_login"), {"next": target})
    links = _top_bar_links(response.content.decode())
    assert links == {"Sign in": "/accounts/login/", "Sign up": "/accounts/signup/"}
    assert "evil.example" not in "".join(links.values())


def test_sign_in_page_names_the_room_a_live_invite_leads_to(client, invite):
    next_url = reverse("chatrooms:invite_redeem", args=[invite.token])
    body = client.get(reverse("account_login"), {"next": next_url}).content.decode()
    assert "Sign in to join <bdi>General</bdi>" in body
    assert "<title>Sign in to join General · Chat</title>" in body
    body = client.get(reverse("account_signup"), {"next": next_url}).content.decode()
    assert "Sign up to join <bdi>General</bdi>" in body
    # Looking spent nothing.
    invite.refresh_from_db()
    assert invite.use_count == 0


def test_sign_in_form_refused_keeps_saying_which_room(client, invite, user_factory):
    user = user_factory(username="vic")
    next_url = reverse("chatrooms:invite_redeem", args=[invite.token])
    response = client.post(
        reverse("account_login"), {"login": user.username, "password": "wrong", "next": next_url}
    )
    assert response.status_code == 200
    assert "Sign in to join <bdi>General</bdi>" in response.content.decode()


def test_sign_in_from_an_invite_comes_back_to_it(client, invite, user_factory):
    user = user_factory(username="walt")
    next_url = reverse("chatrooms:invite_redeem", args=[invite.token])
    response = client.post(
        reverse("account_login"),
        {"login": user.username, "password": user.raw_password, "next": next_url},
    )
    assert response.status_code == 302
    assert response["Location"] == next_url


@pytest.mark.parametrize("how", ["revoked", "expired", "used_up", "archived", "unknown"])
def test_sign_in_page_stays_plain_for_a_dead_invite(client, invite, how):
    from django.utils import timezone

    token = invite.token
    if how == "revoked":
        invite.revoked_at = timezone.now()
    elif how == "expired":
        invite.expires_at = timezone.now()
    elif how == "used_up":
        invite.use_count = 1
    elif how == "archived":
        invite.room.archived_at = timezone.now()
        invite.room.save()
    else:
        token = "no-such-token"
    invite.save()
    next_url = reverse("chatrooms:invite_redeem", args=[token])
    body = client.get(reverse("account_login"), {"next": next_url}).content.decode()
    assert "to join" not in body
    assert "General" not in body
    assert '<h1 class="h3 mb-3">' in body and "Sign In" in body


def test_sign_in_page_ignores_an_invite_on_another_site(client, invite):
    next_url = "https://evil.example" + reverse("chatrooms:invite_redeem", args=[invite.token])
    body = client.get(reverse("account_login"), {"next": next_url}).content.decode()
    assert "to join" not in body
    assert "evil.example" not in "".join(_top_bar_links(body).values())
