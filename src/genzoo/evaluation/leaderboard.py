"""The one leaderboard schema: which metrics.json entries are compared, how they are shown, which way is better,
and which rows may be ranked against each other.

`genzoo bench` writes it as markdown and JSON, `genzoo report` as an HTML table; both take `table(rows)` made
here from each run's metrics.json, so the two never disagree on a column, a bold cell or a mark.

Two rules keep a bold cell meaningful:
- likelihoods of different data are different columns: an NLL on binarized digits (a probability of
  784 bits) and a density of dequantized 8-bit pixels (nats on [0, 1]^784, negative for a sharp density)
  measure different things and are never ranked against each other;
- a number measured with other settings than the rest of its column (fewer test images, fewer samples,
  another IWAE K) is marked with a footnote and not bolded against the others;
- a budgeted estimate (the settings a default `genzoo evaluate` chose to fit its time budget) is never ranked
  against a figure of the paper's protocol or of settings given by hand, whatever their settings: its row says
  so beside the model's name, and its numbers are marked where they are not ranked.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

# The data a likelihood was measured on, as `evaluate` records it in the entry's "likelihood_data".
BINARIZED, DEQUANTIZED = "binarized", "dequantized"


@dataclass(frozen=True)
class Column:
    key: str  # the row key (for likelihoods: the metrics.json entry and its data, e.g. nll_nats_binarized)
    label: str
    fmt: str  # a format spec, or "ms" for seconds shown as milliseconds
    better: Literal["low", "high"] | None = None  # None: not ranked (sizes, times)
    source: str = ""  # the metrics.json entry (default: key)
    data: str | None = None  # likelihood columns: only entries measured on this data
    settings: Literal["likelihood", "samples"] | None = None  # which evaluation settings must match to rank

    @property
    def entry(self) -> str:
        return self.source or self.key


COLUMNS = (
    Column("parameters", "parameters", "{:,.0f}"),
    Column("train_seconds", "train s", "{:.0f}"),
    Column("train_images_per_s", "train img/s", "{:,.0f}"),
    Column("sample_seconds_per_image", "sample ms/img", "ms"),
    Column("fid", "FID-style ↓", "{:.2f}", "low", settings="samples"),
    Column("precision", "precision ↑", "{:.3f}", "high", settings="samples"),
    Column("recall", "recall ↑", "{:.3f}", "high", settings="samples"),
    Column("conditional_accuracy", "cond. acc ↑", "{:.3f}", "high", settings="samples"),
    Column("confident_share", "confident ↑", "{:.3f}", "high", settings="samples"),
    Column("class_entropy_bits", "class entropy bits ↑", "{:.2f}", "high", settings="samples"),
    Column("nll_nats_binarized", "NLL nats, binarized ↓", "{:.2f}", "low", "nll_nats", BINARIZED, "likelihood"),
    Column("bits_per_dim_binarized", "bits/dim, binarized ↓", "{:.4f}", "low", "bits_per_dim", BINARIZED,
           "likelihood"),
    Column("elbo_nats", "ELBO nats, binarized ↑", "{:.2f}", "high", settings="likelihood"),
    Column("nll_nats_dequantized", "NLL nats, dequantized 8-bit ↓", "{:.2f}", "low", "nll_nats", DEQUANTIZED,
           "likelihood"),
    Column("bits_per_dim_dequantized", "bits/dim, dequantized 8-bit ↓", "{:.4f}", "low", "bits_per_dim",
           DEQUANTIZED, "likelihood"),
    Column("reconstruction_mse", "recon. MSE ↓", "{:.4f}", "low", settings="likelihood"),
    Column("edit_psnr", "edit PSNR dB ↑", "{:.2f}", "high"),  # an editor's edits against their exact outputs
)

BUDGETED = "budgeted"  # the settings key of a budgeted evaluation

NOTES = {
    BINARIZED: "NLL on the fixed binarized test set (Bernoulli pixels, a probability: >= 0)",
    DEQUANTIZED: "density of uniformly dequantized 8-bit test pixels on [0, 1]^784 (can be negative); "
                 "bits/dim of the 256-level image. Never ranked against the binarized column",
}


def value(entry: Any) -> Any:
    """A metrics.json entry's number: {"value": v, ...} -> v; a bare number as it is."""
    return entry.get("value") if isinstance(entry, dict) else entry


