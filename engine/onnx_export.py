"""Offline ONNX export of a local sentence-transformers model, fp32 and dynamic int8.

The model's transformer, mean pooling and L2 normalisation are exported together by
``torch.onnx.export`` from the local weights (nothing is downloaded), so ONNX Runtime returns the
final unit vectors. An export lives in a folder named after a digest of the model's files, so a
changed model is exported afresh; files appear by ``os.replace`` of a complete temporary file, so
concurrent processes may export at once and a reader never sees half a model.

int8 is ONNX Runtime's dynamic quantisation (weights int8 per output channel, activations
quantised per batch at run time) with ``reduce_range`` (7-bit weights), which ONNX Runtime offers
against saturating u8·s8 products: measured here, cosine to torch >= 0.94 without, >= 0.98 with.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

from engine.errors import EmbedderError

EXPORT_FORMAT = "1"  # bump when the exported graph changes
FP32_FILE = "model.onnx"
INT8_FILE = "model-int8.onnx"
_OPSET = 17
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")
_HASHED_FILES = ("config.json", "modules.json", "sentence_bert_config.json", "tokenizer.json")
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise EmbedderError(f"cannot read {path}: {exc}", field="model") from exc
    if not isinstance(value, dict):
        raise EmbedderError(f"{path} does not hold a JSON object", field="model")
    return value


def check_exportable(model_dir: Path) -> int:
    """Raise unless ``model_dir`` is Transformer → mean Pooling [→ Normalize] with a fast
    tokenizer (the pipeline the export reproduces); returns its ``max_seq_length``."""
    modules_file = model_dir / "modules.json"
    modules: Any = []
    if modules_file.is_file():
        try:
            modules = json.loads(modules_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise EmbedderError(f"cannot read {modules_file}: {exc}", field="model") from exc
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        modules = []
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    if kinds[:2] != ["Transformer", "Pooling"] or any(k != "Normalize" for k in kinds[2:]):
        raise EmbedderError(
            f"the onnx backends export Transformer + Pooling (+ Normalize) models; {model_dir} "
            f"has {kinds or 'no modules.json'}",
            field="backend",
        )
    pooling = read_json(model_dir / str(modules[1].get("path", "1_Pooling")) / "config.json")
    modes = {k for k, v in pooling.items() if k.startswith("pooling_mode") and v is True}
    if modes != {"pooling_mode_mean_tokens"}:
        raise EmbedderError(
            f"the onnx backends support mean pooling only; {model_dir} pools by {sorted(modes)}",
            field="backend",
        )
    if not (model_dir / "tokenizer.json").is_file():
        raise EmbedderError(f"{model_dir} has no tokenizer.json (fast tokenizer)", field="backend")
    return int(st_config(model_dir).get("max_seq_length") or 512)


def st_config(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "sentence_bert_config.json"
    return read_json(path) if path.is_file() else {}


def model_digest(model_dir: Path) -> str:
    """16 hex digits identifying the model's weights and configuration, and the export format."""
    digest = hashlib.sha256(EXPORT_FORMAT.encode())
    for name in (*_HASHED_FILES, *_WEIGHT_FILES):
        path = model_dir / name
        if path.is_file():
            digest.update(name.encode() + b"\0")
            with path.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


def _atomic_target(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def export_fp32(model_dir: Path, target: Path) -> None:
    """Export transformer + mean pooling + L2 normalisation of ``model_dir`` to ``target``."""
    import torch
    from transformers import AutoModel

    class Pipeline(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            # sentence-transformers' Pooling(mean) and Normalize, operation for operation.
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    model = AutoModel.from_pretrained(str(model_dir)).eval()
    dummy = torch.ones((2, 8), dtype=torch.long)
    axes = {0: "batch", 1: "tokens"}
    tmp = _atomic_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        # The tracer warns about every shape-dependent branch of BERT's mask code; the dynamic
        # axes cover them (outputs checked against torch to 2e-7 on padded batches).
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Pipeline(model),
                (dummy, dummy, torch.zeros_like(dummy)),
                str(tmp),
                input_names=["input_ids", "attention_mask", "token_type_ids"],
                output_names=["embedding"],
                dynamic_axes={
                    "input_ids": axes,
                    "attention_mask": axes,
                    "token_type_ids": axes,
                    "embedding": {0: "batch"},
                },
                opset_version=_OPSET,
                # The TorchScript exporter needs no onnxscript and handles BERT's masks.
                dynamo=False,
            )
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def quantize_int8(source: Path, target: Path) -> None:
    """Dynamic int8 quantisation of ``source`` (see the module docstring for the options)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = _atomic_target(target)
    try:
        quantize_dynamic(
            str(source), str(tmp), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True
        )
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def ensure_export(
    model_dir: Path, export_dir: Path, *, quantized: bool, name: str | None = None
) -> Path:
    """The cached ONNX file of ``model_dir`` (fp32 or int8), exporting it first if missing.

    ``name`` (default: the directory's name) makes the export's folder name readable."""
    slug = _SLUG.sub("_", name or model_dir.name).strip("._")[-40:] or "model"
    folder = Path(export_dir) / f"{slug}-{model_digest(model_dir)}"
    fp32 = folder / FP32_FILE
    try:
        if not fp32.is_file():
            export_fp32(model_dir, fp32)
        if not quantized:
            return fp32
        int8 = folder / INT8_FILE
        if not int8.is_file():
            quantize_int8(fp32, int8)
        return int8
    except OSError as exc:
        raise EmbedderError(f"cannot write the ONNX export under {folder}: {exc}") from exc
    except (RuntimeError, ValueError) as exc:
        raise EmbedderError(f"cannot export {model_dir} to ONNX: {exc}") from exc
