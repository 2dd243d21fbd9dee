"""The manifest of an index bundle: what was built, from what, with which model, and checksums.

``manifest.json`` is the one file a loader trusts first; every other file of the bundle is listed
in it with its size and sha256, so a loader refuses a bundle whose files were altered or truncated.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.errors import BundleCorrupt

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
INDEX_FILE = "index.faiss"
ITEMS_FILE = "items.parquet"
VECTORS_FILE = "vectors.npy"
BUNDLE_FILES = (INDEX_FILE, ITEMS_FILE, VECTORS_FILE)

# Similarity is the inner product of unit vectors, i.e. cosine similarity.
METRIC_INNER_PRODUCT = "inner_product"


@dataclass(frozen=True)
class ModelInfo:
    """The embedder a bundle's vectors came from; queries must be embedded by the same."""

    spec: str
    dimension: int
    max_seq_length: int | None = None
    # torch, onnx or onnx-int8 (engine.embedder.BACKENDS); manifests older than it are torch.
    backend: str = "torch"


@dataclass(frozen=True)
class IndexInfo:
    """The FAISS index: its factory string and default search parameters."""

    factory: str
    metric: str = METRIC_INNER_PRODUCT
    # Defaults applied at query time: ``efSearch`` for HNSW, ``nprobe`` for IVF.
    search_params: dict[str, int] = field(default_factory=dict)
    chosen_by: str = "user"  # "auto" when vecrec picked it (measured by the autotuner)
    # What the build-time autotuner measured (indexer/autotune.py): target, recall, ms/query and
    # every candidate it tried; absent from bundles not autotuned.
    autotune: dict[str, Any] | None = None


@dataclass(frozen=True)
class FileInfo:
    sha256: str
    bytes: int


@dataclass(frozen=True)
class Manifest:
    """Everything a loader needs to know about a bundle before reading its files."""

    name: str
    version: str
    created_at: str
    vecrec_version: str
    model: ModelInfo
    index: IndexInfo
    item_count: int
    text_template: str
    metadata_columns: tuple[str, ...]
    list_columns: tuple[str, ...]
    has_popularity: bool
    files: dict[str, FileInfo]
    source: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    # Optional parts (engine/extras.py): "collaborative" (CF vectors + index), "lexical" (BM25),
    # each a description; their files are listed in ``files``. Absent from older bundles.
    extras: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BundleCorrupt(f"{MANIFEST_FILE} is not valid JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise BundleCorrupt(f"{MANIFEST_FILE} must hold a JSON object")
        version = raw.get("format_version")
        if version != FORMAT_VERSION:
            raise BundleCorrupt(
                f"bundle format version {version!r} is not supported (this vecrec reads "
                f"{FORMAT_VERSION})"
            )
        try:
            return cls(
                name=str(raw["name"]),
                version=str(raw["version"]),
                created_at=str(raw["created_at"]),
                vecrec_version=str(raw["vecrec_version"]),
                model=ModelInfo(**raw["model"]),
                index=IndexInfo(**raw["index"]),
                item_count=int(raw["item_count"]),
                text_template=str(raw["text_template"]),
                metadata_columns=tuple(raw["metadata_columns"]),
                list_columns=tuple(raw["list_columns"]),
                has_popularity=bool(raw["has_popularity"]),
                files={k: FileInfo(**v) for k, v in raw["files"].items()},
                source=dict(raw.get("source", {})),
                format_version=int(version),
                extras={str(k): dict(v) for k, v in raw.get("extras", {}).items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BundleCorrupt(
                f"{MANIFEST_FILE} is missing or has a malformed field: {exc}"
            ) from exc
