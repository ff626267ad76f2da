"""Every write to a user's profile goes through here (STYLE.md, services)."""

from __future__ import annotations

from accounts.models import User


def user_update_profile(*, user: User, display_name: str) -> User:
    """Set the user's display name (already validated by ProfileForm)."""
    user.display_name = display_name
    user.save(update_fields=["display_name"])
    return user
