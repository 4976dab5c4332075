"""The one leaderboard schema: which metrics.json entries are compared, how they are shown, which way is better.

`genzoo bench` writes it as markdown and JSON, `genzoo report` as an HTML table; both read the rows
made here from each run's metrics.json, so the two never disagree on a column.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True)
class Column:
    key: str  # the metrics.json entry
    label: str
    fmt: str  # a format spec, or "ms" for seconds shown as milliseconds
    better: Literal["low", "high"] | None = None  # None: not ranked (sizes, times)


COLUMNS = (
    Column("parameters", "parameters", "{:,.0f}"),
    Column("train_seconds", "train s", "{:.0f}"),
    Column("train_images_per_s", "train img/s", "{:,.0f}"),
    Column("sample_seconds_per_image", "sample ms/img", "ms"),
    Column("fid", "FID-style ↓", "{:.2f}", "low"),
    Column("precision", "precision ↑", "{:.3f}", "high"),
    Column("recall", "recall ↑", "{:.3f}", "high"),
    Column("conditional_accuracy", "cond. acc ↑", "{:.3f}", "high"),
    Column("confident_share", "confident ↑", "{:.3f}", "high"),
    Column("class_entropy_bits", "class entropy bits ↑", "{:.2f}", "high"),
    Column("nll_nats", "NLL nats ↓", "{:.2f}", "low"),
    Column("bits_per_dim", "bits/dim ↓", "{:.4f}", "low"),
    Column("elbo_nats", "ELBO nats ↑", "{:.2f}", "high"),
    Column("reconstruction_mse", "recon. MSE ↓", "{:.4f}", "low"),
)


def value(entry: Any) -> Any:
    """A metrics.json entry's number: {"value": v, ...} -> v; a bare number as it is."""
    return entry.get("value") if isinstance(entry, dict) else entry


def leaderboard_row(run_dir: Path, metrics: dict) -> dict[str, Any]:
    """One leaderboard row from a run's metrics.json (plain values, None where a metric does not apply)."""
    row: dict[str, Any] = {"model": metrics.get("model"), "run": str(run_dir)}
    for column in COLUMNS:
        number = value(metrics.get(column.key))
        row[column.key] = number if isinstance(number, (int, float)) and not isinstance(number, bool) else None
    nll = metrics.get("nll_nats")
    row["nll_kind"] = nll.get("kind") if isinstance(nll, dict) else None
    for key in ("hardware", "evaluator_version", "seed"):
        row[key] = metrics.get(key)
    fid = metrics.get("fid")
    row["n_samples"] = fid.get("n") if isinstance(fid, dict) else None
    return row


def cell(number: Any, column: Column) -> str:
    """A value as the leaderboard shows it; a dash where the metric does not apply."""
    if number is None:
        return "–"
    if column.fmt == "ms":
        return f"{1000 * number:.3g}"
    return column.fmt.format(number)


def best(rows: list[dict], column: Column) -> float | None:
    """The best value of a ranked column over the rows; None when unranked or every row ties."""
    numbers = [r[column.key] for r in rows if r[column.key] is not None]
    if column.better is None or len(set(numbers)) < 2:
        return None
    return min(numbers) if column.better == "low" else max(numbers)
