"""Top-level URLs; README.md and docs/architecture.md list the pages."""

from django.contrib import admin
from django.urls import include, path

from accounts import views as account_views
from project import health, metrics

urlpatterns = [
    path("", account_views.home, name="home"),
    path("healthz", health.healthz, name="healthz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("accounts/profile/", account_views.profile, name="profile"),
    path("accounts/", include("allauth.urls")),
    path("chats/", include("chatrooms.urls")),
    path("admin/", admin.site.urls),
]
