"""The outbox's errors. No storage driver error (``sqlite3.*``) leaves the driver: it becomes
one of these.

    RuntimeError
     └── OutboxError
          ├── OutboxUnavailable     the storage cannot be used now; try again later (HTTP 503)
          │    ├── OutboxClosed     this outbox was closed
          │    └── OutboxBusy       another connection held the write lock past the busy timeout
          ├── StorageError          the storage refused a statement (a bug, not the weather)
          │    └── UniqueViolation  a unique constraint (``constraint`` names it)
          ├── DuplicateImportName   another batch already has this import name
          └── LeaseLost             the batch is no longer this worker's (closed, or taken over)
"""

from __future__ import annotations


class OutboxError(RuntimeError):
    """The outbox failed."""


class OutboxUnavailable(OutboxError):
    """The outbox's storage cannot be used now (disk full, file deleted or unwritable, I/O
    error); nothing was written. Try again later."""


class OutboxClosed(OutboxUnavailable):
    """The outbox is closed."""


class OutboxBusy(OutboxUnavailable):
    """Another connection held the write lock longer than the busy timeout."""


class StorageError(OutboxError):
    """The storage refused a statement."""


class UniqueViolation(StorageError):
    """A unique constraint was violated."""

    def __init__(self, message: str, constraint: str) -> None:
        super().__init__(message)
        self.constraint = constraint


class DuplicateImportName(OutboxError, ValueError):
    """Another batch already has this import name (names must be unique)."""


class LeaseLost(OutboxError):
    """The batch is closed or held by another worker: leave it alone."""
