"""Time zones of schedules: only IANA keys the database lists are opened (sans-IO
apart from reading the time zone database once).

Owns `load_timezone()` and `known_timezones()`. ZoneInfo(name) reads a file named
after its argument: for a path-like or huge name it raises ValueError, OSError (name
too long, quoting the install path) or IsADirectoryError. Names are checked against
the database's list first, so no caller-chosen name reaches the filesystem and no
error carries a path or looks like Redis being down (the 503 of issue #14).
"""

from __future__ import annotations

import logging
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from fleetd.jobs.fields import shown
from fleetd.jobs.validation import ValidationError

__all__ = ["MAX_TIMEZONE_LENGTH", "known_timezones", "load_timezone"]

log = logging.getLogger("fleetd.schedules.timezones")

# The longest IANA key is 32 characters ("America/Argentina/ComodRivadavia"); twice
# that bounds what is looked up at all.
MAX_TIMEZONE_LENGTH = 64


@lru_cache(maxsize=1)
def known_timezones() -> frozenset[str]:
    """Every IANA key of this host's time zone database (system and tzdata), read once
    (~600 keys, a few ms)."""
    return frozenset(available_timezones())


def load_timezone(name: str, field: str = "timezone") -> ZoneInfo:
    """The IANA zone `name` (e.g. Europe/Berlin); ValidationError if there is none.

    Only keys listed by the time zone database are opened: ZoneInfo(name) reads a file
    named after its argument, and for a path-like or huge name it raises ValueError,
    OSError (name too long, quoting the install path) or IsADirectoryError. The name
    is checked against the list first, so no caller-chosen name reaches the filesystem
    and no error carries a path."""
    if not isinstance(name, str) or not name:
        raise ValidationError(field, "must be an IANA time zone name such as Europe/Berlin")
    if len(name) > MAX_TIMEZONE_LENGTH or name not in known_timezones():
        raise ValidationError(
            field,
            f"unknown time zone {shown(name)} (use an IANA name such as Europe/Berlin or UTC)",
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        log.warning("time zone %r is listed but cannot be loaded", name)
        raise ValidationError(field, f"time zone {shown(name)} cannot be loaded") from None
