"""Chat pages: the lobby and the room page."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseForbidden,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html
from django.views.decorators.http import require_http_methods, require_POST

from chatrooms import selectors, services
from chatrooms.forms import InviteCreateForm, RoomCreateForm, RoomEnterForm, RoomSettingsForm
from chatrooms.models import Invite, Membership
from chatrooms.presence import tracker


def _lobby(request: HttpRequest, *, create_form=None, enter_form=None, status=200):
    my_rooms = selectors.room_list_for_user(user_id=request.user.id)
    counts = tracker.online_counts([item["room"].id for item in my_rooms])
    for item in my_rooms:
        item["online"] = counts.get(item["room"].id, 0)
    context = {
        "my_rooms": my_rooms,
        "public_rooms": selectors.public_rooms_to_join(user_id=request.user.id),
        "archived_rooms": selectors.archived_rooms_for_user(user_id=request.user.id),
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
    try:
        room = services.room_create(user=request.user, **form.cleaned_data)
    except services.RoomNameTaken as exc:
        form.add_error("name", _name_taken_error(exc))
        return _lobby(request, create_form=form, status=400)
    except services.ServiceError as exc:  # over CHAT_ROOM_CREATE_RATE
        form.add_error(None, exc.detail)
        return _lobby(request, create_form=form, status=429)
    return redirect("chatrooms:room_detail", slug=room.slug)


def _name_taken_error(exc: services.RoomNameTaken) -> str:
    if not exc.can_open:  # banned from it: no link to a page that would 404
        return exc.detail
    return format_html(
        'A room named <bdi>{}</bdi> already exists: <a href="{}">open it</a>,'
        " or choose another name.",
        exc.room.name,
        reverse("chatrooms:room_detail", args=[exc.room.slug]),
    )


@login_required
@require_POST
def room_enter(request: HttpRequest) -> HttpResponse:
    """The tutorial's box: go to the room of that name, creating a public one."""
    form = RoomEnterForm(request.POST)
    if not form.is_valid():
        return _lobby(request, enter_form=form, status=400)
    try:
        room = services.room_get_or_create_by_name(
            user=request.user, name=form.cleaned_data["name"]
        )
    except services.ServiceError as exc:  # a new name, over CHAT_ROOM_CREATE_RATE
        form.add_error("name", exc.detail)
        return _lobby(request, enter_form=form, status=429)
    if room is None:
        form.add_error("name", "That room is not open to you.")
        return _lobby(request, enter_form=form, status=403)
    return redirect("chatrooms:room_detail", slug=room.slug)


@login_required
def room_detail(request: HttpRequest, slug: str) -> HttpResponse:
    """`/chats/<slug>/`: the room; visiting a public room joins it."""
    access = services.room_enter(user=request.user, slug=slug)
    if access is None:
        archived = selectors.archived_room_for_member(user_id=request.user.id, slug=slug)
        if archived is not None:
            return _room_archived(request, *archived)
        # The same answer for "missing" and "not yours": private rooms'
        # names do not leak.
        raise Http404("No such room")
    can_moderate = access.can_moderate
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
            "settings_url": reverse("chatrooms:room_settings", args=[access.slug])
            if can_moderate
            else "",
            "config": config,
        },
    )


def _room_archived(request: HttpRequest, room, membership: Membership) -> HttpResponse:
    """An archived room's page: its history, server-rendered, read-only, no socket.

    The socket still refuses an archived room (docs/protocol.md), so this page
    loads no client; older pages are plain links (`?before=<id>`)."""
    before = request.GET.get("before")
    frames, has_more = selectors.message_history(
        room_id=room.id,
        before=_int(before) if before else None,
        limit=settings.CHAT_HISTORY_PAGE,
    )
    for frame in frames:
        frame["date"] = parse_datetime(frame["ts"])
    return render(
        request,
        "chatrooms/room_archived.html",
        {
            "room": room,
            "membership": membership,
            "is_owner": membership.role == Membership.Role.OWNER,
            "can_moderate": membership.can_moderate,
            "chat_messages": frames,
            "older": frames[0]["id"] if has_more and frames else None,
            "paged": bool(before),
        },
    )


