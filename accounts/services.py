"""Every write to a user goes through here: profile, activation, password
side effects. Effects on open sockets go through chatrooms.services.events,
after commit, like every other write."""

from __future__ import annotations

from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from chatrooms.services.events import user_sockets_close


def user_update_profile(*, user: User, display_name: str) -> User:
    """Set the user's display name (already validated by ProfileForm)."""
    user.display_name = display_name
    user.save(update_fields=["display_name"])
    return user


@transaction.atomic
def user_set_active(*, user, active: bool) -> None:
    """Deactivate (no sign-in, every session refused, open sockets closed) or reactivate."""
    type(user).objects.filter(id=user.id).update(is_active=active)
    user.is_active = active
    if not active:
        user_sessions_end(user_id=user.id)
        user_sockets_close(user_id=user.id, reason="deactivated")


def user_password_changing(*, user) -> bool:
    """Whether saving `user` now stores another password hash than the database holds."""
    password = user.__dict__.get("password")  # a deferred password is not being saved
    if user.pk is None or password is None:
        return False
    stored = type(user).objects.filter(pk=user.pk).values_list("password", flat=True).first()
    return stored is not None and stored != password


def user_password_changed(*, user_id: int, keep_session: str = "") -> None:
    """Close the sockets a new password ends: all of the user's but `keep_session`'s."""
    # Django refuses every session whose auth hash predates the new password;
    # `keep_session` made the change, and chatrooms/sessions.py settles its
    # sockets once it is known whether it stayed signed in.
    user_sockets_close(user_id=user_id, reason="password_changed", except_session=keep_session)


def user_sessions_end(*, user_id: int) -> None:
    """Delete the user's sessions, so that reactivating signs no old browser back in.

    Sessions are not indexed by user: this reads every live session once,
    which is fine for a staff action.
    """
    mine = [
        session.pk
        for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator()
        if session.get_decoded().get(SESSION_KEY) == str(user_id)
    ]
    Session.objects.filter(pk__in=mine).delete()
