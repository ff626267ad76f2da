"""Staff manage users here."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from accounts.models import User


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
