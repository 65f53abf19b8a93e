"""China Standard Time, the clock of the platforms: TOP's timestamps, and the day that daily quotas count."""

from __future__ import annotations

from datetime import timedelta, timezone

#: GMT+8, whatever the machine's own zone.
CHINA_TZ = timezone(timedelta(hours=8), name="GMT+8")
