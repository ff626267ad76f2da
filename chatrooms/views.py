"""Chat pages: the lobby and the room page."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from chatrooms import selectors, services
from chatrooms.forms import RoomCreateForm, RoomEnterForm
from chatrooms.presence import tracker


def _lobby(request: HttpRequest, *, create_form=None, enter_form=None, status=200):
    my_rooms = selectors.room_list_for_user(user_id=request.user.id)
    counts = tracker.online_counts([item["room"].id for item in my_rooms])
    for item in my_rooms:
        item["online"] = counts.get(item["room"].id, 0)
    context = {
        "my_rooms": my_rooms,
        "public_rooms": selectors.public_rooms_to_join(user_id=request.user.id),
        "create_form": create_form or RoomCreateForm(),
        "enter_form": enter_form or RoomEnterForm(),
    }
    return render(request, "chatrooms/lobby.html", context, status=status)


@login_required
def lobby(request: HttpRequest) -> HttpResponse:
    """`/chats/`: my rooms with unread and online counts, rooms to join, forms."""
    return _lobby(request)


@login_required
@require_POST
def room_create(request: HttpRequest) -> HttpResponse:
    """Create a room from the lobby form; its creator owns it."""
    form = RoomCreateForm(request.POST)
    if not form.is_valid():
        return _lobby(request, create_form=form, status=400)
    room = services.room_create(user=request.user, **form.cleaned_data)
    return redirect("chatrooms:room_detail", slug=room.slug)


@login_required
@require_POST
def room_enter(request: HttpRequest) -> HttpResponse:
    """The tutorial's box: go to the room of that name, creating a public one."""
    form = RoomEnterForm(request.POST)
    if not form.is_valid():
        return _lobby(request, enter_form=form, status=400)
    room = services.room_get_or_create_by_name(user=request.user, name=form.cleaned_data["name"])
    if room is None:
        form.add_error("name", "That room is not open to you.")
        return _lobby(request, enter_form=form, status=403)
    return redirect("chatrooms:room_detail", slug=room.slug)


@login_required
def room_detail(request: HttpRequest, slug: str) -> HttpResponse:
    """`/chats/<slug>/`: the room; visiting a public room joins it."""
    access = services.room_enter(user=request.user, slug=slug)
    if access is None:
        # The same answer for "missing" and "not yours": private rooms'
        # names do not leak.
        raise Http404("No such room")
    can_moderate = access.role in ("owner", "moderator")
    config = {
        "slug": access.slug,
        "wsPath": f"/ws/chat/{access.slug}/",
        "username": request.user.username,
        "displayName": request.user.shown_name,
        "maxChars": settings.CHAT_MAX_MESSAGE_CHARS,
        "historyPage": settings.CHAT_HISTORY_PAGE,
        "lobbyUrl": reverse("chatrooms:lobby"),
    }
    return render(
        request,
        "chatrooms/room_detail.html",
        {
            "room": access,
            "membership": {"role": access.role},
            "can_moderate": can_moderate,
            "settings_url": "",
            "config": config,
        },
    )
