"""Username rules for new accounts.

Usernames are ASCII letters, digits and @ . + - _ only: the @username shown
beside every display name is what tells two people apart, so it must not
admit look-alikes such as a Cyrillic "а" in place of a Latin "a".
"""

from __future__ import annotations

from django.contrib.auth.validators import ASCIIUsernameValidator
from django.core.validators import MaxLengthValidator

username_validators = [ASCIIUsernameValidator(), MaxLengthValidator(150)]
