"""Home redirect and the profile page."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from accounts.forms import ProfileForm
from accounts.services import user_update_profile


def home(request: HttpRequest) -> HttpResponse:
    """`/`: the lobby when signed in, else the sign-in page."""
    if request.user.is_authenticated:
        return redirect("chatrooms:lobby")
    return redirect("account_login")


@login_required
def profile(request: HttpRequest) -> HttpResponse:
    """Show and change the signed-in user's display name."""
    form = ProfileForm(request.POST or None, instance=request.user)
    if request.method == "POST" and form.is_valid():
        user_update_profile(user=request.user, display_name=form.cleaned_data["display_name"])
        messages.success(request, "Your profile was saved.")
        return redirect("profile")
    return render(request, "accounts/profile.html", {"form": form})
