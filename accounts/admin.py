"""Staff manage users here."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from accounts.models import User
from accounts.services import user_set_active


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    """Django's user admin plus the display name."""

    list_display = (
        "username",
        "email",
        "display_name",
        "is_active",
        "is_staff",
        "date_joined",
        "last_login",
    )
    list_filter = ("is_active", "is_staff", "is_superuser", "date_joined", "last_login")
    search_fields = ("username", "email", "display_name", "first_name", "last_name")
    readonly_fields = ("date_joined", "last_login")
    fieldsets = DjangoUserAdmin.fieldsets + (("Chat", {"fields": ("display_name",)}),)
    ordering = ("username",)
    actions = ["deactivate", "reactivate"]

    @admin.action(description="Deactivate: end their sessions and close their chats now")
    def deactivate(self, request, queryset):
        for user in queryset.exclude(id=request.user.id):
            user_set_active(user=user, active=False)
        self.message_user(request, "Deactivated; their open chats were closed.")

    @admin.action(description="Reactivate")
    def reactivate(self, request, queryset):
        for user in queryset:
            user_set_active(user=user, active=True)
        self.message_user(request, "Reactivated.")

    def save_model(self, request, obj, form, change):
        """Unticking "active" on the form closes their chats too."""
        super().save_model(request, obj, form, change)
        if change and "is_active" in form.changed_data and not obj.is_active:
            user_set_active(user=obj, active=False)