# --- Room settings ---------------------------------------------------------------------

# POST actions of the settings page: name -> (service, needs a target user).
_MEMBER_ACTIONS = {
    "kick": lambda user, room, uid: services.member_kick(user=user, room=room, user_id=uid),
    "ban": lambda user, room, uid: services.member_ban(user=user, room=room, user_id=uid),
    "unban": lambda user, room, uid: services.member_unban(user=user, room=room, user_id=uid),
    "promote": lambda user, room, uid: services.member_set_role(
        user=user, room=room, user_id=uid, role="moderator"
    ),
    "demote": lambda user, room, uid: services.member_set_role(
        user=user, room=room, user_id=uid, role="member"
    ),
    "transfer": lambda user, room, uid: services.room_transfer_ownership(
        user=user, room=room, user_id=uid
    ),
}
# Actions that ask first (templates/chatrooms/_confirm_text.html says what they do):
# a form posting `ask=1` gets a confirmation page and changes nothing; the page's
# dialog (static/chat/pages/confirm.js) drops `ask` once the person confirms.
_ASK_FIRST = {"kick", "ban", "transfer", "archive"}
_DONE = {
    "kick": "{name} was removed from the room.",
    "ban": "{name} is banned from the room.",
    "unban": "{name} is no longer banned.",
    "promote": "{name} is now a moderator.",
    "demote": "{name} is no longer a moderator.",
    "transfer": "{name} owns the room now.",
}


@login_required
def room_settings(request: HttpRequest, slug: str) -> HttpResponse:
    """`/chats/<slug>/settings/`: name, topic, invites, members (owners and moderators)."""
    room = selectors.room_for_settings(slug)
    membership = (
        selectors.membership_for(user_id=request.user.id, room_id=room.id) if room else None
    )
    if membership is None or membership.is_banned:
        raise Http404("No such room")
    if not membership.can_moderate:
        return HttpResponseForbidden("Only the room's owner and moderators can change it.")
    settings_form = RoomSettingsForm(initial={"name": room.name, "topic": room.topic})
    invite_form = InviteCreateForm()
    status = 200
    if request.method == "POST":
        action = request.POST.get("action", "")
        if action in _ASK_FIRST and request.POST.get("ask"):
            return _confirm_page(request, room=room, membership=membership, action=action)
        try:
            if action == "rename":
                settings_form = RoomSettingsForm(request.POST)
                if settings_form.is_valid():
                    services.room_update(user=request.user, room=room, **settings_form.cleaned_data)
                    messages.success(request, "Saved.")
                    return redirect("chatrooms:room_settings", slug=room.slug)
                status = 400
            elif action == "invite":
                invite_form = InviteCreateForm(request.POST)
                if invite_form.is_valid():
                    services.invite_create(user=request.user, room=room, **invite_form.cleaned_data)
                    messages.success(request, "Invite link created.")
                    return redirect("chatrooms:room_settings", slug=room.slug)
                status = 400
            elif action == "revoke":
                invite = get_object_or_404(Invite, id=_int(request.POST.get("invite")), room=room)
                services.invite_revoke(user=request.user, invite=invite)
                messages.success(request, "Invite link revoked.")
                return redirect("chatrooms:room_settings", slug=room.slug)
            elif action in ("archive", "unarchive"):
                services.room_set_archived(
                    user=request.user, room=room, archived=action == "archive"
                )
                messages.success(
                    request, "Room archived." if action == "archive" else "Room unarchived."
                )
                if request.POST.get("back") == "room":  # the archived room page's button
                    return redirect("chatrooms:room_detail", slug=room.slug)
                return redirect("chatrooms:room_settings", slug=room.slug)
            elif action in _MEMBER_ACTIONS:
                target = get_object_or_404(
                    Membership.objects.select_related("user"),
                    room=room,
                    user_id=_int(request.POST.get("user")),
                )
                _MEMBER_ACTIONS[action](request.user, room, target.user_id)
                messages.success(request, _DONE[action].format(name=target.user.shown_name))
                return redirect("chatrooms:room_settings", slug=room.slug)
            else:
                return HttpResponseBadRequest("Unknown action.")
        except services.ServiceError as exc:
            messages.error(request, exc.detail)
            status = {"forbidden": 403, "rate_limited": 429}.get(exc.code, 400)
    membership = selectors.membership_for(user_id=request.user.id, room_id=room.id)
    context = {
        "room": room,
        "membership": membership,
        "is_owner": membership.role == Membership.Role.OWNER,
        "settings_form": settings_form,
        "invite_form": invite_form,
        "invites": [
            {
                "invite": invite,
                "url": request.build_absolute_uri(
                    reverse("chatrooms:invite_redeem", args=[invite.token])
                ),
            }
            for invite in selectors.invites_live(room_id=room.id)
        ],
        "members": selectors.room_members(room_id=room.id),
    }
    return render(request, "chatrooms/room_settings.html", context, status=status)