def likelihood_data(entry: Any) -> str | None:
    """The data a likelihood entry was measured on: its "likelihood_data", or read from its "data" note
    (metrics.json files written before that key)."""
    if not isinstance(entry, dict):
        return None
    if entry.get("likelihood_data"):
        return entry["likelihood_data"]
    return DEQUANTIZED if "dequantized" in str(entry.get("data", "")) else BINARIZED


def _number(entry: Any) -> float | None:
    number = value(entry)
    return number if isinstance(number, (int, float)) and not isinstance(number, bool) else None


def evaluation_protocol(metrics: dict) -> str:
    """How an evaluation chose its settings, as `evaluate` records it: "budget" (fitted to a time budget),
    "paper" (the paper's protocol) or "given" (by hand; also an evaluation written before it was recorded)."""
    return (metrics.get("settings") or {}).get("protocol") or "given"


def leaderboard_row(run_dir: Path, metrics: dict) -> dict[str, Any]:
    """One leaderboard row from a run's metrics.json (plain values, None where a metric does not apply),
    with the settings each kind of number was measured with ("settings_likelihood", "settings_samples"),
    a budgeted evaluation's among them, and the evaluation's "protocol" and "budget_seconds"."""
    row: dict[str, Any] = {"model": metrics.get("model"), "run": str(run_dir)}
    row["protocol"] = evaluation_protocol(metrics)
    row["budget_seconds"] = (metrics.get("settings") or {}).get("budget_seconds")
    budgeted = row["protocol"] == "budget"
    for column in COLUMNS:
        entry = metrics.get(column.entry)
        fits = column.data is None or likelihood_data(entry) == column.data
        row[column.key] = _number(entry) if fits else None
    nll = metrics.get("nll_nats")
    row["nll_kind"] = nll.get("kind") if isinstance(nll, dict) else None
    for key in ("hardware", "evaluator_version", "seed"):
        row[key] = metrics.get(key)
    fid = metrics.get("fid")
    row["n_samples"] = fid.get("n") if isinstance(fid, dict) else None
    row["settings_samples"] = {"samples": row["n_samples"], BUDGETED: budgeted} \
        if row["n_samples"] is not None else None
    scored = next((metrics[k] for k in ("nll_nats", "elbo_nats", "reconstruction_mse")
                   if isinstance(metrics.get(k), dict)), None)
    if scored is not None:
        settings = metrics.get("settings") or {}
        row["settings_likelihood"] = {"test images": scored.get("n"), "IWAE K": scored.get("k"),
                                      "random subset": bool(settings.get("random_subset")), BUDGETED: budgeted}
    else:
        row["settings_likelihood"] = None
    return row


def cell(number: Any, column: Column) -> str:
    """A value as the leaderboard shows it; a dash where the metric does not apply."""
    if number is None:
        return "–"
    if column.fmt == "ms":
        return f"{1000 * number:.3g}"
    return column.fmt.format(number)


def row_label(row: dict) -> str:
    """The model as a leaderboard names it: with its likelihood's kind, and how its evaluation chose its
    settings where that was not by hand, e.g. "vae (estimate), budgeted 300 s" or "gmm (exact), paper protocol"."""
    label = str(row.get("model")) + (f" ({row['nll_kind']})" if row.get("nll_kind") else "")
    if row.get("protocol") == "budget":
        seconds = row.get("budget_seconds")
        return label + (f", budgeted {seconds:g} s" if isinstance(seconds, (int, float)) else ", budgeted")
    return label + (", paper protocol" if row.get("protocol") == "paper" else "")


def _describe(settings: dict) -> str:
    return ", ".join("a time budget's settings" if k == BUDGETED else f"{k} {v}" for k, v in settings.items()
                     if v not in (None, False))


