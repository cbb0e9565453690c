"""``report.html``: what the curator did — counts, why clips were dropped, score histograms, thumbnails."""

from __future__ import annotations

import html
from collections import Counter
from pathlib import Path

from openwfm.curate.manifest import Manifest


# what each score histogram's x axis measures (curate/quality.py, video/motion.py)
SCORE_AXES = {"motion": "motion: mean flow per frame pair (fraction of the diagonal)",
              "shake": "shake: camera jitter per frame pair (fraction of the diagonal)",
              "sharpness": "sharpness: variance of the Laplacian (256 px gray)",
              "noise": "noise: estimated std (gray levels)",
              "brightness": "brightness: mean luminance (0-1)"}


def _rows(pairs: list[tuple[str, str]]) -> list[str]:
    """Table rows of (path, note), or one row saying there are none."""
    return [f"<tr><td>{html.escape(p)}</td><td>{html.escape(e)}</td></tr>" for p, e in pairs] or ["<tr><td>none</td></tr>"]


def write_report(out_dir: str | Path) -> Path:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    m = Manifest(out)
    m.close()
    clips = list(m.records("clip"))
    inputs = list(m.records("input"))
    (out / "report").mkdir(exist_ok=True)
    rows = []
    for name in ("motion", "shake", "sharpness", "noise", "brightness"):
        vals = [c["scores"][name] for c in clips if "scores" in c and name in c["scores"]]
        if not vals:
            continue
        fig, ax = plt.subplots(figsize=(4.2, 2.8))
        ax.hist(vals, bins=20, color="#4a7")
        ax.set_title(f"{name} ({len(vals)} clips)")
        ax.set_xlabel(SCORE_AXES.get(name, name), fontsize=8)
        ax.set_ylabel("clips")
        ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        fig.tight_layout()
        fig.savefig(out / "report" / f"{name}.png", dpi=80)
        plt.close(fig)
        rows.append(f'<img src="report/{name}.png" alt="{name}">')
    thumbs = []
    for c in [c for c in clips if c["status"] == "kept"][:24]:
        from openwfm.video import read_video
        from PIL import Image

        try:
            f = read_video(out / c["file"], 0, 1).frames[0]
        except Exception:  # noqa: BLE001 - a thumbnail is not worth failing the report
            continue
        Image.fromarray(f).save(out / "report" / f"{c['id']}.jpg", quality=80)
        cap = html.escape(c.get("caption", ""))  # whole: the figure wraps it
        thumbs.append(f'<figure><img src="report/{c["id"]}.jpg" width="160" alt="{html.escape(c["id"])}">'
                      f'<figcaption>{cap}</figcaption></figure>')
    reasons = Counter(c.get("reason", "").split(":")[0] for c in clips if c["status"] == "dropped")
    failed = [(i["path"], i.get("error", "")) for i in inputs if i["status"] == "failed"]
    skipped = [(i["path"], i.get("reason", "")) for i in inputs if i["status"] == "skipped"]
    partial = [(i["path"], i.get("error", "")) for i in inputs if i["status"] == "partial"]
    counts = m.counts()
    doc = ["<!doctype html><meta charset=utf-8><title>openwfm curation report</title>",
           "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px}figure{display:inline-block;"
           "vertical-align:top;margin:4px;font-size:11px;width:160px;overflow-wrap:break-word}</style>",
           "<h1>Curation report</h1><h2>Counts</h2><table>"]
    for kind, by in counts.items():
        doc.append(f"<tr><th>{kind}</th><td>{', '.join(f'{k}: {v}' for k, v in sorted(by.items()))}</td></tr>")
    doc.append("</table><h2>Dropped clips by reason</h2><table>")
    doc += [f"<tr><td>{html.escape(r)}</td><td>{n}</td></tr>" for r, n in reasons.most_common()]
    doc.append("</table><h2>Failed inputs</h2><table>")
    doc += _rows(failed)
    doc.append("</table><h2>Partial inputs (truncated or damaged: the decodable part curated)</h2><table>")
    doc += _rows(partial)
    doc.append("</table><h2>Skipped paths (not curated)</h2><table>")
    doc += _rows(skipped)
    doc.append("</table><h2>Scores</h2>" + "".join(rows) + "<h2>Kept clips</h2>" + "".join(thumbs))
    path = out / "report.html"
    path.write_text("\n".join(doc))
    return path
