"""Fixtures for the dashboard tests (defined in dashboard_fixtures.py: a unique module name, since every
test folder has a conftest)."""

from dashboard_fixtures import dashboard, database_url, pg_server

__all__ = ["dashboard", "database_url", "pg_server"]
