"""Storage: SQLAlchemy 2 models, the engine, query services and Alembic migrations."""

from dashboard.storage.db import Database, make_engine
from dashboard.storage.models import Base

__all__ = ["Base", "Database", "make_engine"]
