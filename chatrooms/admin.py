"""Staff manage rooms, memberships, messages and invites here.

Every change with a live effect goes through the same service as the room
settings page and the socket, with the same effect on every process: a
field the admin could write directly (a ban, a role, an archive date, a
message's text) is read-only here, and an action calls the service instead.
Rooms are created from the lobby and archived rather than deleted; messages
are posted by people and deleted for everyone with an action (the row stays
for audit); invites are made on the room's settings page.
"""

from django.contrib import admin, messages

from chatrooms import services
from chatrooms.models import Invite, Membership, Message, Room


def _each(modeladmin, request, queryset, act, done: str) -> None:
    """Run `act` on each object; report how many it changed and why the others failed."""
    changed, refused = 0, []
    for obj in queryset:
        try:
            act(obj)
        except services.ServiceError as exc:
            refused.append(f"{obj}: {exc.detail}")
        else:
            changed += 1
    if changed:
        modeladmin.message_user(request, done.format(n=changed))
    for reason in refused:
        modeladmin.message_user(request, reason, level=messages.ERROR)


class MembershipInline(admin.TabularInline):
    """The room's members, to read; changes go through the Membership actions."""

    model = Membership
    extra = 0
    fields = ("user", "role", "is_banned", "last_read_id", "joined_at")
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "is_private", "created_by", "created_at", "archived_at")
    list_filter = ("is_private", "archived_at")
    search_fields = ("name", "slug", "topic")
    fields = ("name", "topic", "slug", "is_private", "created_by", "created_at", "archived_at")
    readonly_fields = ("slug", "is_private", "created_by", "created_at", "archived_at")
    inlines = [MembershipInline]
    actions = ["archive", "unarchive"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change):
        """Name and topic through the service: open pages get a `room` frame."""
        if not {"name", "topic"} & set(form.changed_data):
            return
        services.room_update(
            user=request.user, room=obj, name=obj.name, topic=obj.topic, staff=True
        )

    @admin.action(description="Archive: read-only, out of the lobby, open pages closed")
    def archive(self, request, queryset):
        _each(
            self,
            request,
            queryset.filter(archived_at__isnull=True),
            lambda room: services.room_set_archived(
                user=request.user, room=room, archived=True, staff=True
            ),
            "Archived {n}; their open pages were closed.",
        )

    @admin.action(description="Unarchive")
    def unarchive(self, request, queryset):
        _each(
            self,
            request,
            queryset.filter(archived_at__isnull=False),
            lambda room: services.room_set_archived(
                user=request.user, room=room, archived=False, staff=True
            ),
            "Unarchived {n}.",
        )


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "room", "role", "is_banned", "joined_at")
    list_filter = ("role", "is_banned")
    search_fields = ("user__username", "room__name", "room__slug")
    fields = ("user", "room", "role", "is_banned", "last_read_id", "joined_at")
    readonly_fields = fields
    actions = ["ban", "unban", "make_moderator", "make_member"]

    def has_add_permission(self, request) -> bool:
        return False

    def _act(self, request, queryset, act, done: str) -> None:
        _each(self, request, queryset.select_related("room", "user"), act, done)

    @admin.action(description="Ban from the room (their open pages close)")
    def ban(self, request, queryset):
        self._act(
            request,
            queryset.filter(is_banned=False),
            lambda m: services.member_ban(
                user=request.user, room=m.room, user_id=m.user_id, staff=True
            ),
            "Banned {n}; their open pages were closed.",
        )

    @admin.action(description="Lift the ban")
    def unban(self, request, queryset):
        self._act(
            request,
            queryset.filter(is_banned=True),
            lambda m: services.member_unban(
                user=request.user, room=m.room, user_id=m.user_id, staff=True
            ),
            "Unbanned {n}.",
        )

    @admin.action(description="Make moderator")
    def make_moderator(self, request, queryset):
        self._set_role(request, queryset, Membership.Role.MODERATOR)

    @admin.action(description="Make member (no longer moderator)")
    def make_member(self, request, queryset):
        self._set_role(request, queryset, Membership.Role.MEMBER)

    def _set_role(self, request, queryset, role: str) -> None:
        self._act(
            request,
            queryset,
            lambda m: services.member_set_role(
                user=request.user, room=m.room, user_id=m.user_id, role=role, staff=True
            ),
            f"{{n}} now {role}.",
        )

    def delete_model(self, request, obj):
        """Removing a membership is a kick: the person's open pages in the room close."""
        services.member_kick(user=request.user, room=obj.room, user_id=obj.user_id, staff=True)

    def delete_queryset(self, request, queryset):
        for membership in queryset.select_related("room"):
            self.delete_model(request, membership)


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("id", "room", "author", "short_body", "created_at", "edited_at", "deleted_at")
    list_filter = ("room", "author", "deleted_at")
    search_fields = ("body", "author__username")
    fields = ("room", "author", "body", "client_id", "created_at", "edited_at", "deleted_at")
    readonly_fields = fields
    list_select_related = ("room", "author")
    actions = ["soft_delete"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Delete for everyone (kept here for audit)")
    def soft_delete(self, request, queryset):
        for message in queryset.filter(deleted_at__isnull=True):
            services.message_delete_by_staff(message=message)
        self.message_user(request, "Deleted; open rooms dropped them.")

    @admin.display(description="Body")
    def short_body(self, obj: Message) -> str:
        return obj.body[:80]


@admin.register(Invite)
class InviteAdmin(admin.ModelAdmin):
    list_display = (
        "room",
        "created_by",
        "created_at",
        "expires_at",
        "use_count",
        "max_uses",
        "revoked_at",
    )
    list_filter = ("revoked_at",)
    search_fields = ("room__name",)
    fields = (
        "room",
        "created_by",
        "created_at",
        "expires_at",
        "max_uses",
        "use_count",
        "revoked_at",
    )
    readonly_fields = fields
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Revoke")
    def revoke(self, request, queryset):
        for invite in queryset.filter(revoked_at__isnull=True):
            services.invite_revoke(user=request.user, invite=invite)
        self.message_user(request, "Revoked.")
