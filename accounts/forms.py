"""Forms of the accounts app (allauth provides sign-up, sign-in and the rest)."""

from __future__ import annotations

import unicodedata

from django import forms

from accounts.models import User


class ProfileForm(forms.ModelForm):
    """Change the name others see."""

    class Meta:
        model = User
        fields = ["display_name"]

    def clean_display_name(self) -> str:
        name = " ".join(self.cleaned_data["display_name"].split())
        # Control and format characters (NUL, bidi overrides, zero-width
        # joiners alone) make a name that spoofs or breaks layouts.
        if any(unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co"} for ch in name):
            raise forms.ValidationError("Use letters, digits, spaces and punctuation only.")
        return name
