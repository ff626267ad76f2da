"""Chat pages."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


@login_required
def lobby(request: HttpRequest) -> HttpResponse:
    """`/chats/`: the signed-in user's start page."""
    return render(request, "chatrooms/lobby.html", {})
