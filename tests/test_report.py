"""The HTML report: what run folders wrote ends up on the page, and a real browser loads every image."""

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

from genzoo.images import save_gif, save_grid, save_rows
from genzoo.showcase.report import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def make_run(root: Path, name: str, model: str, fid: float | None, epochs: int = 3, extra: bool = True) -> Path:
    """A run folder as the trainer and `genzoo evaluate` write it, with synthetic contents."""
    run = root / name
    gen = torch.Generator().manual_seed(len(name))
    grids = []
    for epoch in range(1, epochs + 1):
        grids.append(save_grid(torch.rand(16, 1, 28, 28, generator=gen), run / "samples" / f"epoch_{epoch:03d}.png"))
    save_gif(grids, run / "samples" / "progress.gif")
    if extra:
        x = torch.rand(8, 1, 28, 28, generator=gen)
        save_rows([x, x.flip(-1)], run / "reconstructions.png")
    config = {"model": model, "hparams": {"latent_dim": 16}, "train": {"epochs": epochs, "batch_size": 64, "lr": 1e-3},
              "data": "embedded", "seed": 0, "genzoo_version": "0.1.0"}
    (run / "config.json").write_text(json.dumps(config))
    lines = [{"step": 10 * i, "epoch": i // 5, "loss": 1.0 / (i + 1), "kl": 0.1 * i, "lr": 1e-3} for i in range(20)]
    lines.append({"epoch": 3, "warning": "a string entry is not a curve"})
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    if fid is not None:
        metrics = {"model": model, "parameters": 12345, "fid": fid, "precision": 0.7, "recall": 0.5,
                   "class_coverage": [0.1] * 10, "n_samples": 1000, "evaluator_version": "v1", "seed": 0}
        (run / "metrics.json").write_text(json.dumps(metrics))
    return run


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.tables, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.imgs.append(attrs["src"])
        if tag == "table":
            self.tables.append(attrs.get("id"))

    def handle_data(self, data):
        self.text.append(data)


def parse(index: Path) -> _Collect:
    page = _Collect()
    page.feed(index.read_text())
    return page


def test_report_renders_what_runs_wrote(tmp_path):
    a = make_run(tmp_path, "vae-run", "vae", fid=12.5)
    b = make_run(tmp_path, "ae-run", "ae", fid=30.0, epochs=2, extra=False)
    c = make_run(tmp_path / "other", "vae-run", "vae", fid=None, epochs=1)  # same folder name, no metrics.json
    index = write_report([a, b, c], tmp_path / "report")
    page = parse(index)
    text = " ".join(page.text)
    assert "leaderboard" in page.tables and "metrics-vae-run" in page.tables
    # The two runs named vae-run get distinct slugs; every image is a local file next to the page.
    assert "vae-run-2" in text
    for src in page.imgs:
        assert not re.match(r"^[a-z]+://", src), src
        assert (index.parent / src).stat().st_size > 0, src
    # Latest grid and progress GIF of each run, the earlier grids, the extra image, one curve plot per run with a log.
    assert "runs/vae-run/samples/epoch_003.png" in page.imgs
    assert "runs/vae-run/samples/epoch_001.png" in page.imgs
    assert "runs/ae-run/samples/progress.gif" in page.imgs
    assert "runs/vae-run/reconstructions.png" in page.imgs
    assert "runs/ae-run/reconstructions.png" not in page.imgs
    assert sum(src.endswith("training_curves.png") for src in page.imgs) == 3
    assert len(page.imgs) == (3 + 1 + 1 + 1) + (2 + 1 + 1) + (1 + 1 + 1 + 1)
    # Leaderboard: the lower FID is marked best; the run without metrics shows a dash.
    board = index.read_text().split('id="leaderboard"')[1].split("</table>")[0]
    assert '<td class="best">12.50</td>' in board and "<td>30.00</td>" in board and "<td>–</td>" in board
    # A report written inside a run folder, twice, does not show its own copies.
    inner = write_report([b], b / "report")
    assert len(parse(write_report([b], b / "report")).imgs) == len(parse(inner).imgs) == 2 + 1 + 1
    # Metrics and config values of the run are on the page.
    assert "evaluator_version" in text and "latent_dim" in text and "embedded" in text


def test_curves_plot_numeric_keys_only(tmp_path):
    from genzoo.showcase import report

    run = make_run(tmp_path, "r", "vae", fid=None)
    r = report.RunFiles(run, "r", tmp_path / "report")
    rel = report.draw_curves(r, tmp_path)
    from PIL import Image

    width, height = Image.open(tmp_path / rel).size
    assert width > height > 100  # loss, kl and lr: three panels in one row; no panel for "warning" or "epoch"


def test_report_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope: no such run folder"):
        write_report([tmp_path / "nope"], tmp_path / "out")
    with pytest.raises(ValueError, match=r"at least one run folder, got none"):
        write_report([], tmp_path / "out")
    run = make_run(tmp_path, "broken", "vae", fid=1.0)
    (run / "metrics.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"metrics.json: not valid JSON"):
        write_report([run], tmp_path / "out")


CHECK_SCRIPT = """
<script>
window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const broken = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute("src"));
  const out = document.createElement("pre");
  out.id = "check";
  out.textContent = JSON.stringify({images: imgs.length, broken: broken,
                                    table: !!document.getElementById("leaderboard"),
                                    formulas: imgs.filter(i => i.classList.contains("formula")
                                                               && i.naturalWidth > 0).length});
  document.body.appendChild(out);
});
</script>
"""


def chromium_check(index: Path, tmp_path: Path) -> tuple[dict, Callable[[Path, str], None]]:
    """Load a copy of the page with CHECK_SCRIPT in headless Chromium; returns the check's result and a
    function that screenshots the page itself at a window size ("W,H")."""
    check = index.with_name("check.html")
    check.write_text(index.read_text().replace("</body>", CHECK_SCRIPT + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--allow-file-access-from-files",
             f"--user-data-dir={tmp_path / 'profile'}"]
    env = {**os.environ, "HOME": str(tmp_path)}
    dom = subprocess.run([CHROMIUM, *flags, "--virtual-time-budget=10000", "--dump-dom", check.as_uri()],
                         capture_output=True, text=True, timeout=120, env=env)
    match = re.search(r'<pre id="check">(.*?)</pre>', dom.stdout)
    assert match, f"no check result in the DOM; chromium said: {dom.stderr[-2000:]}"

    def screenshot(path: Path, size: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([CHROMIUM, *flags, f"--window-size={size}", "--hide-scrollbars", f"--screenshot={path}",
                        index.as_uri()], capture_output=True, text=True, timeout=120, env=env)
        assert path.exists() and path.stat().st_size > 10_000, f"chromium wrote no screenshot {path.name}"

    return json.loads(match.group(1).replace("&quot;", '"')), screenshot


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (Debian: apt-get install chromium); "
                                             ".ci/run installs it so this test runs in CI")
def test_report_in_headless_chromium(tmp_path):
    a = make_run(tmp_path, "vae-run", "vae", fid=12.5)
    b = make_run(tmp_path, "ae-run", "ae", fid=30.0)
    index = write_report([a, b], tmp_path / "report")
    result, screenshot = chromium_check(index, tmp_path)
    assert result["table"] is True
    assert result["images"] == len(parse(index).imgs) >= 10
    assert result["broken"] == []
    screenshot(Path(os.environ.get("GENZOO_SCREENSHOT_DIR", tmp_path)) / "report-screenshot.png", "1200,2400")


def test_leaderboard_rows_and_markdown():
    from genzoo.evaluation.leaderboard import leaderboard_row
    from genzoo.showcase.bench import leaderboard_markdown

    good = {"model": "vae", "parameters": 1000, "fid": {"value": 3.0, "n": 500}, "precision": {"value": 0.8},
            "recall": {"value": 0.6}, "nll_nats": {"value": 90.0, "kind": "estimate"}, "bits_per_dim": {"value": 0.17},
            "sample_seconds_per_image": {"value": 2e-5}, "hardware": "CPU", "evaluator_version": "v1", "seed": 0}
    poor = {"model": "gan", "parameters": 5000, "fid": {"value": 40.0, "n": 500}, "precision": {"value": 0.3},
            "recall": {"value": 0.1}, "hardware": "CPU", "evaluator_version": "v1", "seed": 0}
    none = {"model": "ae", "parameters": 700, "hardware": "CPU", "evaluator_version": "v1", "seed": 0}
    rows = [leaderboard_row(Path(m["model"]), m) for m in (poor, none, good)]
    assert rows[2]["fid"] == 3.0 and rows[2]["nll_kind"] == "estimate" and rows[2]["n_samples"] == 500
    assert rows[0]["nll_nats_binarized"] is None and rows[1]["fid"] is None
    meta = {"data": "embedded", "seed": 0, "budget": "10 s per model", "n_samples": 500, "evaluator_version": "v1",
            "hardware": "CPU", "date": "2026-11-22"}
    table = [line for line in leaderboard_markdown(rows, meta).splitlines() if line.startswith("| ")]
    # Header, then best FID first, models without a sample score last; dashes where a metric does not apply.
    assert [line.split("|")[1].strip() for line in table] == ["model", "vae (estimate)", "gan", "ae"]
    # no cond. acc, confident, entropy; the NLL (no data note: binarized) in the binarized columns, alone: not bold
    assert "| **3.00** | **0.800** | **0.600** | – | – | – | 90.00 | 0.1700 | – | – | – | – |" in table[1]
    assert "| 0.02 |" in table[1]  # 2e-5 s = 0.02 ms
    assert table[3].count("–") == 16  # the dashes of 15 columns before the editors' edit PSNR, and its own


def test_likelihoods_of_different_data_and_settings_are_never_ranked_together():
    """The issue's case: a GMM's dequantized density (-538.8 nats) beside Bernoulli NLLs must not be bolded
    as the best NLL; a row scored on 100 test images is marked and not bolded against rows scored on 10,000."""
    from genzoo.evaluation.leaderboard import leaderboard_row, table
    from genzoo.showcase.bench import leaderboard_markdown

    def nll(v, data, n=10_000):
        return {"value": v, "n": n, "kind": "exact", "likelihood_data": data}

    gmm = {"model": "gmm", "nll_nats": nll(-538.8, "dequantized"), "bits_per_dim": nll(0.35, "dequantized")}
    vae = {"model": "vae", "nll_nats": {**nll(89.0, "binarized"), "k": 5000},
           "bits_per_dim": nll(0.16, "binarized")}
    pcnn = {"model": "pixelcnn", "nll_nats": nll(81.0, "binarized"), "bits_per_dim": nll(0.15, "binarized")}
    quick = {"model": "pixelrnn", "nll_nats": nll(70.0, "binarized", n=100),
             "bits_per_dim": nll(0.13, "binarized", 100)}
    legacy = {"model": "bayes", "nll_nats": {"value": -600.0, "n": 10_000, "data": "dequantized 8-bit test pixels"}}
    rows = [leaderboard_row(Path(m["model"]), m) for m in (gmm, vae, pcnn, quick, legacy)]
    assert rows[0]["nll_nats_dequantized"] == -538.8 and rows[0]["nll_nats_binarized"] is None
    assert rows[4]["nll_nats_dequantized"] == -600.0  # read from an older file's data note
    columns, cells, notes = table(rows)
    at = {c.key: i for i, c in enumerate(columns)}
    binarized = [line[at["nll_nats_binarized"]] for line in cells]
    # an exact NLL has no IWAE K: the VAE's estimate ranks beside it; 70 nats on 100 test images is marked, not bold
    assert [c.best for c in binarized] == [False, False, True, False, False]
    assert binarized[3].mark == "*" and binarized[1].mark == binarized[2].mark == ""
    assert any("test images 100" in note and "not ranked" in note for note in notes)
    dequantized = [line[at["nll_nats_dequantized"]] for line in cells]
    assert [c.best for c in dequantized] == [False, False, False, False, True]  # -600 beats -538.8, only each other
    assert any(note.startswith("dequantized:") and "Never ranked against the binarized" in note for note in notes)
    meta = {"data": "mnist", "seed": 0, "budget": "none", "n_samples": 0, "evaluator_version": "v1",
            "hardware": "CPU", "date": "2026-11-30"}
    text = leaderboard_markdown(rows, meta)
    assert "**-538.80**" not in text and "**-600.00**" in text and "**81.00**" in text and "| 70.00* |" in text
    # a second VAE with another K is marked against the first one's
    other_k = {**vae, "model": "vae2", "nll_nats": {**vae["nll_nats"], "k": 50, "value": 60.0}}
    rows2 = rows + [leaderboard_row(Path("vae2"), other_k), leaderboard_row(Path("vae3"), vae)]
    columns, cells, notes = table(rows2)
    assert cells[5][at["nll_nats_binarized"]].mark and not cells[5][at["nll_nats_binarized"]].best


@pytest.mark.slow
def test_train_evaluate_report_end_to_end(tmp_path, monkeypatch):
    """A tiny VAE run through the real trainer, `evaluate_run` with sample quality, and the report."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # real-feature cache
    import genzoo
    from genzoo.evaluation.evaluate import evaluate_run

    run = genzoo.train(
        "vae",
        data="embedded",
        out=tmp_path / "bench" / "runs" / "vae",
        device="cpu",
        seed=0,
        progress=False,
        model_overrides={"channels": 8, "latent_dim": 4},
        train_overrides={"steps": 4, "batch_size": 32, "n_grid": 16, "log_every": 1},
    )
    metrics = evaluate_run(run, device="cpu", seed=0, max_test=200, n_samples=300, iwae_k=2)
    on_disk = json.loads((run / "metrics.json").read_text())
    assert on_disk["fid"]["value"] == metrics["fid"]["value"] > 0
    assert on_disk["fid"]["n"] == 300 and on_disk["fid"]["evaluator_version"] == on_disk["evaluator_version"] == "v1"
    assert 0 <= on_disk["precision"]["value"] <= 1 and len(on_disk["class_coverage"]["value"]) == 10
    assert on_disk["sample_seconds_per_image"]["value"] > 0 and "conditional_accuracy" not in on_disk
    page = parse(write_report([run], tmp_path / "report"))
    assert "metrics-vae" in page.tables and any(src.endswith("training_curves.png") for src in page.imgs)
    assert "runs/vae/samples/epoch_001.png" in page.imgs
    # genzoo bench takes the finished run as it is (no training) and ranks it.
    from genzoo.showcase.bench import run_bench

    rows = run_bench(["vae"], data="embedded", budget_seconds=0, device="cpu", out_dir=tmp_path / "bench", seed=0,
                     n_samples=300, max_test=200, iwae_k=2, progress=False)
    board = json.loads((tmp_path / "bench" / "leaderboard.json").read_text())
    assert board["rows"] == rows and rows[0]["n_samples"] == 300
    assert rows[0]["fid"] == metrics["fid"]["value"]  # evaluated again: the seed fixes the samples
    assert rows[0]["train_seconds"] == on_disk["train_seconds"]  # the first training, not a new one
    assert "| vae (estimate) |" in (tmp_path / "bench" / "leaderboard.md").read_text()
    assert (tmp_path / "bench" / "report" / "index.html").exists()
