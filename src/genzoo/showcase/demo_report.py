"""The demo's report page: the taxonomy, the leaderboard with the real-data floor, one section per model.

It renders only what the runs and the demo wrote (config.json, metrics.json, metrics.jsonl, the pictures,
demo.json, real_data.json) plus text: each model's section from `genzoo.showcase.zoo.RECIPES`, its objective drawn
with matplotlib's mathtext into a PNG (no network, no script, no web font), and the source of the functions
that compute the objective, read from the installed package when the page is written. `genzoo report RUN...`
(genzoo.showcase.report) stays the plain gallery of any run folders.
"""

from __future__ import annotations

import html
import importlib
import inspect
import json
import math
import shutil
import textwrap
from pathlib import Path
from typing import Any

from .. import registry, runs
from ..evaluation.leaderboard import COLUMNS, best, cell, leaderboard_row, row_label
from .report import RunFiles, copy_image, draw_curves, epoch_key, fmt
from .shipped import FOLDER as SHIPPED_FOLDER
from .shipped import SUMMARY as SHIPPED_SUMMARY
from .zoo import LEAF_NOTES, RECIPES, TAXONOMY

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px; padding: 0 0.8em; color: #222;
       line-height: 1.45; }
h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
th { background: #f3f3f3; } td.name, th.name { text-align: left; }
td.best { font-weight: bold; background: #eef7ee; } tr.floor td { background: #f6f6ff; font-style: italic; }
figure { display: inline-block; margin: 0.4em; vertical-align: top; max-width: 100%; }
figcaption { font-size: 0.85em; color: #444; max-width: 460px; }
img { max-width: 100%; height: auto; } img.pix { image-rendering: pixelated; }
img.formula { display: block; margin: 0.4em 0; }
pre { background: #f7f7f7; border: 1px solid #ddd; padding: 0.6em; overflow-x: auto; font-size: 0.82em; }
.meta, .note { color: #555; font-size: 0.9em; } .note { background: #fff8e6; padding: 0.4em 0.6em; }
ul.tax li { margin: 0.15em 0; } .absent { color: #888; }
"""

# One line per leaderboard column: what it measures (the real-data floor is shown in its own row).
COLUMN_NOTES = {
    "parameters": "learned numbers (both networks of a GAN; the fitted statistics of a mixture)",
    "train_seconds": "training seconds in all, summed over every demo run that continued it",
    "train_images_per_s": "training throughput on this machine",
    "sample_seconds_per_image": "milliseconds to draw one sample (batches of 1,000)",
    "fid": "Fréchet distance of the evaluator's features of samples and of test digits; lower is closer to "
           "real digits (the floor row: real training digits)",
    "precision": "share of samples inside the real digits' feature manifold: are they realistic?",
    "recall": "share of real digits inside the samples' manifold: is the variety covered?",
    "conditional_accuracy": "share of a conditional model's samples that the evaluator reads as the digit asked for",
    "confident_share": "share of samples the evaluator classifies with probability >= 0.9: recognisable digits",
    "class_entropy_bits": "entropy of the digits the evaluator sees among the samples, in bits; "
                          "log2 10 = 3.32 when all ten are equally common (coverage)",
    "nll_nats_binarized": "negative log-likelihood of binarized test digits in nats (kind beside the model: exact, "
                          "bound, estimate)",
    "bits_per_dim_binarized": "the same NLL per pixel in bits",
    "nll_nats_dequantized": "negative log-density of dequantized 8-bit test digits in nats: a different quantity "
                            "from the binarized NLL, never ranked against it",
    "bits_per_dim_dequantized": "the same per pixel in bits",
    "elbo_nats": "evidence lower bound of the VAE, nats per test digit (higher is better)",
    "reconstruction_mse": "mean squared error per pixel of test digits rebuilt by an autoencoder",
    "edit_psnr": "an editor's edits of test digits against their exact outputs, in dB (18 dB: about 0.13 "
                 "root-mean-square error); its section shows doing nothing beside it",
}

# One-line readings of a model's metrics.json entries (prefix match for the per-noise PSNR).
READINGS = {
    "fid": "lower is better; compare with the real-data floor above",
    "precision": "high: samples look like real digits",
    "recall": "high: samples cover the variety of real digits",
    "confident_share": "samples the evaluator reads with >= 90% confidence: recognisable digits (read it with the "
                       "class entropy: a collapsed sampler can be confidently one digit, or confidently a blob)",
    "class_entropy_bits": "3.32 bits (log2 10) when every digit is equally common; lower: some digits missing",
    "class_coverage": "each digit's share among the samples, by the evaluator (0.1 each is even)",
    "conditional_accuracy": "samples drawn as the digit asked for",
    "nll_nats": "test digits' negative log-likelihood (lower is better), of the kind stated",
    "nll_nats_conditional": "NLL given the true label",
    "bits_per_dim": "NLL per pixel, in bits",
    "bits_per_dim_conditional": "NLL given the label, per pixel",
    "elbo_nats": "the bound the VAE maximises, per test digit",
    "iwae_gap_nats": "how much tighter the importance-weighted estimate is than the ELBO",
    "log_z": "the AIS estimate of the log partition function, with its spread over AIS runs",
    "reconstruction_mse": "how well the code keeps the digit",
    "psnr_noisy": "noisy digits' PSNR against the clean ones",
    "psnr_denoised": "denoised digits' PSNR: higher than the noisy one means the noise was removed",
    "edit_psnr_input": "doing nothing (the input as the edit) against the exact output: what an edit must beat",
    "edit_psnr": "edits against their exact outputs (higher is closer; compare with edit_psnr_input)",
    "edit_success": "edits within 18 dB of the exact output",
    "edit_label_agreement": "edits the evaluator reads as the same digit as the exact output: recognisable edits",
    "sample_seconds_per_image": "time to draw one sample",
    "train_seconds": "training seconds in all, over every session",
    "parameters": "learned numbers",
}
# A family "gets there" (recognisable digits, the measure) when at least this share of its samples are
# digits the evaluator reads with probability >= 0.9; real training digits score about 0.99.
RECOGNISABLE_SHARE = 0.5
COLLAPSED_BITS = 1.0  # class entropy under this (of log2 10 = 3.32 bits): the samples are nearly all one "digit"
SKIPPED_METRICS = {"model", "seed", "hardware", "seconds", "data", "evaluator_version", "sample_quality_seconds",
                   "train_images_per_s"}


def _esc(value: Any) -> str:
    return html.escape(value if isinstance(value, str) else fmt(value))


def render_formula(lines: tuple[str, ...], folder: Path, name: str) -> Path:
    """Draw mathtext lines into folder/NAME-HASH.png with matplotlib (offline: glyphs from its own fonts);
    kept when it exists (the hash is of the text), as the page is rewritten after every model."""
    import hashlib

    from matplotlib.figure import Figure

    digest = hashlib.sha256(("cm-110-14\n" + "\n".join(lines)).encode()).hexdigest()[:10]  # style and text
    path = folder / f"{name}-{digest}.png"
    if path.exists():
        return path

    import matplotlib

    with matplotlib.rc_context({"mathtext.fontset": "cm"}):
        fig = Figure(figsize=(9, 0.6 * len(lines) + 0.1), dpi=110)
        for i, line in enumerate(lines):
            fig.text(0.01, 1 - (i + 0.75) / len(lines), line, fontsize=14)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, bbox_inches="tight", pad_inches=0.08, facecolor="white")
    return path


def objective_source(spec: str) -> str:
    """The installed source of "module:Qualified.name", dedented: what the page shows as the objective's code."""
    module_name, _, qualname = spec.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return textwrap.dedent(inspect.getsource(obj))


def _taxonomy(node: Any, present: set[str]) -> str:
    if isinstance(node, str):
        note = html.escape(LEAF_NOTES.get(node, ""))
        if node in present:
            return f'<li><a href="#{node}"><code>{node}</code></a>: {note}</li>'
        why = "not yet in the zoo" if node not in registry.MODELS else "not run in this demo"
        return f'<li class="absent"><code>{node}</code>: {note} ({why})</li>'
    heading, children = node
    return (f"<li>{html.escape(heading)}<ul>" + "".join(_taxonomy(c, present) for c in children) + "</ul></li>")


def _leaderboard(models: list[str], metrics: dict[str, dict], floor: dict) -> str:
    rows = {m: leaderboard_row(Path(m), metrics[m]) for m in models if metrics.get(m)}
    columns = [c for c in COLUMNS if any(r[c.key] is not None for r in rows.values())]
    if not rows:
        return "<p>No model has been evaluated yet.</p>"
    bests = {c.key: best(list(rows.values()), c) for c in columns}
    head = "".join(f"<th>{html.escape(c.label)}</th>" for c in columns)
    floor_cells = "".join(f"<td>{html.escape(cell(floor.get(c.key), c))}</td>" for c in columns)
    lines = [f'<tr class="floor"><td class="name">real training digits (floor)</td>{floor_cells}</tr>']
    for name, row in rows.items():
        cells = "".join(
            f'<td{" class=best" if row[c.key] is not None and row[c.key] == bests[c.key] else ""}>'
            f"{html.escape(cell(row[c.key], c))}</td>" for c in columns)
        label = html.escape(row_label(row)[len(str(row["model"])):])  # the kind and the protocol after the link
        lines.append(f'<tr><td class="name"><a href="#{name}">{name}</a>{label}</td>{cells}</tr>')
    notes = "".join(f"<li><b>{html.escape(c.label)}</b>: {html.escape(COLUMN_NOTES.get(c.key, ''))}</li>"
                    for c in columns)
    return (f'<div class="scroll"><table id="leaderboard"><tr><th class="name">model</th>{head}</tr>'
            + "".join(lines) + "</table></div>"
            f'<p class="meta">Bold: best in its column. Floor: {html.escape(floor.get("what", ""))}. '
            "Sample counts differ between models (slow samplers draw fewer; see each section), and FID-style "
            "scores grow as the count shrinks.</p><ul>" + notes + "</ul>")


def _metric_rows(metrics: dict) -> str:
    rows = []
    for key, entry in metrics.items():
        if key in SKIPPED_METRICS:
            continue
        value = entry.get("value") if isinstance(entry, dict) else entry
        if isinstance(value, list):
            shown = "[" + ", ".join(f"{v:.2f}" for v in value) + "]"
        else:
            shown = fmt(value)
            if isinstance(entry, dict) and isinstance(entry.get("se"), (int, float)):
                shown += f" ± {entry['se']:.2g}"
        reading = READINGS.get(key) or next((r for k, r in READINGS.items() if key.startswith(k)), "")
        details = ", ".join(f"{k}={fmt(v)}" for k, v in entry.items() if k not in ("value", "se")) \
            if isinstance(entry, dict) else ""
        rows.append(f'<tr><td class="name">{html.escape(key)}</td><td>{html.escape(shown)}</td>'
                    f'<td class="name">{html.escape(reading)}</td>'
                    f'<td class="name meta">{html.escape(details)}</td></tr>')
    return ('<div class="scroll"><table class="metrics"><tr><th class="name">metric</th><th>value</th>'
            '<th class="name">reading</th><th class="name">settings</th></tr>' + "".join(rows) + "</table></div>")


def _fresh_curves(run: RunFiles, report_dir: Path) -> str | None:
    """The run's training curves, drawn again only when its metrics.jsonl is newer than the drawing."""
    drawn = report_dir / "runs" / run.slug / "training_curves.png"
    log = run.dir / runs.METRICS_LOG
    if drawn.exists() and log.exists() and drawn.stat().st_mtime >= log.stat().st_mtime:
        return drawn.relative_to(report_dir).as_posix()
    return draw_curves(run, report_dir)


def _figure(url: str, caption: str, pixelated: bool = True) -> str:
    cls = ' class="pix"' if pixelated else ""
    return (f'<figure><img{cls} src="{html.escape(url)}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _history(sessions: list[dict]) -> str:
    """One row per demo run of a model: training seconds in all and the sample scores after it (an editor's edit
    scores too), so that a continued run shows what the extra time bought."""
    rows = _scored_runs(sessions)
    if len(rows) < 2:
        return ""
    edits = any(s.get("edit_psnr") is not None for s in rows)
    cells = []
    for i, s in enumerate(rows, 1):
        acc = s.get("conditional_accuracy")
        edit_cells = (f"<td>{fmt(s.get('edit_psnr'))}</td><td>{fmt(s.get('edit_psnr_input'))}</td>"
                      f"<td>{fmt(s.get('edit_label_agreement'))}</td>") if edits else ""
        cells.append(f'<tr><td class="name">{i} ({html.escape(s["date"])})</td>'
                     f"<td>{fmt(s.get('train_seconds_in_all'))}</td>{edit_cells}<td>{fmt(s.get('n_samples'))}</td>"
                     f"<td>{s['confident_share']:.3f}</td><td>{s['class_entropy_bits']:.2f}</td>"
                     f"<td>{fmt(s.get('fid'))}</td><td>{'-' if acc is None else f'{acc:.3f}'}</td></tr>")
    edit_heads = ("<th>edit PSNR (dB)</th><th>doing nothing (dB)</th><th>edits read as the exact output's digit</th>"
                  if edits else "")
    return ('<div class="scroll"><table class="history"><tr><th class="name">demo run</th><th>training s in all</th>'
            f"{edit_heads}<th>samples</th><th>confident &gt;= 0.9</th><th>class entropy (bits)</th><th>FID-style</th>"
            "<th>conditional accuracy</th></tr>" + "".join(cells) + "</table></div>"
            '<p class="meta">Each demo run in this folder continued the model: its scores after each run.</p>')


def _scored_runs(sessions: list[dict]) -> list[dict]:
    """The demo runs of a model that trained it and scored its samples (not a closed-form fit kept as it was)."""
    return [s for s in sessions if s.get("confident_share") is not None and not s["what"].startswith("already")]


def not_there_note(name: str, out: Path, metrics: dict, sessions: list[dict], floor: dict) -> str:
    """The note of a family whose samples are not yet recognisable digits by the evaluator, from its measured
    scores: a confident share under RECOGNISABLE_SHARE, or samples that collapse onto one class (class entropy
    under COLLAPSED_BITS: a shape the evaluator is sure about is not digits). It says what the samples reached,
    how each demo run moved them, the command that continues the model and its full recipe. Empty when the
    family got there, or when it draws no samples."""
    if isinstance(metrics.get("edit_label_agreement"), dict):  # an editor: its outputs are edits, not samples
        return _edits_not_there_note(name, out, metrics, sessions)
    entry = metrics.get("confident_share")
    if not isinstance(entry, dict) or entry.get("value") is None:
        return ""
    share = entry["value"]
    bits = (metrics.get("class_entropy_bits") or {}).get("value")
    collapsed = isinstance(bits, (int, float)) and bits < COLLAPSED_BITS
    if share >= RECOGNISABLE_SHARE and not collapsed:
        return ""
    real = floor.get("confident_share")
    runs_so_far = _scored_runs(sessions)
    moved = _moved(runs_so_far)
    trained = metrics.get("train_seconds")
    after = f" after {trained:.0f} s of training" if isinstance(trained, (int, float)) else ""
    reached = (f"{share:.1%} of its {entry.get('n', '')} samples are digits the evaluator reads with confidence "
               f"&gt;= 0.9{after}{f' (real digits: {real:.0%})' if isinstance(real, (int, float)) else ''}")
    if collapsed:
        reached += (f", but they fall into almost one class ({bits:.2f} bits, against log2 10 = 3.32 for ten digits "
                    "equally common): a shape the evaluator is sure about, not yet digits")
    return (f'<p class="note not-there"><b>Not recognisable digits yet</b>: {reached}; this page counts a family '
            f"there at {RECOGNISABLE_SHARE:.0%} confident and {COLLAPSED_BITS:g} bit or more.{moved} "
            + _continue_it(name, out))


def _moved(runs_so_far: list[dict]) -> str:
    """How the demo runs moved the confident share (and the FID-style score), and whether the last move is more
    than the sampling noise of two shares of that many samples (two standard errors of their difference)."""
    if len(runs_so_far) < 2:
        return ""
    shares = " → ".join(f"{s['confident_share']:.1%}" for s in runs_so_far)
    said = f" Over the demo runs in this folder it went {shares}"
    fids = [s.get("fid") for s in runs_so_far]
    if all(isinstance(f, (int, float)) for f in fids):
        said += " (FID-style " + " → ".join(f"{f:.0f}" for f in fids) + ")"
    before, last = runs_so_far[-2], runs_so_far[-1]
    if before.get("n_samples") and last.get("n_samples"):
        var = sum(r["confident_share"] * (1 - r["confident_share"]) / r["n_samples"] for r in (before, last))
        change, noise = last["confident_share"] - before["confident_share"], 2 * math.sqrt(var)
        said += (f"; the last change, {100 * change:+.1f} points, is {'within' if abs(change) <= noise else 'beyond'} "
                 f"the sampling noise of {before['n_samples']} and {last['n_samples']} samples "
                 f"(±{100 * noise:.1f} points, two standard errors)")
    return said + "."


def _continue_it(name: str, out: Path) -> str:
    return (f"Its pictures below show what it has. Each run of <code>{html.escape(f'genzoo demo --out {out}')}</code> "
            f"(add <code>--models {name}</code> for this model alone) continues it with another slice; the full "
            f"recipe: <code>{html.escape(RECIPES[name].full_recipe)}</code></p>")


def _edits_not_there_note(name: str, out: Path, metrics: dict, sessions: list[dict]) -> str:
    """An editor's note: its outputs are edits of test digits, recognisable when the evaluator reads in at least
    RECOGNISABLE_SHARE of them the digit of the exact output. Empty when it got there."""
    agreement, psnr = metrics["edit_label_agreement"], (metrics.get("edit_psnr") or {}).get("value")
    if agreement["value"] >= RECOGNISABLE_SHARE:
        return ""
    nothing = (metrics.get("edit_psnr_input") or {}).get("value")
    scored = [s for s in _scored_runs(sessions) if s.get("edit_label_agreement") is not None]
    moved = ""
    if len(scored) > 1:
        moved = (" Over the demo runs in this folder it went " + " → ".join(
            f"{s['edit_label_agreement']:.1%} ({fmt(s.get('edit_psnr'))} dB)" for s in scored) + ".")
    return (f'<p class="note not-there"><b>Not recognisable edits yet</b>: the evaluator reads the exact output\'s '
            f"digit in {agreement['value']:.1%} of its {agreement.get('n', '')} edits of test digits (edit PSNR "
            f"{fmt(psnr)} dB against the exact outputs; doing nothing: {fmt(nothing)} dB); this page counts an "
            f"editor there at {RECOGNISABLE_SHARE:.0%}.{moved} " + _continue_it(name, out))


def heading(name: str, docstring: str | None) -> str:
    """A section's heading, as HTML, from the first line of the model class's docstring: the name written once
    (a docstring that opens with "`name`: " does not repeat it) and `code` spans as <code>."""
    line = (docstring or "").strip().split("\n")[0].removeprefix(f"`{name}`:").strip()
    parts = line.split("`")  # odd-numbered parts were between backticks
    text = "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts))
    return f"{name}: {text}" if text else name


def _section(name: str, out: Path, report_dir: Path, sessions: list[dict], floor: dict | None = None,
             phases: str = "both") -> str:
    recipe = RECIPES[name]
    cls = registry.get(name)
    parts = [f'<h2 id="{name}">{heading(name, cls.__doc__)}</h2>', f"<p>{html.escape(recipe.about)}</p>"]
    formula = render_formula(recipe.objective, report_dir / "formulas", name)
    parts.append(f'<h3>Objective</h3><img class="formula" src="formulas/{formula.name}" '
                 f'alt="objective of {name}: {html.escape(" ; ".join(recipe.objective))}">')
    for spec in recipe.code:
        source = html.escape(objective_source(spec))
        parts.append(f'<p class="meta">genzoo\'s code, <code>{html.escape(spec)}</code> (as installed):</p>'
                     f'<pre class="snippet" data-source="{html.escape(spec)}">{source}</pre>')
    parts.append(f'<p class="meta">Paper: {html.escape(recipe.paper)}</p>')
    run_dir = out / name
    if not (run_dir / runs.CONFIG).exists():
        if phases == "shipped":
            again = html.escape(f"genzoo demo --out {out} --models {name} --from-scratch-only")
            parts.append('<p class="note">Not trained from scratch: this demo drew the shipped models only '
                         f"(--shipped-only); <code>{again}</code> trains it.</p>")
        else:
            parts.append('<p class="note">Not trained yet: the demo is still running, or this model was left out '
                         "(--models).</p>")
        return "\n".join(parts)
    run = RunFiles(run_dir, name, report_dir)
    metrics = run.metrics or {}
    total = metrics.get("train_seconds")
    trained = f"{total:.0f} s of training in all" if isinstance(total, (int, float)) else "trained"
    parts.append(f'<p class="meta">{trained}, over {len(sessions)} demo run{"s" if len(sessions) != 1 else ""}'
                 f' ({html.escape(", ".join(s["what"] for s in sessions))}). '
                 f'Data: {html.escape(str(run.config.get("data")))}; '
                 f'model settings: {html.escape(json.dumps(run.config.get("hparams", {})))}</p>')
    history = _history(sessions)
    if history:
        parts.append(history)
    not_there = not_there_note(name, out, metrics, sessions, floor or {})
    if not_there:
        parts.append(not_there)
    if recipe.cpu_note and sessions and sessions[-1].get("scale") == "cpu":
        parts.append(f'<p class="note">{html.escape(recipe.cpu_note)}</p>')
    parts.append("<h3>Pictures</h3>" + _pictures(run, recipe.captions, report_dir))
    if metrics:
        coverage = metrics.get("class_entropy_bits")
        if coverage and "conditional_accuracy" not in metrics:  # unconditional: which digits it draws is its own
            bits = coverage["value"]
            parts.append(f'<p class="coverage">Coverage: the evaluator\'s digits among {coverage["n"]} samples have '
                         f"an entropy of {bits:.2f} bits, against log2 10 = {math.log2(10):.2f} bits for all ten "
                         f"digits equally common ({2 ** bits:.1f} digits' worth).</p>")
        parts.append("<h3>Metrics</h3>" + _metric_rows(metrics))
    if not not_there:
        parts.append(f'<p class="meta">Full recipe: <code>{html.escape(recipe.full_recipe)}</code></p>')
    return "\n".join(parts)


def _pictures(run: RunFiles, captions: dict[str, str], report_dir: Path) -> str:
    """A run's figures in its section: the latest sample grid, the pictures its recipe captions, its curves."""
    figures = []
    if run.grids:
        latest = run.grids[-1]
        figures.append(_figure(copy_image(run, latest, report_dir),
                               f"samples at epoch {epoch_key(latest)[0]} (the latest grid, seed fixed): do they "
                               "look like digits, and like different ones?"))
    for file, caption in captions.items():
        if (run.dir / file).exists():
            figures.append(_figure(copy_image(run, run.dir / file, report_dir), caption))
    curves = _fresh_curves(run, report_dir)
    if curves:
        figures.append(_figure(curves, "training curves from metrics.jsonl (test pass as dots)", pixelated=False))
    return "".join(figures)


def _shipped_copy(out: Path, report_dir: Path, relative: str) -> str:
    """Copy a picture of the shipped phase (OUT/shipped/...) next to the page; return its relative URL."""
    dest = report_dir / SHIPPED_FOLDER / relative
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out / SHIPPED_FOLDER / relative, dest)
    return (Path(SHIPPED_FOLDER) / relative).as_posix()


def _shipped_block(name: str, entry: dict, out: Path, report_dir: Path, sessions: list[dict]) -> str:
    """A family's shipped model beside what this demo trained: "trained now, N minutes" | "shipped, M CPU-hours",
    its pictures and its figures on the full test set, each with the count and reference set it rests on."""
    trained = sum(s.get("train_wall_seconds") or 0 for s in sessions) / 60
    now = f"trained now, {trained:.1f} minutes (above)" if sessions else "not trained from scratch in this demo"
    parts = [f'<h3 id="shipped-{name}">Shipped: {name}</h3>',
             f'<p class="meta">{html.escape(now)} | shipped, {entry["cpu_hours"]:.2f} CPU-hours '
             f'(<code>{html.escape(entry["command"])}</code>), loaded as <code>pretrained:{html.escape(name)}</code>'
             "</p>"]
    captions = {"samples.png": "samples (conditional models: the digits 0-9 in turn)",
                "progress.gif": "its samples at the end of every training epoch, in turn: what training bought",
                **RECIPES[entry["model"]].captions}
    parts += [_figure(_shipped_copy(out, report_dir, f"{name}/{picture}"), captions.get(picture, picture))
              for picture in entry["pictures"]]
    if entry.get("pictures_left_out"):
        parts.append('<p class="note">Its other pictures were left out: the shipped phase had used its time.</p>')
    rows = "".join(f'<tr><td class="name">{html.escape(f["label"])}</td><td>{html.escape(f["value"])}</td>'
                   f'<td class="name">{html.escape(f["rests_on"])}</td></tr>' for f in entry["figures"])
    if rows:
        parts.append('<div class="scroll"><table><tr><th class="name">figure</th><th>value</th>'
                     f'<th class="name">rests on</th></tr>{rows}</table></div>')
    return "\n".join(parts)


def _shipped_table(shipped: dict) -> str:
    """The shipped models' figures side by side, one row each, linked to their sections (which say what each
    figure rests on); no figure is bolded: the models were scored on different quantities and sample counts."""
    labels = list(dict.fromkeys(f["label"] for entry in shipped["models"].values() for f in entry["figures"]))
    head = "".join(f"<th>{html.escape(label)}</th>" for label in labels)
    rows = []
    for name, entry in shipped["models"].items():
        values = {f["label"]: f["value"] for f in entry["figures"]}
        cells = "".join(f"<td>{html.escape(values.get(label, '–'))}</td>" for label in labels)
        rows.append(f'<tr><td class="name"><a href="#shipped-{html.escape(name)}">{html.escape(name)}</a></td>'
                    f"<td>{entry['cpu_hours']:.2f}</td>{cells}</tr>")
    return (f'<div class="scroll"><table id="shipped-figures"><tr><th class="name">shipped model</th>'
            f"<th>CPU-hours</th>{head}</tr>" + "".join(rows) + "</table></div>"
            '<p class="meta">Each model\'s section gives every figure with the samples and test digits it rests '
            "on.</p>")


def write_demo_report(out: str | Path, models: list[str], floor: dict, title: str = "genzoo demo: the whole zoo",
                      phases: str = "both") -> Path:
    """Write out/report/index.html for the demo's models (run folders out/MODEL); returns its path.

    phases: the demo's (`run_demo`); with "shipped" nothing is trained from scratch, and the page says so
    where it would show what training did."""
    out = Path(out)
    report_dir = out / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    sessions_path = out / "demo.json"
    sessions = json.loads(sessions_path.read_text()) if sessions_path.exists() else {}
    metrics = {}
    for name in models:
        path = out / name / runs.METRICS
        metrics[name] = json.loads(path.read_text()) if path.exists() else None
    done = [m for m in models if metrics[m]]
    shipped_path = out / SHIPPED_FOLDER / SHIPPED_SUMMARY
    shipped = json.loads(shipped_path.read_text()) if shipped_path.exists() else {"models": {}, "zoo": None}
    body = [f"<h1>{html.escape(title)}</h1>"]
    if shipped["zoo"]:  # the first screen: the trained zoo, one row of samples per family
        body.append(f'<figure><img src="{_shipped_copy(out, report_dir, shipped["zoo"])}" alt="samples of every '
                    f'shipped model, one row per family"><figcaption>The trained zoo that ships with genzoo: '
                    f'{len(shipped["models"])} models, one row of samples each (conditional ones: 0-9); each '
                    "family's section shows its shipped model under \"Shipped\".</figcaption></figure>")
    trained = (f"{len(done)} of {len(models)} models trained and evaluated. " if phases != "shipped" else
               "Nothing trained from scratch in this demo (--shipped-only). ")
    # the shipped models were trained and scored on their own data, which need not be the demo's
    shipped_data = sorted({entry["data"] for entry in shipped["models"].values() if entry.get("data")})
    data = (f"Shipped models: trained and scored on {'; '.join(shipped_data)}. " if shipped_data else "") + (
        "Runs trained here" if phases != "shipped" else "Pictures drawn here from test digits")
    body += [
            f'<p class="meta">{trained}'
            f"{html.escape(data)}: {html.escape(floor.get('data', ''))}. Every number comes from the runs' "
            f"metrics.json (evaluator {html.escape(str(floor.get('evaluator_version')))}); every picture from the run "
            "folders.</p>",
            "<h2>The taxonomy of generative models</h2>",
            '<p>After Goodfellow\'s NIPS 2016 tutorial (figure 9). Each leaf links to its model\'s section.</p>',
            f'<ul class="tax">{_taxonomy(TAXONOMY, set(models))}</ul>',
            "<h2>Leaderboard</h2>"]
    if shipped["models"] and not done:  # nothing trained here (yet): the shipped models' figures stand in
        body.append(_shipped_table(shipped))
    else:
        body.append(_leaderboard(models, metrics, floor))
    behind = [m for m in done if not_there_note(m, out, metrics[m], sessions.get(m, []), floor)]
    if behind:
        body.append(f'<p class="note">Not recognisable digits yet (under {RECOGNISABLE_SHARE:.0%} of samples read '
                    f"with confidence &gt;= 0.9, or under {COLLAPSED_BITS:g} bit of classes among them): "
                    + ", ".join(f'<a href="#{m}">{m}</a>' for m in behind) + ". Their sections say what they "
                    "reached and what to run; running the demo again in this folder continues every model.</p>")
    for name in models:
        body.append(_section(name, out, report_dir, sessions.get(name, []), floor, phases))
        body += [_shipped_block(shipped_name, entry, out, report_dir, sessions.get(name, []))
                 for shipped_name, entry in shipped["models"].items() if entry["model"] == name]
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
    index = report_dir / "index.html"
    runs.atomic_write_text(index, page)
    return index
