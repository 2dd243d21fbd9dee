"""The output directory of a bulk job: numbered Parquet parts, a job file, resumption.

``OUT/part-000000.parquet`` holds the answers of the first chunk of users, and so on: a part's
users are fixed by the input and the chunk size, so a rerun makes the same parts. A part is
written to a hidden temporary name, flushed, and renamed into place: a part that exists is
complete, whatever killed the job. ``OUT/_job.json`` records what the parts answer (input,
index version, request, chunk size); ``--resume`` refuses a directory whose job differs, skips
the parts present and removes the temporaries of the killed run. ``OUT/_SUCCESS`` marks a job
that finished.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from engine.errors import InvalidArgument

JOB_FILE = "_job.json"
SUCCESS_FILE = "_SUCCESS"
TMP_PREFIX = ".tmp-"


def part_name(index: int) -> str:
    return f"part-{index:06d}.parquet"


class PartStore:
    """Writes, and on resume finds, the parts of one job in ``out``."""

    def __init__(self, out: Path, job: dict[str, Any], *, resume: bool) -> None:
        self.out = Path(out)
        if self.out.exists() and not self.out.is_dir():
            raise InvalidArgument(f"--out {self.out} exists and is not a directory", field="out")
        self.out.mkdir(parents=True, exist_ok=True)
        job_path = self.out / JOB_FILE
        if job_path.exists():
            if not resume:
                raise InvalidArgument(
                    f"--out {self.out} already holds a bulk job; pass --resume to finish it or "
                    "choose another directory",
                    field="out",
                )
            previous = json.loads(job_path.read_text(encoding="utf-8"))
            if previous != job:
                changed = sorted(
                    k for k in set(job) | set(previous) if job.get(k) != previous.get(k)
                )
                raise InvalidArgument(
                    f"--resume: {self.out} holds a different job (changed: {', '.join(changed)})",
                    field="out",
                )
        else:
            if any(p for p in self.out.iterdir() if not p.name.startswith(".")):
                raise InvalidArgument(
                    f"--out {self.out} is not empty and holds no bulk job", field="out"
                )
            self._write_json(job_path, job)
        for stale in self.out.glob(f"{TMP_PREFIX}*"):
            stale.unlink()  # a part the killed run did not finish
        (self.out / SUCCESS_FILE).unlink(missing_ok=True)

    def done(self, index: int) -> bool:
        return (self.out / part_name(index)).exists()

    def write(self, index: int, table: pa.Table) -> Path:
        return self.write_part(self.out, index, table)

    @staticmethod
    def write_part(out: Path, index: int, table: pa.Table) -> Path:
        """Write part ``index`` atomically: complete under its name, or absent."""
        final = out / part_name(index)
        tmp = out / f"{TMP_PREFIX}{part_name(index)}"
        with tmp.open("wb") as fh:
            # Dictionary pages only for the id columns, where values repeat: on ranks and scores
            # they cost time and save nothing (a 102,400-row part: 6.0 ms and 0.45 MB, against
            # 14.7 ms and 0.64 MB with the default of every column).
            ids = [name for name in ("user_id", "item_id") if name in table.column_names]
            # Statistics serve readers that prune by user; item ids' min and max prune nothing.
            stats = [name for name in table.column_names if name not in ("item_id", "explanation")]
            pq.write_table(
                table, fh, compression="zstd", use_dictionary=ids, write_statistics=stats
            )
            fh.flush()
            os.fsync(fh.fileno())  # on disk before the name says it is complete
        os.replace(tmp, final)
        return final

    def finish(self, summary: dict[str, Any]) -> None:
        self._write_json(self.out / SUCCESS_FILE, summary)

    def _write_json(self, path: Path, value: dict[str, Any]) -> None:
        tmp = path.with_name(f"{TMP_PREFIX}{path.name}")
        tmp.write_text(json.dumps(value, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
