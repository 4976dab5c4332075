"""The demo's shipped phase (`showcase.shipped.draw_shipped`) with a tiny packed zoo: each shipped model's samples
are its own (read back from the PNG), its pictures are drawn, its figures carry their sample counts and reference
sets, the zoo picture has one row per family, and nothing is written into the installed package."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_benchmarks import load_benchmark
from test_contract import TINY

import genzoo
from genzoo import pretrained, runs
from genzoo.images import grid
from genzoo.pretrained.build import pack_run
from genzoo.showcase import shipped as shipped_phase
from genzoo.showcase.shipped import FOLDER, SUMMARY, ZOO_PICTURE, draw_shipped, figures_of, write_zoo_picture
from genzoo.train_config import TrainConfig

EVALUATION = {"fid": {"value": 12.345, "n": 640, "n_real": 1000},
              "nll_nats": {"value": 88.1, "n": 1000, "kind": "bound", "data": "binarized (fixed draw)"},
              "precision": {"value": 0.5, "n": 640, "n_real": 1000},
              "data": "mnist (60,000 train / 10,000 test, from the build machine's folder)"}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory, tiny, one_thread) -> Path:
    """An ae and a cgan, written seeded without training, packed by the packing code into a zoo of their own."""
    root, work = tmp_path_factory.mktemp("zoo"), tmp_path_factory.mktemp("runs")
    for name in ("ae", "cgan"):
        torch.manual_seed(0)
        model = genzoo.create(name, **TINY[name])
        (work / name).mkdir()
        runs.write_config(work / name, model, TrainConfig(steps=1, epochs=0), "embedded", 0)
        runs.save_weights(model, work / name / runs.WEIGHTS)
        if name == "cgan":  # a run that drew a grid at each of two epochs, and their animation
            (work / name / "samples").mkdir()
            for epoch in (1, 2):
                Image.new("L", (8, 8), 40 * epoch).save(work / name / "samples" / f"epoch_00{epoch}.png")
            frames = [Image.new("L", (8, 8), v) for v in (40, 80)]
            frames[0].save(work / name / "samples" / "progress.gif", save_all=True, append_images=frames[1:])
        pack_run(work / name, name, tiny, evaluation=EVALUATION, cpu_seconds=5400.0, commit="test", root=root)
    return root


@pytest.fixture
def shipped(zoo, monkeypatch):
    monkeypatch.setattr(pretrained, "ROOT", zoo)
    monkeypatch.setattr(pretrained, "MANIFEST", zoo / "manifest.json")
    return zoo


def files_of(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_every_shipped_model_is_drawn_from_its_own_weights(shipped, tiny, tmp_path):
    before = files_of(shipped)
    lines = []
    summary = draw_shipped(tmp_path, tiny, seed=3, say=lines.append)
    assert list(summary["models"]) == ["ae", "cgan"] and len(lines) == 2
    assert json.loads((tmp_path / FOLDER / SUMMARY).read_text()) == summary
    for name in ("ae", "cgan"):
        model = runs.load(shipped / name)
        labels = torch.arange(64) % 10 if model.conditional else None
        own = model.sample(64, y=labels, generator=torch.Generator().manual_seed(3))
        drawn = np.asarray(Image.open(tmp_path / FOLDER / name / "samples.png").convert("L"))[::2, ::2]
        assert np.abs(drawn.astype(int) - grid(own, 8).astype(int)).max() <= 1, name
        entry = summary["models"][name]
        assert entry["cpu_hours"] == 1.5 and not entry["pictures_left_out"]
        for picture in entry["pictures"]:
            assert (tmp_path / FOLDER / name / picture).is_file()
    assert len(summary["models"]["ae"]["pictures"]) > 1  # reconstructions beside the samples
    zoo_picture = Image.open(tmp_path / FOLDER / ZOO_PICTURE)
    assert summary["zoo"] == ZOO_PICTURE and zoo_picture.width > zoo_picture.height > 0
    assert summary["seconds"] >= sum(entry["seconds"] for entry in summary["models"].values())  # the whole phase
    assert files_of(shipped) == before
    rows = load_benchmark("demo").table(tmp_path).splitlines()  # benchmarks/demo.py's table of the phase
    assert rows[0] == f"The shipped phase: 2 models drawn in {summary['seconds']:.0f} s (zoo picture included)."
    assert [row.split(" | ")[0] for row in rows[4:]] == ["| ae", "| cgan"]
    assert rows[4].split(" | ")[1] == f"{summary['models']['ae']['seconds']:.1f}"


def test_each_figure_says_what_it_rests_on():
    figures = {f["key"]: f for f in figures_of(EVALUATION)}
    assert figures["fid"] == {"key": "fid", "label": "FID-style", "value": "12.35",
                              "rests_on": "640 samples against 1,000 test digits"}
    assert figures["nll_nats"]["label"] == "NLL (bound)" and figures["nll_nats"]["value"] == "88.10 nats"
    assert figures["nll_nats"]["rests_on"] == "1,000 test digits, binarized (fixed draw)"
    assert list(figures) == ["nll_nats", "fid", "precision"]  # the page's order, absent ones left out


def test_models_choose_and_a_passed_deadline_leaves_samples_only(shipped, tiny, tmp_path):
    summary = draw_shipped(tmp_path, tiny, models=["ae"], deadline=0.0, say=lambda text: None)
    assert list(summary["models"]) == ["ae"]
    assert summary["models"]["ae"]["pictures"] == ["samples.png"] and summary["models"]["ae"]["pictures_left_out"]
    assert sorted(p.name for p in (tmp_path / FOLDER / "ae").iterdir()) == ["samples.png"]
    width, height = Image.open(tmp_path / FOLDER / "ae" / "samples.png").size
    assert width > 3 * height  # reached after the deadline: only the zoo row's samples are drawn


def test_a_shipped_animation_is_packed_listed_and_drawn(shipped, tiny, tmp_path):
    gif = shipped / "cgan" / "progress.gif"
    assert pretrained.manifest()["models"]["cgan"]["files"]["progress.gif"]
    assert not (shipped / "ae" / "progress.gif").exists()  # no epoch grids, no animation
    summary = draw_shipped(tmp_path, tiny, seed=0, say=lambda text: None)
    assert "progress.gif" in summary["models"]["cgan"]["pictures"]
    assert "progress.gif" not in summary["models"]["ae"]["pictures"]
    assert (tmp_path / FOLDER / "cgan" / "progress.gif").read_bytes() == gif.read_bytes()


def test_the_zoo_picture_is_a_row_of_each_shipped_models_own_samples(shipped, tmp_path, monkeypatch):
    """README's picture (`benchmarks/pretrained.py readme`): ten samples of every shipped model, 0-9 where
    conditional, drawn from its weights with the seed given; nothing written into the package."""
    before, rows = files_of(shipped), {}
    draw = shipped_phase.zoo_figure
    monkeypatch.setattr(shipped_phase, "zoo_figure", lambda drawn: rows.update(drawn) or draw(drawn))
    path = write_zoo_picture(tmp_path / "zoo.png", seed=2)
    assert list(rows) == ["ae", "cgan"]
    for name, row in rows.items():
        model = runs.load(shipped / name)
        labels = torch.arange(10) if model.conditional else None
        own = model.sample(10, y=labels, generator=torch.Generator().manual_seed(2)).clamp(0, 1)
        assert row.shape == (10, 1, 28, 28) and torch.equal(row, own), name
    picture = Image.open(path)
    assert picture.width > picture.height > 0
    assert files_of(shipped) == before
