"""Rooms, memberships, messages and invites.

The model and field names are a contract: tests and tools outside the
project use them (docs/architecture.md).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from chatrooms import protocol

ROOM_NAME_MAX = 80
ROOM_TOPIC_MAX = 250
ROOM_SLUG_MAX = 50


class Room(models.Model):
    """A place to talk. Public rooms are listed and open to every user."""

    slug = models.SlugField(max_length=ROOM_SLUG_MAX, unique=True)
    name = models.CharField(max_length=ROOM_NAME_MAX)
    topic = models.CharField(max_length=ROOM_TOPIC_MAX, blank=True)
    is_private = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="created_rooms",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None


class Membership(models.Model):
    """A user's place in a room: role, read marker, ban."""

    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        MODERATOR = "moderator", "Moderator"
        MEMBER = "member", "Member"

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    joined_at = models.DateTimeField(auto_now_add=True)
    # The id of the newest message the user has reported read; 0 = none.
    last_read_id = models.BigIntegerField(default=0)
    is_banned = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["room", "user"], name="membership_unique_room_user"),
        ]
        indexes = [models.Index(fields=["user", "room"], name="membership_user_room")]

    def __str__(self) -> str:
        return f"{self.user} in {self.room} ({self.role})"

    @property
    def can_moderate(self) -> bool:
        """Owners and moderators moderate, unless banned."""
        return not self.is_banned and role_can_moderate(self.role)


def role_can_moderate(role: str) -> bool:
    """The one rule for who moderates a room: its owner and its moderators."""
    return role in (Membership.Role.OWNER, Membership.Role.MODERATOR)


class Message(models.Model):
    """One chat message. Deleting keeps the body for staff audit."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="messages"
    )
    body = models.TextField()
    # The sender's idempotency key: a retried send is stored once.
    client_id = models.CharField(max_length=protocol.MAX_CLIENT_ID, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    edited_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            # "latest N in a room" and "after id X in a room" are both range
            # scans of (room, id) over live messages: partial, so that the
            # plan stays on this index whatever the statistics say (a fresh
            # or un-analyzed table, deleted messages in between).
            models.Index(
                fields=["room", "id"],
                name="message_room_live",
                condition=Q(deleted_at__isnull=True),
            ),
            # Catch-up: changes to older messages since a point in time.
            models.Index(
                fields=["room", "edited_at"],
                name="message_room_edited",
                condition=Q(edited_at__isnull=False),
            ),
            models.Index(
                fields=["room", "deleted_at"],
                name="message_room_deleted",
                condition=Q(deleted_at__isnull=False),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["room", "author", "client_id"],
                name="message_unique_client_id",
                condition=~Q(client_id=""),
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.id} in {self.room_id} by {self.author_id}"

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None


class InviteQuerySet(models.QuerySet):
    def live(self, now=None) -> InviteQuerySet:
        """Invites that still grant membership: not revoked, not expired, uses left.

        The one definition of "live": the settings page lists these, and
        redemption counts a use with a conditional UPDATE on this queryset.
        """
        now = now or timezone.now()
        return (
            self.filter(revoked_at__isnull=True)
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
            .filter(Q(max_uses__isnull=True) | Q(use_count__lt=models.F("max_uses")))
        )


class Invite(models.Model):
    """A link that makes its holder a member of a room."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="invites")
    token = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    max_uses = models.PositiveIntegerField(null=True, blank=True)
    use_count = models.PositiveIntegerField(default=0)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = InviteQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(max_uses__isnull=True) | Q(use_count__lte=models.F("max_uses")),
                name="invite_use_count_within_max",
            ),
        ]

    def __str__(self) -> str:
        return f"Invite to {self.room} ({self.use_count}/{self.max_uses or '∞'})"

    @property
    def state(self) -> str:
        """'live', 'revoked', 'expired' or 'used_up' (the row's view of InviteQuerySet.live)."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= timezone.now():
            return "expired"
        if self.max_uses is not None and self.use_count >= self.max_uses:
            return "used_up"
        return "live"
