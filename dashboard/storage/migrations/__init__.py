"""Alembic migrations of the dashboard database (`sitesentry dashboard db upgrade`)."""
