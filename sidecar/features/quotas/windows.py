"""Calendar windows for daily and monthly quotas, in the policy's time zone.

A window is named by its local start date (`d2026-11-25`, `m2026-11`), so every replica and a
restarted sidecar agree on which counter a request belongs to; it ends at the next local
midnight (or first of the month), daylight-saving shifts included, thanks to zoneinfo.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sidecar.core.limits import Period


@dataclass(frozen=True)
class Window:
    id: str
    end: float  # epoch seconds when the next window starts


def current_window(period: Period, zone: ZoneInfo, now: float) -> Window:
    local = datetime.fromtimestamp(now, zone)
    if period == "day":
        start = local.date()
        following = start + timedelta(days=1)
        window_id = f"d{start.isoformat()}"
    elif period == "month":
        start = local.date().replace(day=1)
        following = (start + timedelta(days=32)).replace(day=1)
        window_id = f"m{start.year:04d}-{start.month:02d}"
    else:
        raise ValueError(f"no calendar window for period {period!r}")
    end = datetime(following.year, following.month, following.day, tzinfo=zone)
    return Window(window_id, end.timestamp())
