"""The site's user: Django's user with the name shown in chat."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db import models

DISPLAY_NAME_MAX = 64


class User(AbstractUser):
    """A person who signs in; `display_name` is what others see beside messages."""

    display_name = models.CharField(
        max_length=DISPLAY_NAME_MAX,
        blank=True,
        help_text="Shown beside your messages. Leave empty to use your username.",
    )

    def __str__(self) -> str:
        return self.username

    @property
    def shown_name(self) -> str:
        """The display name, or the username when none is set."""
        return shown_name(self.display_name, self.username)


def shown_name(display_name: str | None, username: str) -> str:
    """The one rule for the name shown: the display name, else the username.

    For code that has the two fields without a User (query rows, presence).
    """
    return display_name or username
