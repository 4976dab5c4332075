"""The command line as a user runs it: train, sample, evaluate, pictures, errors, the demo."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from genzoo.cli import main


@pytest.fixture(scope="module")
def dae_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "dae"
    assert main(["train", "dae", "--data", "embedded", "--steps", "200", "--batch-size", "64", "--lr", "3e-3",
                 "--device", "cpu", "--set", "channels=8", "--set", "latent_dim=16", "--set", "noise=gaussian",
                 "--out", str(run)]) == 0
    return run


@pytest.fixture(scope="module")
def small_dae(tmp_path_factory):
    """A few steps of a narrow dae: quick to train, enough to test what commands write."""
    run = tmp_path_factory.mktemp("cli-small") / "dae"
    assert main(["train", "dae", "--data", "embedded", "--steps", "3", "--batch-size", "16", "--device", "cpu",
                 "--set", "channels=4", "--set", "latent_dim=4", "--set", "test_every=0", "--set", "n_grid=4",
                 "--out", str(run)]) == 0
    return run


def test_list(capsys):
    assert main(["list"]) == 0
    from genzoo.registry import MODELS

    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(MODELS)
    assert all(len(line.split(maxsplit=1)) == 2 for line in lines), "every model has a one-line summary"


def test_train_records_config(dae_run):
    config = json.loads((dae_run / "config.json").read_text())
    assert config["hparams"]["noise"] == "gaussian" and config["train"]["steps"] == 200 and config["data"] == "embedded"


def test_sample_reconstruct_denoise_write_pictures(dae_run, tmp_path):
    assert main(["sample", str(dae_run), "-n", "16", "--out", str(tmp_path / "s.png")]) == 0
    assert Image.open(tmp_path / "s.png").size == (2 * (4 * 30 + 2),) * 2  # 4x4 grid of 28 px + 2 px padding, x2
    assert main(["reconstruct", str(dae_run), "-n", "8", "--out", str(tmp_path / "r.png")]) == 0
    assert Image.open(tmp_path / "r.png").size == (2 * (8 * 30 + 2), 2 * (2 * 30 + 2))  # two rows of 8
    assert main(["denoise", str(dae_run), "--noise", "gaussian:0.3", "-n", "8", "--out", str(tmp_path / "d.png")]) == 0
    assert Image.open(tmp_path / "d.png").size == (2 * (8 * 30 + 2), 2 * (3 * 30 + 2))  # clean / noisy / denoised


def test_evaluate_writes_metrics(dae_run, capsys):
    assert main(["evaluate", str(dae_run), "--max-test", "100", "--samples", "200", "--device", "cpu"]) == 0
    metrics = json.loads((dae_run / "metrics.json").read_text())
    assert metrics["model"] == "dae" and metrics["psnr_noisy_gaussian"]["n"] == 100
    assert metrics["psnr_denoised_gaussian"]["value"] > metrics["psnr_noisy_gaussian"]["value"] + 2
    assert 0 < metrics["reconstruction_mse"]["value"] < 0.2


def test_user_errors_are_one_line(tmp_path, capsys):
    assert main(["train", "ae", "--data", str(tmp_path), "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert f"genzoo train: error: {tmp_path}: no train-images-idx3-ubyte or train-images-idx3-ubyte.gz" in err
    assert main(["train", "ae", "--data", "embedded", "--set", "latent=3"]) == 2
    assert "--set latent=3: unknown key 'latent'. ae keys: latent_dim, channels" in capsys.readouterr().err
    assert main(["sample", str(tmp_path)]) == 2
    assert f"{tmp_path}: not a genzoo run folder (no config.json)" in capsys.readouterr().err


def test_resume_takes_a_new_length_and_refuses_other_changes(dae_run, capsys):
    # dae_run is a finished 200-step run: --resume with --set must not drop the setting silently.
    assert main(["train", "dae", "--out", str(dae_run), "--resume", "--set", "lr=1e-2"]) == 2
    assert "--resume continues a run with its own config.json; drop --set" in capsys.readouterr().err
    assert main(["train", "dae", "--out", str(dae_run), "--resume", "--steps", "100"]) == 2
    assert "the run is at step 200, past the 100 steps that steps=100, epochs=0 make" in capsys.readouterr().err
    assert main(["train", "ae", "--out", str(dae_run), "--resume"]) == 2
    assert f"a dae run, not ae; continue it with: genzoo train dae --out {dae_run} --resume" in capsys.readouterr().err


def test_label_on_unconditional_model(dae_run, capsys):
    assert main(["sample", str(dae_run), "--label", "3"]) == 2
    assert "dae: this model is unconditional, it cannot draw a chosen digit" in capsys.readouterr().err


def test_demo_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("GENZOO_DATA", str(tmp_path / "none"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    # the from-scratch half at its CPU scale, for the families whose pictures it checks (test_demo.py draws the
    # shipped half and trains every family at the tiny scale)
    assert main(["demo", "--out", str(tmp_path / "demo"), "--budget", "6", "--device", "cpu",
                 "--from-scratch-only", "--models", "ae", "dae", "vae"]) == 0
    page = (tmp_path / "demo" / "report" / "index.html").read_text()
    for name in ("ae", "dae", "vae"):
        assert (tmp_path / "demo" / name / "metrics.json").exists()
        assert (tmp_path / "demo" / name / "samples" / "progress.gif").exists()
    assert "reconstructions.png" in page and "denoising.png" in page and "prior_samples_and_means.png" in page


@pytest.mark.parametrize("argv, message", [
    (["sample", "RUN", "-n", "0"], "argument -n: 0 must be >= 1"),
    (["evaluate", "RUN", "--max-test", "-1"], "argument --max-test: -1 must be >= 0"),
    (["evaluate", "RUN", "--samples", "-5"], "argument --samples: -5 must be >= 0"),
    (["evaluate", "RUN", "--iwae-k", "x"], "argument --iwae-k: 'x' is not a whole number"),
    (["complete", "RUN", "--completions", "0"], "argument --completions: 0 must be >= 1"),
])
def test_counts_are_checked_where_they_are_parsed(argv, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_a_bad_device_model_list_or_output_path_is_one_line(dae_run, capsys, tmp_path):
    assert main(["train", "ae", "--device", "tpu", "--steps", "1", "--out", str(tmp_path / "x")]) == 2
    assert "--device tpu: not a device; use auto, cpu or cuda" in capsys.readouterr().err
    assert main(["bench", "--models", "foo", "--out", str(tmp_path / "b")]) == 2
    assert "unknown model(s) foo; known: gmm" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["sample", str(dae_run), "-n", "2", "--out", str(blocker / "x.png")]) == 2
    # mkdir of a folder where a file stands: "File exists" (or "Not a directory"); on a loaded machine the
    # sampling's progress line may come first, the error is the last line
    err = capsys.readouterr().err.splitlines(keepends=True)[-1]
    assert err.startswith(f"genzoo sample: error: {blocker}: ") and err.endswith("; choose another path\n")


def test_a_folder_holding_a_run_is_kept_unless_overwrite(dae_run, capsys, tmp_path):
    assert main(["train", "ae", "--steps", "1", "--out", str(dae_run)]) == 2
    err = capsys.readouterr().err
    assert f"{dae_run}: holds a dae run already; continue it with `genzoo train dae --out {dae_run} --resume`" in err
    assert "or start afresh with --overwrite" in err
    run = tmp_path / "run"
    args = ["train", "ae", "--data", "embedded", "--steps", "1", "--batch-size", "8", "--device", "cpu",
            "--set", "channels=4", "--set", "latent_dim=4", "--set", "test_every=0", "--out", str(run)]
    assert main(args) == 0
    (run / "samples" / "epoch_099.png").write_bytes(b"left by an earlier run")
    assert main(args + ["--overwrite"]) == 0 and not (run / "samples" / "epoch_099.png").exists()


def test_default_output_names_carry_what_differs(small_dae, tmp_path):
    dae_run = small_dae
    from genzoo.commands import output_name

    assert output_name("sample", n=64, seed=0) == "sample_n64_seed0.png"
    assert output_name("sample", n=64, seed=0, label=3) == "sample_n64_seed0_label3.png"
    assert output_name("sample", n=8, seed=1, label=None, guidance=2.0, sampler="ddim") == \
        "sample_n8_seed1_guidance2_samplerddim.png"
    training_denoising = (dae_run / "denoising.png").read_bytes()
    assert main(["sample", str(dae_run), "-n", "4", "--seed", "0"]) == 0
    assert main(["sample", str(dae_run), "-n", "4", "--seed", "1"]) == 0
    assert main(["denoise", str(dae_run), "-n", "4", "--noise", "masking:0.5"]) == 0
    assert main(["denoise", str(dae_run), "-n", "4"]) == 0
    samples = {p.name for p in (dae_run / "samples").glob("sample_*.png")}
    assert {"sample_n4_seed0.png", "sample_n4_seed1.png"} <= samples
    assert (dae_run / "denoising_noisemasking0.5_n4_seed0.png").exists()
    assert (dae_run / "denoising_noisedefault_n4_seed0.png").exists()
    assert (dae_run / "denoising.png").read_bytes() == training_denoising  # training's picture is kept


def test_evaluations_are_kept_side_by_side_and_the_most_complete_is_shown(small_dae, tmp_path, capsys):
    dae_run = small_dae
    from genzoo import runs
    from genzoo.showcase.report import write_report

    assert main(["evaluate", str(dae_run), "--max-test", "60", "--samples", "0", "--device", "cpu"]) == 0
    assert main(["evaluate", str(dae_run), "--max-test", "30", "--samples", "0", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "metrics.json keeps the more complete test60_samples0_seed0.json" in out
    names = {p.name for p in (dae_run / "evaluations").glob("*.json")}
    assert {"test60_samples0_seed0.json", "test30_samples0_seed0.json"} <= names
    kept = json.loads((dae_run / "metrics.json").read_text())
    assert kept["settings"]["test_images"] >= 60 and kept["reconstruction_mse"]["n"] == kept["settings"]["test_images"]
    quick = json.loads((dae_run / "evaluations" / "test30_samples0_seed0.json").read_text())
    assert quick["reconstruction_mse"]["n"] == 30
    assert runs.read_evaluations(dae_run)[0][1] == kept
    page = write_report([dae_run], tmp_path / "report").read_text()
    assert "test30_samples0_seed0.json" in page and "the most complete" in page


class _Evil:
    """A pickle that would create a file when unpickled: loading a checkpoint must never run it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_edited_damaged_or_foreign_run_files_are_one_line_errors(small_dae, tmp_path, capsys):
    import pickle
    import shutil

    run = tmp_path / "run"
    shutil.copytree(small_dae, run)
    config_text = (run / "config.json").read_text()
    config = json.loads(config_text)
    config["hparams"]["latent_dim"] = 6  # trained with 4
    (run / "config.json").write_text(json.dumps(config))
    assert main(["sample", str(run), "-n", "2", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{run / 'config.json'} and {run / 'model.safetensors'} disagree: " in err
    assert "config.json's latent_dim=6 does not match the weights; was it edited?" in err
    (run / "config.json").write_text(config_text)
    weights = (run / "model.safetensors").read_bytes()
    for damaged in (weights[: len(weights) // 2], pickle.dumps({"model": 1})):
        (run / "model.safetensors").write_bytes(damaged)
        assert main(["sample", str(run), "-n", "2", "--out", str(tmp_path / "x.png")]) == 2
        err = capsys.readouterr().err
        assert f"{run / 'model.safetensors'}: not a readable safetensors file (" in err and err.count("\n") == 1
    (run / "model.safetensors").write_bytes(weights)
    marker = tmp_path / "ran"
    (run / "checkpoint.pt").write_bytes(pickle.dumps(_Evil(marker)))  # a bare pickle
    assert main(["train", "dae", "--out", str(run), "--resume", "--steps", "6"]) == 2
    err = capsys.readouterr().err
    assert f"{run / 'checkpoint.pt'}: not a genzoo checkpoint: it is not a torch archive of tensors" in err
    assert "weights_only" not in err and err.count("\n") == 1 and not marker.exists()
    torch.save({"step": 3, "model": _Evil(marker)}, run / "checkpoint.pt")  # a torch archive holding an object
    assert main(["train", "dae", "--out", str(run), "--resume", "--steps", "6"]) == 2
    err = capsys.readouterr().err
    assert f"{run / 'checkpoint.pt'}: not a genzoo checkpoint: it holds objects other than tensors" in err
    assert "weights_only" not in err and err.count("\n") == 1 and not marker.exists()


def test_a_model_too_large_for_the_memory_fails_fast_with_the_estimate(monkeypatch, tmp_path, capsys):
    from genzoo import runs

    monkeypatch.setattr(runs, "available_memory_bytes", lambda: 2 * 2**30)
    assert main(["train", "ae", "--data", "embedded", "--steps", "1", "--set", "latent_dim=100000",
                 "--out", str(tmp_path / "big")]) == 2
    err = capsys.readouterr().err
    assert "ae with latent_dim=100000: 39.6 GiB of weights, about 158.4 GiB to train" in err
    assert "more than the 2.0 GiB of memory free on this machine; choose smaller sizes" in err
    assert not (tmp_path / "big").exists()


def test_only_settings_far_above_their_defaults_are_sized_on_the_meta_device():
    """Sizing builds the model on torch's meta device (seconds the first time): only for settings well above
    their defaults, also where the default holds no number (ddpm's widths=(): the space's own widths)."""
    from genzoo import runs

    assert not runs._grows("ddpm", {"widths": (32, 64, 64), "p_uncond": 0.2})
    assert runs._grows("ddpm", {"widths": (1024, 2048)})
    assert not runs._grows("ae", {"latent_dim": 32})
    assert runs._grows("ae", {"latent_dim": 100000})


def test_every_n_is_drawn_in_batches_or_refused_before_any_work(small_dae, tmp_path, monkeypatch, capsys):
    import numpy as np

    from genzoo import sampling
    from genzoo.models.dae import DenoisingAutoencoder as DAE

    sizes = []
    real_sample = DAE.sample

    def counting(self, n, **kwargs):
        sizes.append(n)
        return real_sample(self, n, **kwargs)

    monkeypatch.setattr(sampling, "SAMPLE_BATCH", 3)
    monkeypatch.setattr(DAE, "sample", counting)
    assert main(["sample", str(small_dae), "-n", "7", "--out", str(tmp_path / "s.npz")]) == 0
    assert sizes == [3, 3, 1]
    with np.load(tmp_path / "s.npz") as saved:
        assert saved["images"].shape == (7, 28, 28) and saved["images"].dtype == np.uint8 and "labels" not in saved
    assert main(["sample", str(small_dae), "-n", "100000", "--out", str(tmp_path / "big.png")]) == 2
    assert "-n 100000: a PNG grid holds at most 10,000 images; for more, write them as arrays with --out FILE.npz" \
        in capsys.readouterr().err
    for argv, flag in ((["reconstruct", "-n", "1000"], "-n 1000"), (["denoise", "-n", "101"], "-n 101"),
                       (["complete", "--completions", "500"], "--completions 500"),
                       (["reverse-process", "--columns", "1000"], "--columns 1000"),
                       (["interpolate", "--rows", "200"], "--rows 200")):
        assert main([argv[0], str(small_dae), *argv[1:]]) == 2
        assert f"{flag}: a row picture shows at most 100 images" in capsys.readouterr().err
    assert not (tmp_path / "big.png").exists() and sizes == [3, 3, 1]  # refused before sampling


def test_list_is_quick_with_papers_and_version(small_dae, capsys):
    import stat
    import subprocess
    import sys

    from genzoo import catalog, registry

    assert list(catalog.MODELS) == list(registry.MODELS)  # the quick table names exactly the registered models
    # The whole parser is built (every verb's defaults and choices read) before `list` runs: none may need torch.
    for argv in (["list"], ["--version"], ["evaluate", "--help"], ["demo", "--help"], ["evaluator", "--help"]):
        code = (f"import sys\nfrom genzoo.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
                "print('torch' in sys.modules)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.splitlines()[-1] == "False", f"genzoo {' '.join(argv)} imported torch"
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "`" not in "".join(lines) and lines[0].startswith("gmm ") and "(Dempster, Laird & Rubin 1977" in lines[0]
    assert "(Kingma & Welling 2014; Burda et al. 2016)" in lines[5]
    with pytest.raises(SystemExit) as stopped:  # argparse's version action, as --help
        main(["--version"])
    assert stopped.value.code == 0 and capsys.readouterr().out == f"genzoo {genzoo_version()}\n"
    mode = stat.S_IMODE((small_dae / "model.safetensors").stat().st_mode)
    assert mode == stat.S_IMODE((small_dae / "config.json").stat().st_mode) and mode & 0o044  # readable by others


def genzoo_version() -> str:
    from genzoo import __version__

    return __version__


def test_what_a_model_cannot_draw_is_refused_by_its_flags(small_dae, capsys):
    for verb, words in (("reverse-process", "dae: has no reverse process to draw; use a ddpm run"),
                        ("interpolate", "dae: has no latent space to walk; use a vae, gan, cgan or dcgan run"),
                        ("complete", "dae: cannot complete digits; use a pixelcnn or pixelrnn run")):
        assert main([verb, str(small_dae)]) == 2
        assert words in capsys.readouterr().err, verb


def test_a_listing_piped_into_a_reader_that_stops_early_ends_quietly():
    import subprocess
    import sys

    out = subprocess.run(f"{sys.executable} -m genzoo recipes | head -1", shell=True, capture_output=True, text=True)
    assert out.stdout.strip() and "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr
