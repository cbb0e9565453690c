"""Evaluation results as ``results.json`` (plain numbers; NaN as null) and ``report.html`` (one
self-contained page: inline CSS, no scripts, no external assets). Shared by ``wfm eval physics``,
``consistency`` and ``tokenizer``.

A result is a dict with optional ``title``, ``config``, ``notes`` (list of strings) and any number of
tables: lists of flat dicts (``summary`` first, then ``rows``, then the others in order). ``write_report``
adds ``run``: the command, date (UTC), machine, Python / torch / openwfm versions.
"""

from __future__ import annotations

import dataclasses
import datetime
import html
import json
import math
import os
import platform
import shlex
import sys
from pathlib import Path

import numpy as np


def run_info(command: list[str] | str | None = None) -> dict:
    """Where and when a result was made."""
    import torch

    from openwfm.version import __version__

    cmd = command if command is not None else sys.argv
    return {"command": cmd if isinstance(cmd, str) else shlex.join(map(str, cmd)),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": platform.node(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__, "openwfm": __version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def plain(obj):
    """JSON-ready copy: numpy / torch scalars and arrays to Python numbers and lists, non-finite floats to
    None, paths to strings, dataclasses to dicts."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return plain(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy / torch
        return plain(obj.tolist())
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, os.PathLike):
        return str(obj)
    return str(obj)


def tables(result: dict) -> list[tuple[str, list[dict]]]:
    """(name, rows) of every table in a result: summary, rows, then the others."""
    found = [(k, v) for k, v in result.items() if isinstance(v, list) and v and all(isinstance(r, dict) for r in v)]
    rank = {"summary": 0, "rows": 1}
    return sorted(found, key=lambda kv: rank.get(kv[0], 2))


def fmt(v) -> str:
    """A cell: 4 significant digits for floats, '—' for missing values."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (float, np.floating)):
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
    return str(v)


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f0f0f0}
td:first-child,th:first-child{text-align:left}
pre{background:#f7f7f7;padding:8px;overflow-x:auto}caption{text-align:left;font-weight:bold;padding:4px 0}"""


def render_html(result: dict) -> str:
    """A self-contained HTML page of a result."""
    e = html.escape
    title = e(str(result.get("title", "Evaluation")))
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title><style>{_CSS}</style>"
             f"</head><body><h1>{title}</h1>"]
    if result.get("notes"):
        parts.append("<ul>" + "".join(f"<li>{e(str(n))}</li>" for n in result["notes"]) + "</ul>")
    for name, rows in tables(result):
        cols = list(dict.fromkeys(c for r in rows for c in r))
        head = "".join(f"<th>{e(c)}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td>{e(fmt(r.get(c)))}</td>" for c in cols) + "</tr>" for r in rows)
        parts.append(f"<table><caption>{e(name)}</caption><tr>{head}</tr>{body}</table>")
    for key in ("config", "run"):
        if key in result:
            parts.append(f"<h2>{key}</h2><pre>{e(json.dumps(plain(result[key]), indent=1))}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(result: dict, out_dir: str | os.PathLike, command: list[str] | str | None = None
                 ) -> tuple[Path, Path]:
    """Write ``results.json`` and ``report.html`` into ``out_dir`` (created); returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = plain({**result, "run": run_info(command)})
    json_path, html_path = out / "results.json", out / "report.html"
    json_path.write_text(json.dumps(doc, indent=1, allow_nan=False))
    html_path.write_text(render_html(doc))
    return json_path, html_path
