"""Forms of the lobby."""

from __future__ import annotations

import unicodedata

from django import forms
from django.utils.text import slugify

from chatrooms.models import ROOM_NAME_MAX, ROOM_TOPIC_MAX


def _clean_line(value: str, field: str) -> str:
    value = " ".join(value.split())
    if any(unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co"} for ch in value):
        raise forms.ValidationError(f"The {field} has characters that cannot be shown.")
    return value


class RoomEnterForm(forms.Form):
    """The Channels tutorial's box: type a room name, go there."""

    name = forms.CharField(
        max_length=ROOM_NAME_MAX, label="What chat room would you like to enter?"
    )

    def clean_name(self) -> str:
        name = _clean_line(self.cleaned_data["name"], "name")
        if not slugify(name):
            # The room's address comes from the name typed here.
            raise forms.ValidationError("Use at least one Latin letter or digit.")
        return name


class RoomSettingsForm(forms.Form):
    """Name and topic of a room."""

    name = forms.CharField(max_length=ROOM_NAME_MAX)
    topic = forms.CharField(max_length=ROOM_TOPIC_MAX, required=False)

    def clean_name(self) -> str:
        name = _clean_line(self.cleaned_data["name"], "name")
        if not name:
            raise forms.ValidationError("This field is required.")
        return name

    def clean_topic(self) -> str:
        return _clean_line(self.cleaned_data["topic"], "topic")


class RoomCreateForm(RoomSettingsForm):
    """Create a room; its creator becomes its owner."""

    is_private = forms.BooleanField(
        required=False,
        label="Private",
        help_text="Only people you invite can see and join a private room.",
    )


class InviteCreateForm(forms.Form):
    """A new invite link: how long it works and how often."""

    lifetime = forms.ChoiceField(
        label="Expires after",
        choices=[("1h", "1 hour"), ("1d", "1 day"), ("7d", "7 days"), ("never", "Never")],
        initial="7d",
    )
    max_uses = forms.IntegerField(
        label="Max uses",
        required=False,
        min_value=1,
        max_value=100000,
        help_text="Leave empty for unlimited.",
    )
