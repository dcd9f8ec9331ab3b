"""Times as both products write them (ISO 8601) -> exact instants.

One rule for the webhook, which refuses what it cannot read, and the outbox, which orders
versions by it: what one accepts the other can order.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_LONG_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_timestamp(value: object) -> int:
    """ISO 8601 -> integer microseconds since the epoch (UTC; naive means UTC).

    Exact integers, so two spellings of one instant ("...Z", "+00:00", another offset) are
    the same version, and ordering never depends on string comparison. Digits past the
    microsecond are dropped. Anything else, and an instant outside years 1 to 9999 in UTC,
    raises ``ValueError``.
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be an ISO 8601 string, got {value!r}")
    s = value.strip()
    if s[-1] in "zZ":
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(_LONG_FRACTION.sub(r"\1", s))
        dt = dt.astimezone(timezone.utc) if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
    except (ValueError, OverflowError):   # OverflowError: before year 1 or after 9999 in UTC
        raise ValueError(f"not an ISO 8601 time of years 1 to 9999 (UTC): {value[:40]!r}"
                         ) from None
    return (dt - _EPOCH) // timedelta(microseconds=1)
