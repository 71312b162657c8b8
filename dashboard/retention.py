"""Retention: events and evidence older than `retention_days` are deleted (placeholder, filled in below)."""

from __future__ import annotations

from dashboard.context import AppContext


def sweep(ctx: AppContext) -> None:
    """Delete what is past retention."""
