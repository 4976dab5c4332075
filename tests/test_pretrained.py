"""The shipped weights: every file against the manifest's sha256, every model re-scored on the fixed subset
against the figures the manifest recorded; and the machinery on a zoo of tiny models packed here:
`pretrained:NAME` in every command that takes a run, nothing written into the installed folder, training on
from a shipped model, recipes refused by name."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from genzoo import catalog, pretrained, recipes, runs
from genzoo.cli import main
from genzoo.commands.train_run import copy_shipped_stage
from genzoo.data import load_embedded, load_idx_folder
from genzoo.pretrained.build import ANIMATION_FRAMES, evenly_spaced, pack_run
from genzoo.pretrained.check import SAMPLES, subset_figures
from genzoo.pretrained.weights import complete_state, shipped_state
from genzoo.trainer import train

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
SHIPPED = pretrained.names()
MAX_BYTES = 40 * 2**20


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------ the real shipped models


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_files_match_the_manifest(name):
    entry = pretrained.manifest()["models"][name]
    folder = pretrained.ROOT / name
    assert sorted(p.name for p in folder.iterdir()) == sorted(entry["files"])
    for file, digest in entry["files"].items():
        assert file_sha256(folder / file) == digest, f"{folder / file}: not the file the manifest lists"
    assert entry["recipe"] == "cpu" and entry["cpu_seconds"] <= 3 * 3600


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_model_is_its_recipe_as_it_stands(name):
    """What ships is what its rebuild command makes now: the recipe's model and training settings, unchanged since
    it trained (a recipe changed later needs `benchmarks/pretrained.py build NAME` again)."""
    entry = pretrained.manifest()["models"][name]
    assert recipes.drift(entry["model"], entry["recipe"], runs.read_config(pretrained.ROOT / name)) == [], (
        f"pretrained:{name} was trained before its recipe changed: "
        f"OMP_NUM_THREADS=1 python benchmarks/pretrained.py build {name} --data ../shared/data/mnist rebuilds it")


def test_shipped_weights_fit_the_budget():
    total = sum((pretrained.ROOT / name / "model.safetensors").stat().st_size for name in SHIPPED)
    assert total <= MAX_BYTES
    # the animations beside them are thinned to a few frames (the rbm's 200 epochs would be 11 MB)
    for gif in pretrained.ROOT.glob("*/progress.gif"):
        assert Image.open(gif).n_frames <= ANIMATION_FRAMES, gif


@pytest.mark.parametrize("n, most, expected", [(3, 5, [0, 1, 2]), (5, 5, [0, 1, 2, 3, 4]), (10, 4, [0, 3, 6, 9]),
                                               (200, 3, [0, 100, 199]), (7, 2, [0, 6])])
def test_the_animation_keeps_evenly_spaced_frames_first_and_last_among_them(n, most, expected):
    assert evenly_spaced(list(range(n)), most) == expected


@pytest.mark.skipif(not SHARED_MNIST.exists(), reason=f"needs full MNIST at {SHARED_MNIST}")
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_gives_its_recorded_figures(name):
    torch.manual_seed(0)
    model = runs.load(f"pretrained:{name}")
    recorded = pretrained.manifest()["models"][name]["subset"]
    figures = subset_figures(model, load_idx_folder(SHARED_MNIST))
    assert figures.keys() == recorded.keys()
    for key, value in recorded.items():
        # Sampled figures ride on float rounding that differs with the thread count (a diffusion sampler's 50
        # steps amplify it): two samples' verdicts or 1% of the FID-style score; weights that differ move far more.
        tolerance = ({"abs_tol": 2 / SAMPLES} if key in ("precision", "recall", "conditional_accuracy") else
                     {"rel_tol": 1e-2} if key == "fid" else {"rel_tol": 1e-3, "abs_tol": 1e-4})
        assert math.isclose(figures[key], value, **tolerance), (key, figures[key], value)


# ------------------------------------------------------------------ the machinery, on tiny packed models


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory):
    """A shipped zoo of two tiny models (a cgan, an ae) packed by the packing code into a folder of its own."""
    root = tmp_path_factory.mktemp("zoo")
    work = tmp_path_factory.mktemp("runs")
    data = load_idx_folder(SHARED_MNIST) if SHARED_MNIST.exists() else load_embedded()
    trained = {
        "cgan": train("cgan", data, work / "cgan", device="cpu", progress=False,
                      train_overrides={"steps": 30, "epochs": 0, "recipe": "cpu", "sample_every": 0}),
        "ae": train("ae", data, work / "ae", device="cpu", progress=False,
                    model_overrides={"channels": 8, "latent_dim": 8},
                    train_overrides={"steps": 5, "epochs": 0, "recipe": "cpu", "sample_every": 0,
                                     "test_every": 0}),
    }
    for name, run in trained.items():
        pack_run(run, name, data, evaluation={"fid": {"value": 1.0, "n": 10}}, cpu_seconds=1.0, commit="test",
                 root=root)
    return root, trained


@pytest.fixture
def shipped(tiny_zoo, monkeypatch, tmp_path):
    """The tiny zoo installed as genzoo's shipped models; the working directory a fresh user folder."""
    root, trained = tiny_zoo
    monkeypatch.setattr(pretrained, "ROOT", root)
    monkeypatch.setattr(pretrained, "MANIFEST", root / "manifest.json")
    monkeypatch.chdir(tmp_path)
    return root, trained


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(root)): (file_sha256(p), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_shipped_state_leaves_out_training_weights_and_loads_back_the_same_sampler(tiny_zoo):
    _, trained = tiny_zoo
    model = runs.load(trained["cgan"])
    state = shipped_state(model)
    assert not any(k.startswith(("discriminator.", "generator.")) for k in state)
    assert any(k.startswith("generator_ema.") for k in state)
    full = complete_state(model, state)
    for key in model.state_dict():  # the online generator is rebuilt from its average
        if key.startswith("generator."):
            assert torch.equal(full[key], state["generator_ema." + key[len("generator."):]])
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    root = tiny_zoo[0]
    loaded = runs.load(root / "cgan")  # the packed folder: shipped weights made whole
    dtype = json.loads((root / "cgan" / "config.json").read_text())["shipped"]["dtype"]
    a, b = model.sample(16, y=torch.arange(16) % 10, generator=g1), loaded.sample(16, y=torch.arange(16) % 10,
                                                                                generator=g2)
    tol = 2e-2 if dtype == "float16" else 1e-6
    assert (a - b).abs().max() < tol


def test_the_manifest_lists_sha256_and_the_subset_figures_reproduce(shipped):
    root, _ = shipped
    manifest = pretrained.manifest()
    assert set(manifest["models"]) == {"ae", "cgan"}
    for name, entry in manifest["models"].items():
        for file, digest in entry["files"].items():
            assert file_sha256(root / name / file) == digest
    data = load_idx_folder(SHARED_MNIST) if SHARED_MNIST.exists() else load_embedded()
    for name, entry in manifest["models"].items():
        again = subset_figures(runs.load(f"pretrained:{name}"), data)
        assert again == pytest.approx(entry["subset"], rel=1e-4)


def test_an_unknown_shipped_name_lists_the_shipped_ones(shipped, capsys):
    assert main(["sample", "pretrained:nope", "-n", "4"]) == 2
    err = capsys.readouterr().err
    assert "pretrained:nope: no shipped model 'nope'" in err and "pretrained:ae, pretrained:cgan" in err
    assert main(["bench", "--models", "ae", "pretrained:nope", "--out", "b"]) == 2  # before training ae
    assert "pretrained:nope: no shipped model 'nope'" in capsys.readouterr().err
    assert not Path("b/runs/ae").exists()


COMMANDS = {
    "sample": ["sample", "pretrained:cgan", "-n", "8", "--label", "3"],
    "sample-npz": ["sample", "pretrained:ae", "-n", "8", "--out", "s.npz"],
    "interpolate": ["interpolate", "pretrained:cgan", "--steps", "4"],
    "reconstruct": ["reconstruct", "pretrained:ae", "-n", "4"],
    "evaluate": ["evaluate", "pretrained:cgan", "--samples", "64", "--max-test", "64"],
    "report": ["report", "pretrained:cgan", "pretrained:ae", "--out", "report"],
    "bench": ["bench", "--models", "pretrained:cgan", "--samples", "64", "--max-test", "64", "--out", "bench"],
}


@pytest.mark.parametrize("verb", list(COMMANDS))
def test_pretrained_name_works_in_every_command_and_writes_only_in_the_user_folder(shipped, verb, tmp_path):
    root, _ = shipped
    before = snapshot(root)
    assert main(COMMANDS[verb]) == 0
    assert snapshot(root) == before  # the installed folder: same files, same bytes, same times
    for name in ("cgan", "ae"):
        if f"pretrained:{name}" in COMMANDS[verb]:
            copy = tmp_path / "genzoo-pretrained" / name
            assert json.loads((copy / "config.json").read_text()) == json.loads((root / name / "config.json")
                                                                                .read_text())
    if verb == "bench":  # ranked under its shipped name, scored from the user's copy
        rows = json.loads((tmp_path / "bench" / "leaderboard.json").read_text())["rows"]
        assert [(r["model"], r["run"]) for r in rows] == [("pretrained:cgan", "genzoo-pretrained/cgan")]
        assert rows[0]["conditional_accuracy"] is not None and rows[0]["fid"] is not None


def test_the_same_model_loads_from_the_name_and_from_its_folder(shipped):
    root, _ = shipped
    a, b = runs.load("pretrained:ae"), runs.load(root / "ae")
    for (k, v), (k2, v2) in zip(a.state_dict().items(), b.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


def test_resume_of_a_shipped_model_is_refused_with_the_command_that_trains_on(shipped, capsys):
    assert main(["train", "ae", "--out", "pretrained:ae", "--resume"]) == 2
    assert "genzoo train ae --from pretrained:ae --out runs/ae" in capsys.readouterr().err


def test_training_on_from_a_shipped_model_starts_at_its_weights_and_resumes_bit_exactly(shipped, tmp_path):
    data = load_embedded()
    start = runs.load("pretrained:ae")
    # a constant rate: 2 steps, then --resume to 4, must be the 4-step run bit for bit
    settings = {"epochs": 0, "init_from": "pretrained:ae", "test_every": 0, "sample_every": 0,
                "schedule": "constant"}
    straight = train("ae", data, tmp_path / "straight", device="cpu", progress=False,
                     train_overrides={"steps": 4, **settings})
    config = runs.read_config(straight)
    assert config["train"]["init_from"] == "pretrained:ae"
    assert config["hparams"] == runs.read_config(pretrained.ROOT / "ae")["hparams"]
    # one step at a vanishing rate from the shipped weights: the run's network is the shipped one (the code
    # Gaussian, refitted on the training digits after training, is not a trained weight)
    first = train("ae", data, tmp_path / "zero", device="cpu", progress=False,
                  train_overrides={"steps": 1, "epochs": 0, "init_from": "pretrained:ae", "lr": 1e-12,
                                   "test_every": 0, "sample_every": 0})
    shipped_weights = dict(start.named_parameters())
    for key, value in runs.load(first).named_parameters():
        assert torch.allclose(value, shipped_weights[key], atol=1e-6), key
    cut = train("ae", data, tmp_path / "cut", device="cpu", progress=False, train_overrides={"steps": 2, **settings})
    train("ae", data, cut, device="cpu", progress=False, resume=True, train_overrides={"steps": 4})
    a, b = load_file(str(straight / runs.WEIGHTS)), load_file(str(cut / runs.WEIGHTS))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_unknown_recipe_is_refused_with_the_known_ones(capsys, tmp_path):
    assert main(["train", "vae", "--recipe", "fast", "--out", str(tmp_path / "r")]) == 2
    assert "vae: no recipe 'fast'; its recipes: cpu, paper" in capsys.readouterr().err
    with pytest.raises(recipes.RecipeError, match="no recipes for model 'nope'; models with recipes: gmm"):
        recipes.listing("nope")


def test_every_model_has_cpu_and_paper_recipes_that_build(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    for name in catalog.NAMES:
        assert {"cpu", "paper"} <= set(recipes.RECIPES[name])
        assert recipes.RECIPES[name] is catalog.MODELS[name].recipes  # the table's row is the one place
        assert f"genzoo train {name} --recipe cpu --data mnist" in out
        for recipe in recipes.RECIPES[name].values():
            runs.create(name, **recipe.model)  # every recipe's settings are the model's own keys


def test_a_recipe_trains_with_its_settings_and_the_command_line_overrides_them(tmp_path):
    run = tmp_path / "r"
    assert main(["train", "rbm", "--recipe", "cpu", "--data", "embedded", "--steps", "2", "--set", "n_hidden=16",
                 "--out", str(run), "--device", "cpu"]) == 0
    config = runs.read_config(run)
    assert config["train"]["recipe"] == "cpu" and config["train"]["steps"] == 2 and config["train"]["epochs"] == 0
    assert config["hparams"]["n_hidden"] == 16  # --set over the recipe's 500


def test_pip_installs_every_shipped_file():
    import fnmatch

    tomllib = pytest.importorskip("tomllib", reason="Python 3.11's tomllib reads pyproject.toml")
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["genzoo"]
    package = pretrained.ROOT.parent
    shipped = [pretrained.MANIFEST] + [pretrained.ROOT / n / f for n in SHIPPED
                                       for f in pretrained.manifest()["models"][n]["files"]]
    for path in shipped:
        relative = str(path.relative_to(package))
        assert any(fnmatch.fnmatch(relative, glob) for glob in globs), f"{relative}: not in package-data"


def test_readme_family_table_quotes_the_manifest():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text().splitlines()
    for name in SHIPPED:
        rows = [line.split(" | ") for line in readme if line.startswith(f"| `{name}` |")]
        assert len(rows) == 1, f"README.md: no single family-table row for {name}"
        sample, hours, figures = pretrained.table_cells(name)
        assert (rows[0][2], rows[0][4], rows[0][5]) == (sample, hours, figures), (
            f"README.md's {name} row differs from the manifest: python benchmarks/pretrained.py readme rewrites it")


def test_readme_shows_the_zoo_picture_the_readme_command_writes():
    repo = Path(__file__).resolve().parents[1]
    assert "![Ten samples of each shipped model, one row per family](docs/zoo.png)" in (repo / "README.md").read_text()
    assert Image.open(repo / "docs" / "zoo.png").size[1] > 13 * 28  # a row of 28-pixel digits per shipped family


def test_pretrained_page_tables_are_the_manifests_and_the_shipped_evaluations(tmp_path):
    """docs/PRETRAINED.md's generated tables are what `benchmarks/pretrained.py readme` writes now, and its
    digit-share rows read each shipped evaluation's shares (which sum to 100%)."""
    import importlib.util

    repo = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("benchmark_pretrained", repo / "benchmarks" / "pretrained.py")
    writer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(writer)
    page = tmp_path / "PRETRAINED.md"
    page.write_text((repo / "docs" / "PRETRAINED.md").read_text())
    writer.write_docs_table(page)
    assert page.read_text() == (repo / "docs" / "PRETRAINED.md").read_text(), (
        "docs/PRETRAINED.md differs from the manifest: python benchmarks/pretrained.py readme rewrites it")
    rows = {line.split(" | ")[0].removeprefix("| `pretrained:").removesuffix("`"): line.split(" | ")[1:]
            for line in page.read_text().split("<!-- shares:begin -->")[1].split("<!-- shares:end -->")[0]
            .splitlines() if line.startswith("| `pretrained:")}
    for name in SHIPPED:
        evaluation = json.loads((pretrained.ROOT / name / "evaluation.json").read_text())
        if "class_coverage" not in evaluation:
            assert name not in rows
            continue
        shares = [float(cell.strip(" |%")) for cell in rows[name][1:]]
        assert shares == pytest.approx([100 * v for v in evaluation["class_coverage"]["value"]], abs=0.051)
        assert sum(shares) == pytest.approx(100, abs=0.5)
        assert rows[name][0] == f"{evaluation['class_coverage']['n']:,}"


def test_a_staged_recipe_trains_its_stages_then_the_editor_from_one_command(tmp_path, monkeypatch):
    """The editor's recipe in small: a latent ddpm stage, semantic pairs drawn from it, the editor starting from
    that stage's first stage and learning from those pairs; the same command again finds every stage done."""
    latent = {"space": "latent", "widths": (8, 16), "res_blocks": 1, "ae_widths": (4, 8), "first_stage_steps": 2,
              "timesteps": 20, "sample_steps": 5}
    monkeypatch.setitem(recipes.RECIPES["ddpm"], "tiny", catalog.Recipe(
        "tiny", model=latent, train={"steps": 3, "epochs": 0, "batch_size": 16, "sample_every": 0}))
    monkeypatch.setitem(recipes.RECIPES["instruct"], "tiny", catalog.Recipe(
        "tiny", model={**latent, "semantic_fraction": 0.5}, train={"steps": 2, "epochs": 0, "batch_size": 16,
                                                                   "sample_every": 0},
        stages=(catalog.Stage("ddpm", "ddpm", "tiny"),), pairs=8, pairs_threshold=0.0))
    run = tmp_path / "editor"
    args = ["train", "instruct", "--recipe", "tiny", "--data", "embedded", "--out", str(run), "--device", "cpu"]
    assert main(args) == 0
    stage, pairs = run / "stages" / "ddpm", run / "stages" / "pairs" / "pairs.safetensors"
    assert runs.read_config(stage)["train"]["recipe"] == "tiny" and runs.trained_step(stage) == 3
    assert len(load_file(str(pairs))["inputs"]) == 8  # threshold 0 keeps every candidate
    config = runs.read_config(run)
    assert config["hparams"]["first_stage_from"] == str(stage.resolve())
    assert config["hparams"]["semantic_pairs"] == str(pairs.resolve())
    assert runs.load(run).can_edit and runs.trained_step(run) == 2
    stage_mtime = (stage / runs.WEIGHTS).stat().st_mtime_ns
    assert main(args) == 2  # the same command again: the stages are found done, the editor's run is kept
    assert (stage / runs.WEIGHTS).stat().st_mtime_ns == stage_mtime  # a finished stage is not trained again


def test_a_stage_that_ships_is_copied_not_trained_when_its_recipe_and_data_match(tmp_path, monkeypatch, capsys):
    """The editor's first stage is diffusion's cpu run, which ships: a staged recipe copies the shipped model into
    its stage folder (made by the stage's recipe with today's settings, on the same data) and trains only the
    editor; a recipe whose settings moved on, or other data, trains its own stage."""
    latent = {"space": "latent", "widths": (8, 16), "res_blocks": 1, "ae_widths": (4, 8), "first_stage_steps": 2,
              "timesteps": 20, "sample_steps": 5}
    ddpm_train = {"steps": 3, "epochs": 0, "batch_size": 16, "sample_every": 0}
    monkeypatch.setitem(recipes.RECIPES["ddpm"], "tiny", catalog.Recipe("tiny", model=latent, train=ddpm_train))
    stage = catalog.Stage("ddpm", "ddpm", "tiny")
    monkeypatch.setitem(recipes.RECIPES["instruct"], "tiny", catalog.Recipe(
        "tiny", model=latent, train={"steps": 1, "epochs": 0, "batch_size": 16, "sample_every": 0},
        stages=(stage,), pairs=4, pairs_threshold=0.0))
    assert main(["train", "ddpm", "--recipe", "tiny", "--data", "embedded", "--out", str(tmp_path / "ddpm"),
                 "--device", "cpu"]) == 0
    zoo = tmp_path / "zoo"
    pack_run(tmp_path / "ddpm", "ddpm", load_embedded(), evaluation={"data": load_embedded().describe()},
             cpu_seconds=60.0, commit="test", root=zoo)
    monkeypatch.setattr(pretrained, "ROOT", zoo)
    monkeypatch.setattr(pretrained, "MANIFEST", zoo / "manifest.json")
    capsys.readouterr()
    run = tmp_path / "editor"
    assert main(["train", "instruct", "--recipe", "tiny", "--data", "embedded", "--out", str(run),
                 "--device", "cpu"]) == 0
    copied = run / "stages" / "ddpm"
    assert "stage 'ddpm' is the shipped pretrained:ddpm" in capsys.readouterr().err
    assert sorted(p.name for p in copied.iterdir()) == sorted(pretrained.manifest()["models"]["ddpm"]["files"])
    assert runs.read_config(run)["hparams"]["first_stage_from"] == str(copied.resolve())
    assert runs.trained_step(run) == 1
    # a stage recipe whose settings moved on since the model shipped, or other data: no copy (the stage trains)
    assert copy_shipped_stage(stage, tmp_path / "again", "embedded") and (tmp_path / "again").is_dir()
    monkeypatch.setitem(recipes.RECIPES["ddpm"], "tiny", catalog.Recipe(
        "tiny", model={**latent, "widths": (8, 8)}, train=ddpm_train))
    assert not copy_shipped_stage(stage, tmp_path / "moved-on", "embedded")
    monkeypatch.setitem(recipes.RECIPES["ddpm"], "tiny", catalog.Recipe(
        "tiny", model=latent, train={**ddpm_train, "steps": 4}))  # trained longer now than the shipped stage was
    assert not copy_shipped_stage(stage, tmp_path / "longer", "embedded")
    assert "steps 3 in the run, 4 in the recipe" in recipes.listing("ddpm")
    monkeypatch.setitem(recipes.RECIPES["ddpm"], "tiny", catalog.Recipe("tiny", model=latent, train=ddpm_train))
    assert "trained before the recipe changed" not in recipes.listing("ddpm")
    (zoo / "ddpm" / "evaluation.json").write_text(json.dumps({"data": "mnist (60,000 train / 10,000 test)"}))
    assert not copy_shipped_stage(stage, tmp_path / "other-data", "embedded")
    assert not any((tmp_path / name).exists() for name in ("moved-on", "longer", "other-data"))