def _confirm_page(request: HttpRequest, *, room, membership, action: str) -> HttpResponse:
    """The question the dialog asks, as a page: what a browser without scripts gets."""
    if action in ("transfer", "archive") and membership.role != Membership.Role.OWNER:
        return HttpResponseForbidden("Only the room's owner can do that.")
    target = None
    if action != "archive":
        target = get_object_or_404(
            Membership.objects.select_related("user"),
            room=room,
            user_id=_int(request.POST.get("user")),
        )
    return render(
        request,
        "chatrooms/confirm_action.html",
        {"room": room, "action": action, "target": target},
    )


@login_required
@require_POST
def room_leave(request: HttpRequest, slug: str) -> HttpResponse:
    """Leave a room (members and moderators; the owner hands it on first).

    Someone who is not a member (or is banned) gets the same 404 as for a
    room that does not exist: a message saying they are not a member would
    tell them that a private room of that slug exists."""
    room = selectors.room_for_settings(slug)
    membership = (
        selectors.membership_for(user_id=request.user.id, room_id=room.id) if room else None
    )
    if membership is None or membership.is_banned:
        raise Http404("No such room")
    try:
        services.member_leave(user=request.user, room=room)
    except services.ServiceError as exc:
        messages.error(request, exc.detail)
        return redirect("chatrooms:lobby")
    messages.success(request, f"You left {room.name}.")
    return redirect("chatrooms:lobby")


@require_http_methods(["GET", "HEAD", "POST"])
def invite_redeem(request: HttpRequest, token: str) -> HttpResponse:
    """`/chats/invite/<token>/`: GET shows the room and a Join button, POST joins."""
    # GET and HEAD write nothing: link previews and mail scanners open links
    # before the person does, and must not spend a one-use invite.
    if not request.user.is_authenticated:
        # allauth's login page carries `next` on to its sign-up link too; both
        # come back here, to the page, not to a join.
        get_object_or_404(Invite, token=token)
        return redirect_to_login(request.get_full_path())
    if request.method == "POST":
        try:
            room = services.invite_redeem(user=request.user, token=token)
        except Invite.DoesNotExist:
            raise Http404("No such invite") from None
        except services.InviteError as exc:
            return _invite_invalid(request, exc.reason)
        return redirect("chatrooms:room_detail", slug=room.slug)
    preview = selectors.invite_preview(user_id=request.user.id, token=token)
    if preview is None:
        raise Http404("No such invite")
    if preview.status not in ("join", "member"):
        return _invite_invalid(request, preview.status)
    return render(
        request,
        "chatrooms/invite.html",
        {
            "room": preview.room,
            "inviter": preview.invite.created_by,
            "is_member": preview.status == "member",
            "member_count": preview.member_count,
        },
    )


def _invite_invalid(request: HttpRequest, reason: str) -> HttpResponse:
    return render(
        request,
        "chatrooms/invite_invalid.html",
        {"reason": reason},
        status=403 if reason == "banned" else 410,
    )


def _int(value: str | None) -> int:
    """A posted row id; anything that cannot be one (SQLite overflows past 64 bits) is 404."""
    try:
        number = int(value or "")
    except ValueError:
        raise Http404("No such item") from None
    if not 1 <= number <= 2**63 - 1:
        raise Http404("No such item")
    return number
