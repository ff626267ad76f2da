"""Create the benchmark's users, rooms and memberships in the project's database.

Run by bench/run.py with the server's environment (DATABASE_URL...):
    python bench/seed.py < spec.json   # {"users": 100, "password": "...", "rooms": {...}}
rooms maps a room slug to the user numbers that are its members. Users are
bench0..benchN-1 with a verified primary email address, sharing one
password hash (hashing 100 passwords would take half a minute); every room
is public, owned by bench0, and every member has a membership already, so
that connecting measures a returning member, not a first visit.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

import django  # noqa: E402

django.setup()

from allauth.account.models import EmailAddress  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.hashers import make_password  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from chatrooms.models import Membership, Room  # noqa: E402


def main(spec: dict) -> None:
    user_model = get_user_model()
    password = make_password(spec["password"])
    names = [f"bench{i}" for i in range(spec["users"])]
    with transaction.atomic():
        existing = set(
            user_model.objects.filter(username__in=names).values_list("username", flat=True)
        )
        user_model.objects.bulk_create(
            [
                user_model(username=name, email=f"{name}@example.com", password=password)
                for name in names
                if name not in existing
            ]
        )
        users = dict(user_model.objects.filter(username__in=names).values_list("username", "id"))
        with_address = set(
            EmailAddress.objects.filter(user_id__in=users.values()).values_list(
                "user_id", flat=True
            )
        )
        EmailAddress.objects.bulk_create(
            [
                EmailAddress(user_id=uid, email=f"{name}@example.com", verified=True, primary=True)
                for name, uid in users.items()
                if uid not in with_address
            ]
        )
        owner = users["bench0"]
        for slug, members in spec["rooms"].items():
            room, _ = Room.objects.get_or_create(
                slug=slug, defaults={"name": slug, "created_by_id": owner}
            )
            have = set(Membership.objects.filter(room=room).values_list("user_id", flat=True))
            Membership.objects.bulk_create(
                [
                    Membership(
                        room=room,
                        user_id=users[f"bench{n}"],
                        role=Membership.Role.OWNER if n == 0 else Membership.Role.MEMBER,
                    )
                    for n in members
                    if users[f"bench{n}"] not in have
                ]
            )
    # Fresh statistics after a bulk load, as autovacuum would take them in
    # production (this machine's PostgreSQL runs with it off).
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    print(f"seeded {len(users)} users, {len(spec['rooms'])} rooms")


if __name__ == "__main__":
    main(json.load(sys.stdin))
