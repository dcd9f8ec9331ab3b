"""PostgreSQL, the shared store of several replicas (``LABELBRIDGE_DATABASE_URL``): the
connection pool, versioned schemas, and work that must run on one replica at a time.

An adapter like ``labelbox/`` and ``labelstudio/``, for a database instead of a product: it knows
psycopg and SQL plumbing, nothing of the bridge's formats or flows. The flows' drivers
(``groundtruth/outbox/postgres.py``, ``predictions/pg_store.py``) bring their own schemas and
queries. psycopg is imported only when a URL is used, so the SQLite default never loads it.
"""

from labelbridge.postgres.database import Database, is_database_url, redact
from labelbridge.postgres.once import Once, Solo

__all__ = ["Database", "is_database_url", "redact", "Once", "Solo"]
