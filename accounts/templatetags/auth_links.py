"""Sign-in and sign-up links that keep where the visitor was going (`next`)."""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from django import template
from django.http import HttpRequest
from django.urls import Resolver404, resolve
from django.utils.http import url_has_allowed_host_and_scheme

from chatrooms import selectors
from chatrooms.models import Room

register = template.Library()

# Pages not worth coming back to after signing in: the sign-in and sign-up
# pages themselves, password reset, and `/`, which goes to the lobby anyway.
_NOT_NEXT_PREFIXES = ("/accounts/",)


def _local(url: str) -> bool:
    # A path on this site only (no scheme, no host, not "//host" nor "/\\host"):
    # a sign-in link must never send anyone elsewhere.
    return url.startswith("/") and url_has_allowed_host_and_scheme(url, allowed_hosts=set())


def next_for(request: HttpRequest | None) -> str:
    """Where signing in from this page should lead: its own safe `next`, or itself, or ""."""
    if request is None:
        return ""
    # allauth reads `next` the same way: a refused form posts it back.
    posted = request.POST.get("next") if request.method == "POST" else None
    url = posted or request.GET.get("next") or ""
    if url:
        return url if _local(url) else ""
    path = request.get_full_path()
    if path == "/" or path.startswith(_NOT_NEXT_PREFIXES) or not _local(path):
        return ""
    return path


@register.simple_tag(takes_context=True)
def next_query(context) -> str:
    """`?next=<url-encoded path>` for a sign-in or sign-up link, or ""."""
    url = next_for(context.get("request"))
    return f"?{urlencode({'next': url})}" if url else ""


@register.simple_tag(takes_context=True)
def invite_room_for_next(context) -> Room | None:
    """The room when `next` is a live invite link (sign in "to join" it), else None."""
    url = next_for(context.get("request"))
    if not url:
        return None
    try:
        match = resolve(urlsplit(url).path)
    except Resolver404:
        return None
    if match.view_name != "chatrooms:invite_redeem":
        return None
    return selectors.room_for_invite_token(match.kwargs["token"])