def _settings(row: dict, column: Column) -> dict:
    return row.get(f"settings_{column.settings}") or {}


def reference_settings(rows: list[dict], column: Column) -> dict | None:
    """The settings a column's ranked numbers share: the most common among rows with a value there (ties
    going to a full evaluation over a budgeted one, then to more test images or samples). An IWAE K is compared
    only between rows that have one: an exact likelihood has no K, and is ranked against an estimate made with
    the usual K."""
    if column.settings is None:
        return None
    found = [_settings(r, column) for r in rows if r[column.key] is not None]
    if not found:
        return None
    plain = Counter(tuple(sorted((k, v) for k, v in s.items() if k != "IWAE K")) for s in found)
    size = "test images" if column.settings == "likelihood" else "samples"
    # ties go to full evaluations over budgeted ones, then to more test images or samples
    reference = dict(max(plain, key=lambda s: (plain[s], not dict(s).get(BUDGETED), dict(s).get(size) or 0)))
    ks = Counter(s["IWAE K"] for s in found if s.get("IWAE K"))
    if ks:
        reference["IWAE K"] = max(ks, key=lambda k: (ks[k], k))
    return reference


def comparable(row: dict, column: Column, reference: dict | None) -> bool:
    """Whether a row's number in a column was measured with the column's reference settings."""
    if column.settings is None or reference is None:
        return True
    mine = _settings(row, column)
    same = all(mine.get(k) == v for k, v in reference.items() if k != "IWAE K")
    return same and (not mine.get("IWAE K") or mine["IWAE K"] == reference.get("IWAE K"))


def best(rows: list[dict], column: Column) -> float | None:
    """The best value of a ranked column over the rows measured with its reference settings; None when
    unranked or every such row ties."""
    reference = reference_settings(rows, column)
    numbers = [r[column.key] for r in rows if r[column.key] is not None and comparable(r, column, reference)]
    if column.better is None or len(set(numbers)) < 2:
        return None
    return min(numbers) if column.better == "low" else max(numbers)


@dataclass
class Cell:
    text: str
    best: bool = False  # bold: best among the column's comparable rows
    mark: str = ""  # a footnote mark: measured with other settings, not ranked against the column


def table(rows: list[dict], all_columns: bool = False) -> tuple[list[Column], list[list[Cell]], list[str]]:
    """The leaderboard as both renderers show it: the columns (those with a value, or all), one list of
    cells per row, and the footnotes (what the marks and the likelihood columns mean)."""
    columns = [c for c in COLUMNS if all_columns or any(row[c.key] is not None for row in rows)]
    marks: dict[str, str] = {}  # footnote text -> mark
    cells = []
    references = {c.key: reference_settings(rows, c) for c in columns}
    bests = {c.key: best(rows, c) for c in columns}
    for row in rows:
        line = []
        for c in columns:
            number = row[c.key]
            entry = Cell(cell(number, c))
            if number is not None and not comparable(row, c, references[c.key]):
                other = _describe(row.get(f"settings_{c.settings}") or {}) or "unknown settings"
                usual = _describe(references[c.key])
                note = f"measured with {other} (the column's ranked numbers: {usual}); not ranked against them"
                entry.mark = marks.setdefault(note, "*" * (len(marks) + 1))
            elif number is not None and number == bests[c.key]:
                entry.best = True
            line.append(entry)
        cells.append(line)
    notes = [f"{mark} {note}" for note, mark in marks.items()]
    if any(row.get("protocol") == "budget" for row in rows):
        notes.append("budgeted: settings a default `genzoo evaluate` chose to fit its time budget (fewer test "
                     "images, importance samples, AIS steps or samples; see each run's evaluation), with standard "
                     "errors. Never ranked against the paper's protocol (`genzoo evaluate --protocol paper`) or "
                     "settings given by hand")
    shown = {c.data for c in columns if c.data}
    notes += [f"{data}: {NOTES[data]}" for data in (BINARIZED, DEQUANTIZED) if data in shown]
    return columns, cells, notes
