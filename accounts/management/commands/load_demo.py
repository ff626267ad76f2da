"""Load the demo data in fixtures/ into an empty database, once."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

# Order matters: rooms need users, messages need rooms.
DEMO_FIXTURES = ["users", "rooms"]


class Command(BaseCommand):
    help = "Load fixtures/ (demo users, rooms, messages) unless the database has users."

    def add_arguments(self, parser):
        parser.add_argument(
            "--force",
            action="store_true",
            help="Load even with debug off (the demo passwords are public).",
        )

    def handle(self, *args, force: bool = False, **options):
        if not settings.DEBUG and not force:
            raise CommandError(
                "Refusing to load demo users with DJANGO_DEBUG=0: their passwords "
                "are in the README. Use --force on a throwaway site."
            )
        if get_user_model().objects.exists():
            self.stdout.write("Demo data skipped: the database already has users.")
            return
        paths = [settings.BASE_DIR / "fixtures" / f"{name}.json" for name in DEMO_FIXTURES]
        call_command("loaddata", *[path for path in paths if path.exists()])
        self.stdout.write(
            self.style.SUCCESS(
                "Demo data loaded: sign in as alice, bob, carol or admin "
                "with the password demo-password-123."
            )
        )
