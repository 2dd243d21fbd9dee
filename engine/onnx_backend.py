"""ONNX Runtime backends of a local sentence-transformers model: ``onnx`` (fp32) and ``onnx-int8``.

:mod:`engine.onnx_export` exports transformer + mean pooling + normalisation offline from the
local weights; here ONNX Runtime runs it, fed by the model directory's fast ``tokenizers``
tokenizer, which truncates at the model's ``max_seq_length`` exactly as sentence-transformers
does (outputs equal to torch's to 2e-7).

The export is cached in ``export_dir``: for a bundle's queries and builds ``<indexes>/.cache/onnx``
beside the embedding cache (see :func:`bundle_export_dir`)::

    indexes/.cache/onnx/all-MiniLM-L6-v2-0c9a3e1f5b2d7a64/model.onnx        fp32
    indexes/.cache/onnx/all-MiniLM-L6-v2-0c9a3e1f5b2d7a64/model-int8.onnx   int8 weights
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.embedder import (
    BACKEND_ONNX,
    BACKEND_ONNX_INT8,
    normalize_rows,
    resolve_model_dir,
)
from engine.errors import EmbedderError
from engine.onnx_export import check_exportable, ensure_export, read_json, st_config

ONNX_DIR_NAME = "onnx"


def default_export_dir() -> Path:
    """``$VECREC_ONNX_DIR``, else ``~/.cache/vecrec/onnx``: for embedders built outside a bundle."""
    env = os.environ.get("VECREC_ONNX_DIR")
    return Path(env) if env else Path.home() / ".cache" / "vecrec" / ONNX_DIR_NAME


def bundle_export_dir(bundle_path: Path) -> Path:
    """Where a bundle's build left its export: ``<indexes>/.cache/onnx`` for a bundle at
    ``<indexes>/<name>/<version>`` (the build's default embedding-cache directory)."""
    from engine.embed_cache import CACHE_DIR_NAME

    return Path(bundle_path).resolve().parent.parent / CACHE_DIR_NAME / ONNX_DIR_NAME


class OnnxEmbedder:
    """A local mean-pooling sentence-transformers model run by ONNX Runtime; loaded on first use.

    ``threads`` is ONNX Runtime's intra-op thread count (default: all cores). ``device`` ``cuda``
    uses the CUDA execution provider, which needs onnxruntime-gpu.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        quantized: bool = False,
        threads: int | None = None,
        export_dir: Path | None = None,
        device: str = "cpu",
    ) -> None:
        self._model_ref = str(model)
        self._quantized = quantized
        self._threads = threads
        self._export_dir = export_dir
        self._device = device
        self._session: Any = None
        self._tokenizer: Any = None
        self._lower = False
        self._dimension: int | None = None
        self._max_seq_length: int | None = None
        self.model_file: Path | None = None

    @property
    def spec(self) -> str:
        return self._model_ref

    @property
    def backend(self) -> str:
        return BACKEND_ONNX_INT8 if self._quantized else BACKEND_ONNX

    def _model_dir(self) -> Path:
        return resolve_model_dir(self._model_ref)

    def _load(self) -> Any:
        if self._session is None:
            import onnxruntime as ort
            from tokenizers import Tokenizer

            model_dir = self._model_dir()
            max_len = check_exportable(model_dir)
            path = ensure_export(
                model_dir,
                self._export_dir or default_export_dir(),
                quantized=self._quantized,
                name=self._model_ref,
            )
            tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
            # The model config's own limit caps sentence-transformers' max_seq_length too.
            config = read_json(model_dir / "config.json")
            max_len = min(max_len, int(config.get("max_position_embeddings", max_len)))
            tokenizer.enable_truncation(max_length=max_len)
            tokenizer.no_padding()
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            if self._threads is not None:
                options.intra_op_num_threads = self._threads
            options.inter_op_num_threads = 1
            providers = ["CPUExecutionProvider"]
            if self._device == "cuda":
                providers.insert(0, "CUDAExecutionProvider")
            try:
                session = ort.InferenceSession(str(path), options, providers=providers)
            except Exception as exc:
                raise EmbedderError(f"cannot load the ONNX model {path}: {exc}") from exc
            self._lower = bool(st_config(model_dir).get("do_lower_case", False))
            self._tokenizer, self._max_seq_length = tokenizer, max_len
            self._dimension = int(config.get("hidden_size", 0)) or None
            self.model_file = path
            self._session = session
        return self._session

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            self._load()
            if self._dimension is None:
                self._dimension = int(self.embed(["x"]).shape[1])
        return self._dimension

    @property
    def max_seq_length(self) -> int | None:
        self._load()
        return self._max_seq_length

    def embed(
        self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False
    ) -> np.ndarray:
        """``float32 (len(texts), dimension)`` unit vectors.

        Texts are batched in order of token count, as sentence-transformers does, so a batch
        pads to lengths close to its own (a title batched with an abstract pays for 256 tokens).
        """
        session = self._load()
        if len(texts) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # sentence-transformers lowercases before tokenising when the model asks for it.
        batch = [t.lower() for t in texts] if self._lower else list(texts)
        encodings = self._tokenizer.encode_batch(batch)
        lengths = np.array([len(e.ids) for e in encodings])
        order = np.argsort(-lengths, kind="stable")
        out: np.ndarray | None = None
        for start in range(0, len(order), max(batch_size, 1)):
            rows = order[start : start + batch_size]
            width = int(lengths[rows].max())
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            types = np.zeros((len(rows), width), dtype=np.int64)
            for i, row in enumerate(rows):
                enc = encodings[row]
                n = len(enc.ids)
                ids[i, :n], mask[i, :n], types[i, :n] = enc.ids, enc.attention_mask, enc.type_ids
            (vectors,) = session.run(
                None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            )
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            out[rows] = vectors
        assert out is not None
        return normalize_rows(out)
