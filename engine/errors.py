"""The vecrec exception tree.

Every error a caller can provoke with bad input derives from :class:`VecrecError`, so the HTTP
layer and the CLI map them in one place and never show a traceback::

    VecrecError
    ├── BundleError              an index bundle is missing, malformed or fails verification
    │   ├── BundleNotFound
    │   └── BundleCorrupt        checksum mismatch, unreadable file, manifest out of spec
    ├── CatalogError             a catalogue cannot be turned into items (indexer side)
    ├── EmbedderError            the model cannot be loaded or does not match the bundle
    ├── IndexLocked              another process is writing the index (build, rollback, gc)
    ├── InvalidArgument          an argument or option out of range or malformed: k, NaN weight,
    │                            unknown filter field, bad factory string ...
    └── QueryError               a well-formed request the engine cannot answer
        ├── UnknownItem          an item id the bundle does not hold
        └── NoUsableInput        nothing to build a query from and no popularity to fall back on

Each error carries ``field`` when one request or option field is at fault, so messages can name it.
"""

from __future__ import annotations


class VecrecError(Exception):
    """Base of every error vecrec raises on purpose."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return self.message


class BundleError(VecrecError):
    """An index bundle cannot be used."""


class BundleNotFound(BundleError):
    """The path holds no bundle."""


class BundleCorrupt(BundleError):
    """The bundle exists but fails verification (checksums, manifest, file format)."""


class CatalogError(VecrecError):
    """A catalogue (or a file joined to it) cannot be read or is invalid."""


class EmbedderError(VecrecError):
    """The embedding model cannot be loaded or is incompatible with the bundle."""


class QueryError(VecrecError):
    """A query the engine cannot answer as asked."""


class InvalidArgument(VecrecError):
    """An argument or option is out of range or malformed."""


class IndexLocked(VecrecError):
    """Another process holds the index's writer lock; one writer at a time per index."""


class UnknownItem(QueryError):
    """An item id that the bundle does not hold."""

    def __init__(self, item_id: str, *, field: str | None = "item_id") -> None:
        super().__init__(f"unknown item id {item_id!r}", field=field)
        self.item_id = item_id


class NoUsableInput(QueryError):
    """Neither a known history item nor interests text, and no popularity to fall back on."""


__all__ = [
    "BundleCorrupt",
    "BundleError",
    "BundleNotFound",
    "CatalogError",
    "EmbedderError",
    "IndexLocked",
    "InvalidArgument",
    "NoUsableInput",
    "QueryError",
    "UnknownItem",
    "VecrecError",
]
