"""A static HTML gallery of run folders: `genzoo report RUN... --out DIR`.

The report renders only what runs wrote: config.json, metrics.json,
metrics.jsonl (drawn as training curves with matplotlib), sample grids and the
progress animation under samples/, and every other PNG or GIF in the run folder
(reconstructions, denoising rows, latent plots, ...). It recomputes nothing.
Images are copied next to index.html, so the folder can be opened, zipped or
served without a network. With several runs a leaderboard table comes first.
"""

from __future__ import annotations

import html
import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

from .. import runs
from ..evaluation.leaderboard import leaderboard_row, row_label, table

IMAGE_SUFFIXES = (".png", ".gif", ".jpg", ".jpeg", ".svg")
# metrics.jsonl keys that are bookkeeping, not curves.
NOT_CURVES = {"step", "epoch", "time", "seconds", "elapsed", "images_per_s", "train_seconds", "steps_this_session",
              "world_size", "test_images", "test_seconds"}
TEST_PREFIX = "test_"  # the trainer's per-epoch pass over the test set: drawn over the training curve of the same key
MAX_CURVES = 12
MAX_EPOCH_THUMBS = 8
BEST = ' class="best"'  # a leaderboard cell, best in its column

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td.name, th.name { text-align: left; }
td.best { font-weight: bold; background: #eef7ee; }
figure { display: inline-block; margin: 0.4em; vertical-align: top; text-align: center; }
figcaption { font-size: 0.8em; color: #555; }
img.big { width: 420px; image-rendering: pixelated; }
img.thumb { width: 160px; image-rendering: pixelated; }
img.other { max-width: 100%; image-rendering: pixelated; }
img.plot { max-width: 100%; }
.meta { color: #555; font-size: 0.9em; }
"""


def read_json(path: Path) -> dict | None:
    """A JSON file as a dict (a non-dict value as {"value": ...}), None when missing; a torn file is a
    ValueError that names it and the fix."""
    if not path.exists():
        return None
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); rerun `genzoo evaluate` or delete the file") from e
    return value if isinstance(value, dict) else {"value": value}


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists kept as values."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def fmt(value: Any) -> str:
    """A metric as a table shows it: ints with thousands separators, floats to 4 significant digits
    (scientific when very large or small), short numeric lists in full, long ones as their length."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.4g}"
    if isinstance(value, list):
        if len(value) <= 12 and all(isinstance(v, (int, float)) for v in value):
            return "[" + ", ".join(fmt(v) for v in value) + "]"
        return f"[{len(value)} items]"
    return str(value)


def _esc(value: Any) -> str:
    return html.escape(fmt(value) if not isinstance(value, str) else value)


def epoch_key(path: Path) -> tuple[int, str]:
    """Sort key of a per-epoch picture (samples/epoch_12.png -> 12): the last number in its name."""
    digits = re.findall(r"\d+", path.stem)
    return (int(digits[-1]) if digits else -1, path.name)


class RunFiles:
    """What one run folder wrote, and where its images go in the report."""

    def __init__(self, run_dir: Path, slug: str, out_dir: Path):
        if not run_dir.is_dir():
            raise FileNotFoundError(f"{run_dir}: no such run folder; give the --out folder of `genzoo train`")
        self.dir, self.slug = run_dir, slug
        self.config = read_json(run_dir / "config.json") or {}
        evaluations = runs.read_evaluations(run_dir)  # the most complete first: the one the report shows
        self.metrics = evaluations[0][1] if evaluations else None
        self.other_evaluations = [path.name for path, _ in evaluations[1:]]
        self.log = runs.read_metrics_log(run_dir)
        report_dir = out_dir.resolve()  # a report written inside a run folder is not part of the run
        images = sorted(p for p in run_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                        and not p.name.startswith(".") and not p.resolve().is_relative_to(report_dir))
        samples = run_dir / "samples"
        # training's grids, one per epoch; `genzoo sample`'s own pictures (sample_n64_seed0.png, ...) go with the others
        self.grids = sorted((p for p in images if p.parent == samples and re.fullmatch(r"epoch_\d+\.png", p.name)),
                            key=epoch_key)
        self.progress = samples / "progress.gif" if (samples / "progress.gif").exists() else None
        shown = set(self.grids) | {self.progress}
        self.others = [p for p in images if p not in shown]

    @property
    def model(self) -> str:
        return str(self.config.get("model", "?"))


def copy_image(run: RunFiles, src: Path, out_dir: Path) -> str:
    """Copy an image of a run next to the page; return its relative URL."""
    rel = Path("runs") / run.slug / src.relative_to(run.dir)
    dest = out_dir / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return rel.as_posix()


def draw_curves(run: RunFiles, out_dir: Path) -> str | None:
    """Draw every numeric metrics.jsonl key against step into one PNG; return its URL."""
    series: dict[str, tuple[list[float], list[float]]] = {}
    for index, row in enumerate(run.log):
        x = row.get("step", index)
        if "event" in row:  # the trainer's end-of-run summary, not a point on a curve
            continue
        if not isinstance(x, (int, float)):
            continue
        for key, value in row.items():
            if key in NOT_CURVES or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if not math.isfinite(value):
                continue
            xs, ys = series.setdefault(key, ([], []))
            xs.append(float(x))
            ys.append(float(value))
    paired = {k for k in series if k.startswith(TEST_PREFIX) and k.removeprefix(TEST_PREFIX) in series}
    keys = [k for k, (xs, _) in series.items() if len(xs) >= 2 and k not in paired]
    keys = sorted(keys, key=lambda k: (k != "loss", k))[:MAX_CURVES]  # loss first
    if not keys:
        return None
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    ncols = min(3, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    fig = Figure(figsize=(4.2 * ncols, 2.8 * nrows), dpi=90, layout="tight")
    for i, key in enumerate(keys):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        xs, ys = series[key]
        ax.plot(xs, ys, lw=1.2, label="train")
        if TEST_PREFIX + key in paired:
            test_xs, test_ys = series[TEST_PREFIX + key]
            ax.plot(test_xs, test_ys, "o-", ms=3, lw=1.2, label="test (epoch ends)")
            ys = ys + test_ys  # the log-scale choice below sees both
            ax.legend(fontsize=7)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if min(ys) > 0 and max(ys) / min(ys) > 100:
            ax.set_yscale("log")
    rel = Path("runs") / run.slug / "training_curves.png"
    (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_dir / rel)
    return rel.as_posix()


def _leaderboard(runs: list[RunFiles]) -> str:
    rows = [leaderboard_row(r.dir, r.metrics or {}) for r in runs]
    columns, cells, notes = table(rows)
    head = "".join(f"<th>{html.escape(c.label)}</th>" for c in columns)
    lines = []
    for run, row, line in zip(runs, rows, cells):
        tds = "".join(f"<td{BEST if c.best else ''}>{html.escape(c.text + c.mark)}</td>" for c in line)
        lines.append(f'<tr><td class="name"><a href="#{run.slug}">{html.escape(run.slug)}</a></td>'
                     f'<td class="name">{html.escape(row_label({**row, "model": run.model}))}</td>{tds}</tr>')
    footnotes = "".join(f"<br>{html.escape(note)}" for note in notes)
    return (f'<h2>Leaderboard</h2>\n<table id="leaderboard"><tr><th class="name">run</th><th class="name">model</th>'
            f'{head}</tr>\n' + "\n".join(lines) + "</table>\n"
            '<p class="meta">Bold: best in its column among the numbers measured with the same settings. Numbers come '
            "from each run's most complete evaluation (`genzoo evaluate`); runs without one show –." + footnotes
            + "</p>")


def _key_value_table(d: dict, table_id: str | None = None) -> str:
    flat = flatten(d)
    attr = f' id="{table_id}"' if table_id else ""
    rows = "".join(f'<tr><td class="name">{html.escape(k)}</td><td class="name">{_esc(v)}</td></tr>'
                   for k, v in flat.items())
    return f"<table{attr}>{rows}</table>"


def _figure(url: str, caption: str, cls: str) -> str:
    return (f'<figure><a href="{html.escape(url)}"><img class="{cls}" src="{html.escape(url)}" '
            f'alt="{html.escape(caption)}"></a><figcaption>{html.escape(caption)}</figcaption></figure>')


def _metrics_table(metrics: dict, table_id: str) -> str:
    """One row per metric: value, unit, and the rest of its entry ({"value", "unit", "n", ...}) as details."""
    rows = []
    for key, entry in metrics.items():
        if isinstance(entry, dict) and "value" in entry:
            value, unit = entry["value"], entry.get("unit", "")
            details = ", ".join(f"{k}={fmt(v)}" for k, v in entry.items() if k not in ("value", "unit"))
        elif isinstance(entry, dict):
            value, unit, details = "", "", ", ".join(f"{k}={fmt(v)}" for k, v in flatten(entry).items())
        else:
            value, unit, details = entry, "", ""
        align = "" if isinstance(value, (int, float)) else ' class="name"'  # numbers right, text left
        rows.append(f'<tr><td class="name">{html.escape(key)}</td><td{align}>{_esc(value)}</td>'
                    f'<td class="name">{html.escape(str(unit))}</td><td class="name">{html.escape(details)}</td></tr>')
    return (f'<table id="{html.escape(table_id)}"><tr><th class="name">metric</th><th>value</th>'
            f'<th class="name">unit</th><th class="name">details</th></tr>' + "".join(rows) + "</table>")


def _run_section(run: RunFiles, out_dir: Path) -> str:
    parts = [f'<h2 id="{html.escape(run.slug)}">{html.escape(run.slug)} — {html.escape(run.model)}</h2>']
    cfg = run.config
    summary = {k: cfg[k] for k in ("model", "data", "seed", "genzoo_version") if k in cfg}
    train = cfg.get("train", {})
    if isinstance(train, dict):
        summary.update(
            {f"train.{k}": train[k] for k in ("epochs", "steps", "batch_size", "lr") if train.get(k) is not None}
        )
    parts.append(f'<p class="meta">{html.escape(str(run.dir))}<br>'
                 + " · ".join(f"{html.escape(k)}: {_esc(v)}" for k, v in summary.items()) + "</p>")
    if run.grids or run.progress:
        parts.append("<h3>Samples</h3>")
        if run.grids:
            latest = run.grids[-1]
            parts.append(_figure(copy_image(run, latest, out_dir), f"samples/{latest.name} (latest)", "big"))
        if run.progress:
            parts.append(_figure(copy_image(run, run.progress, out_dir), "samples/progress.gif", "big"))
        earlier = run.grids[:-1]
        if len(earlier) > MAX_EPOCH_THUMBS:  # evenly spaced, first one kept
            step = len(earlier) / MAX_EPOCH_THUMBS
            earlier = [earlier[int(i * step)] for i in range(MAX_EPOCH_THUMBS)]
        if earlier:
            parts.append("<div>" + "".join(_figure(copy_image(run, p, out_dir), f"samples/{p.name}", "thumb")
                                           for p in earlier) + "</div>")
    if run.others:
        parts.append("<h3>Other images</h3>")
        parts.append("".join(_figure(copy_image(run, p, out_dir), p.relative_to(run.dir).as_posix(), "other")
                             for p in run.others))
    curves = draw_curves(run, out_dir)
    if curves:
        parts.append("<h3>Training curves</h3>" + _figure(curves, "from metrics.jsonl", "plot"))
    if run.metrics:
        settings = run.metrics.get("settings")
        shown = f" ({html.escape(runs.evaluation_name(settings))}, the most complete)" if settings else ""
        others = (f'<p class="meta">Also evaluated (RUN/evaluations/): {html.escape(", ".join(run.other_evaluations))}'
                  "</p>") if run.other_evaluations else ""
        evaluated, now = run.metrics.get("trained_step"), runs.trained_step(run.dir)
        if evaluated is not None and evaluated != now:  # trained on since: the numbers are of earlier weights
            others += (f'<p class="meta">Evaluated at step {evaluated:,}; the run has trained to step {now:,} since: '
                       "run `genzoo evaluate` again for its current weights.</p>")
        parts.append(f"<h3>Metrics{shown}</h3>" + others + _metrics_table(run.metrics, f"metrics-{run.slug}"))
    if isinstance(cfg.get("hparams"), dict) and cfg["hparams"]:
        parts.append("<details><summary>hyper-parameters</summary>" + _key_value_table(cfg["hparams"]) + "</details>")
    return "\n".join(parts)


def _slugs(run_dirs: list[Path]) -> list[str]:
    """Unique, URL-safe names per run (folder names, numbered when they repeat)."""
    slugs, seen = [], set()
    for d in run_dirs:
        base = re.sub(r"[^A-Za-z0-9_.-]+", "-", d.resolve().name).strip("-") or "run"
        slug, i = base, 2
        while slug in seen:
            slug, i = f"{base}-{i}", i + 1
        seen.add(slug)
        slugs.append(slug)
    return slugs


def write_report(run_dirs: list[str | Path], out_dir: str | Path, title: str = "genzoo report") -> Path:
    """Write a static HTML gallery of run folders.

    Args:
        run_dirs: run folders written by `genzoo train` (and `genzoo evaluate`).
        out_dir: folder for index.html, training_curves PNGs and copies of the runs' images.
        title: page title.
    Returns:
        Path of the written index.html.
    Raises:
        FileNotFoundError: a run folder does not exist.
        ValueError: no run folders were given, or a run's JSON file is corrupt.
    """
    run_dirs = [Path(d) for d in run_dirs]
    if not run_dirs:
        raise ValueError("write_report needs at least one run folder, got none")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / "runs").exists():  # a fresh copy each time: no images of runs no longer listed
        shutil.rmtree(out_dir / "runs")
    runs = [RunFiles(d, slug, out_dir) for d, slug in zip(run_dirs, _slugs(run_dirs))]
    body = [f"<h1>{html.escape(title)}</h1>",
            f'<p class="meta">{len(runs)} run{"s" if len(runs) > 1 else ""}: '
            + ", ".join(f'<a href="#{r.slug}">{html.escape(r.slug)}</a>' for r in runs) + "</p>"]
    if len(runs) > 1:
        body.append(_leaderboard(runs))
    body.extend(_run_section(r, out_dir) for r in runs)
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
