"""Staff manage users here."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.utils.formats import date_format
from django.utils.timezone import localtime

from accounts.models import User
from accounts.services import user_set_active


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    """Django's user admin plus the display name."""

    # Few enough columns to fit beside the navigation and the filters at
    # 1280 px (tests/e2e/test_layout.py); staff status and the join date are
    # filters, and on the form.
    list_display = ("username", "display_name", "email", "is_active", "last_login_day")
    list_filter = ("is_active", "is_staff", "is_superuser", "date_joined", "last_login")
    search_fields = ("username", "email", "display_name", "first_name", "last_name")
    readonly_fields = ("date_joined", "last_login")
    fieldsets = DjangoUserAdmin.fieldsets + (("Chat", {"fields": ("display_name",)}),)
    ordering = ("username",)
    actions = ["deactivate", "reactivate"]

    class Media:
        css = {"all": ("css/admin.css",)}

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

    @admin.display(description="Last login", ordering="last_login")
    def last_login_day(self, obj: User) -> str | None:
        """The day of the last sign-in: the full time is a wide column that never wraps."""
        return date_format(localtime(obj.last_login), "j M Y") if obj.last_login else None

    def save_model(self, request, obj, form, change):
        """Unticking "active" on the form closes their chats too."""
        super().save_model(request, obj, form, change)
        if change and "is_active" in form.changed_data and not obj.is_active:
            user_set_active(user=obj, active=False)
