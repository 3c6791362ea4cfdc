"""Billing periods: a calendar month in UTC, written `YYYY-MM`; one rule for every service."""

from __future__ import annotations

from datetime import UTC, datetime


def period_of(instant: datetime) -> str:
    """The billing period of an instant: its calendar month in UTC, `YYYY-MM`."""
    return instant.astimezone(UTC).strftime("%Y-%m")
