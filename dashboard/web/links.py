"""URLs of evidence files and camera snapshots (served by the API, which checks scope), built in one
place for pages, cards and reports."""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import Request

from dashboard.web.queries import AlertRow


class Links:
    """Builds the URLs the pages put into <img> and <video> elements."""

    def __init__(self, request: Request) -> None:
        self._request = request

    def evidence(self, evidence_id: int) -> str:
        """Return the URL of a stored evidence file (snapshot or clip)."""
        return self._request.url_for("evidence", evidence_id=evidence_id).path

    def snapshot(self, site: str, camera: str) -> str:
        """Return the URL of a camera's latest snapshot."""
        return self._request.url_for("snapshot", site=site, camera=camera).path

    def attach(self, rows: Iterable[AlertRow]) -> None:
        """Fill in each row's snapshot URL."""
        for row in rows:
            if row.snapshot_id is not None:
                row.snapshot_url = self.evidence(row.snapshot_id)
