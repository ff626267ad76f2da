"""Signal receivers: each hands over to a service, no logic of its own."""

from __future__ import annotations

from accounts import services as accounts_services
from chatrooms import services, sessions
from chatrooms.hub import hub


def close_sockets_on_sign_out(sender, request, user, **kwargs) -> None:
    """Signing out closes the sockets that browser session opened, on every process."""
    if user is None or request is None:
        return
    services.user_sockets_close(
        user_id=user.id, reason="signed_out", session_key=request.session.session_key or ""
    )


# A password change closes the user's other sessions' sockets. Why the user
# model's save and not allauth's password_changed / password_reset signals:
# the save is the one step every path shares (allauth's change and reset
# pages, Django admin's password form, `manage.py changepassword`,
# `set_password()` + `save()` in code), while those signals cover allauth's
# pages only. The stored hash is compared before the save (pre_save) and the
# sockets closed after it (post_save, on commit). Which session made the
# change, and so keeps its sockets, comes from the request being served
# (sessions.changing_session). A change made with no save at all
# (`QuerySet.update`) is caught by the periodic session check.


def note_password_change(sender, instance, raw=False, update_fields=None, **kwargs) -> None:
    """Before a user is saved: is the stored password hash about to change?"""
    saves_password = not raw and (update_fields is None or "password" in update_fields)
    instance._chat_password_changed = saves_password and accounts_services.user_password_changing(
        user=instance
    )


def close_sockets_on_password_change(sender, instance, **kwargs) -> None:
    """After a new password is saved: close the sockets of the user's other sessions."""
    if getattr(instance, "_chat_password_changed", False):
        instance._chat_password_changed = False
        accounts_services.user_password_changed(
            user_id=instance.pk, keep_session=sessions.changing_session(user=instance)
        )


def forget_cached_user(sender, instance, raw=False, update_fields=None, **kwargs) -> None:
    """A user saved (profile, name, activity, staff's edits) or deleted: every
    process's connect cache reads them again (chatrooms/access.py)."""
    if raw or kwargs.get("created") or instance.pk is None:
        return
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return  # signing in changes nothing a socket shows
    services.user_cache_invalidate(user_id=instance.pk)


def choose_hub_backend(sender, setting, **kwargs) -> None:
    """REDIS_URL changed (tests do it): the hub chooses Redis or in-process again."""
    if setting == "REDIS_URL":
        hub.settings_changed()
