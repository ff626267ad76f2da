"""The 400, 403, 404 and 500 pages: the site's look, a way home, the CSP header."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.test import Client
from django.urls import path

from project.urls import urlpatterns as project_urlpatterns

pytestmark = pytest.mark.django_db


def _boom(request):
    raise RuntimeError("a bug in a view")


def _forbidden(request):
    raise PermissionDenied("the reason, for the log only")


def _suspicious(request):
    raise SuspiciousOperation("a bad request")


urlpatterns = [
    *project_urlpatterns,
    path("test-errors/500/", _boom),
    path("test-errors/403/", _forbidden),
    path("test-errors/400/", _suspicious),
]


@pytest.fixture(autouse=True)
def _production(settings):
    # Django shows its technical pages while DEBUG is on; production does not.
    settings.DEBUG = False


def _assert_site_page(response, *, status: int, heading: str) -> str:
    assert response.status_code == status
    body = response.content.decode()
    assert f'<h1 class="h3 mb-3">{heading}</h1>' in body
    assert '<a class="navbar-brand fw-semibold" href="/">Chat</a>' in body
    assert 'class="btn btn-primary" href="/">Back to the start</a>' in body
    assert "/static/css/site.css" in body
    assert "default-src 'self'" in response["Content-Security-Policy"]
    return body


def test_not_found_page_is_ours_with_the_top_bar(user_factory):
    client = Client()
    client.force_login(user_factory(username="nina"))
    response = client.get("/chats/no-such-room/")
    body = _assert_site_page(response, status=404, heading="Page not found")
    assert "Sign out" in body  # base.html's layout, signed in
    assert "No such room" not in body  # the exception's text stays out


def test_not_found_page_signed_out_offers_sign_in_back_here():
    response = Client().get("/no-such-page/")
    body = _assert_site_page(response, status=404, heading="Page not found")
    assert 'href="/accounts/login/?next=%2Fno-such-page%2F"' in body


@pytest.mark.urls(__name__)
def test_permission_denied_page_is_ours():
    response = Client().get("/test-errors/403/")
    body = _assert_site_page(response, status=403, heading="You cannot open this page")
    assert "the reason, for the log only" not in body


@pytest.mark.urls(__name__)
def test_bad_request_page_is_ours():
    response = Client().get("/test-errors/400/")
    body = _assert_site_page(response, status=400, heading="This request could not be understood")
    assert "a bad request" not in body


def test_bad_request_for_a_foreign_host_is_ours():
    response = Client(HTTP_HOST="evil.example").get("/chats/")
    _assert_site_page(response, status=400, heading="This request could not be understood")


@pytest.mark.urls(__name__)
def test_server_error_page_is_ours():
    response = Client(raise_request_exception=False).get("/test-errors/500/")
    body = _assert_site_page(response, status=500, heading="Something went wrong")
    assert "a bug in a view" not in body
    assert "RuntimeError" not in body
