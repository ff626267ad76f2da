"""Staff manage rooms, memberships, messages and invites here."""

from django.contrib import admin

from chatrooms import services
from chatrooms.models import Invite, Membership, Message, Room


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ("user",)
    fields = ("user", "role", "is_banned", "last_read_id", "joined_at")
    readonly_fields = ("joined_at",)


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "is_private", "created_by", "created_at", "archived_at")
    list_filter = ("is_private", "archived_at")
    search_fields = ("name", "slug", "topic")
    raw_id_fields = ("created_by",)
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "room", "role", "is_banned", "joined_at")
    list_filter = ("role", "is_banned")
    search_fields = ("user__username", "room__name", "room__slug")
    raw_id_fields = ("user", "room")


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("id", "room", "author", "short_body", "created_at", "edited_at", "deleted_at")
    list_filter = ("room", "author", "deleted_at")
    search_fields = ("body", "author__username")
    raw_id_fields = ("room", "author")
    list_select_related = ("room", "author")
    actions = ["soft_delete"]

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
    raw_id_fields = ("room", "created_by")
    readonly_fields = ("token", "use_count")
    actions = ["revoke"]

    @admin.action(description="Revoke")
    def revoke(self, request, queryset):
        for invite in queryset.filter(revoked_at__isnull=True):
            services.invite_revoke(user=request.user, invite=invite)
        self.message_user(request, "Revoked.")
