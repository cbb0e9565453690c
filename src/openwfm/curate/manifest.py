"""The curator's manifest: an account of every input file and every clip, that survives a crash.

``manifest.jsonl`` in the output directory holds one JSON record per line, appended, flushed and fsynced
as work finishes; the latest record of an id is its state. A crash (even ``kill -9``) can only lose the
line being written — a torn last line is ignored on reading — so ``--resume`` knows exactly what is done.

Records:
- input: ``{"type": "input", "id", "path", "status": "started" | "done" | "partial" | "failed" | "skipped",
  "error"?, "reason"? (skipped: not a video extension, a dangling link), "decoded"? / "declared"? (partial: a
  truncated or damaged file, its decodable part curated), "clips"?}``
- clip:  ``{"type": "clip", "id", "input", "start", "end", "status": "kept" | "dropped" | "failed",
  "reason"?, "error"?, "scores"?, ...}`` — ``start``/``end`` in seconds of the source.
- stage: ``{"type": "stage", "id": "<name>", "status": "done", ...}`` for whole-run stages (dedup, shard).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Iterator

from openwfm.files import MANIFEST

log = logging.getLogger(__name__)


class Manifest:
    def __init__(self, out_dir: str | os.PathLike):
        self.path = Path(out_dir) / MANIFEST
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.state: dict[tuple[str, str], dict] = {}
        self.order: list[tuple[str, str]] = []
        if self.path.is_file():
            self._load()
        self._f = open(self.path, "a", encoding="utf-8")

    def _load(self) -> None:
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        good = 0
        for i, line in enumerate(lines):
            if not line.strip():
                good += len(line) + 1
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                if i >= len(lines) - 2:  # the torn tail of a crash: drop it
                    log.warning("%s: ignoring an incomplete last record (the run was interrupted)", self.path)
                    break
                raise ValueError(f"{self.path}: line {i + 1} is not JSON; the manifest is damaged") from None
            self._apply(rec)
            good += len(line) + 1
        if good < len(data):  # cut the torn tail so new records start on a fresh line
            with open(self.path, "r+b") as f:
                f.truncate(min(good, len(data)))

    def _apply(self, rec: dict) -> None:
        key = (rec["type"], rec["id"])
        if key not in self.state:
            self.order.append(key)
        self.state[key] = rec

    def record(self, type: str, id: str, status: str, **fields) -> dict:
        """Append a record and make it durable before returning."""
        rec = {"type": type, "id": id, "status": status, **fields}
        self._f.write(json.dumps(rec, default=str) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())
        self._apply(rec)
        return rec

    def get(self, type: str, id: str) -> dict | None:
        return self.state.get((type, id))

    def records(self, type: str) -> Iterator[dict]:
        """Latest record of every id of ``type``, in first-seen order."""
        for key in self.order:
            if key[0] == type:
                yield self.state[key]

    def clips_of(self, input_id: str) -> list[dict]:
        return [r for r in self.records("clip") if r.get("input") == input_id]

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for (type, _), rec in ((k, self.state[k]) for k in self.order):
            out.setdefault(type, {}).setdefault(rec["status"], 0)
            out[type][rec["status"]] += 1
        return out

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "Manifest":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
