"""The command line as a user runs it: train, sample, evaluate, pictures, errors, the demo."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from genzoo.cli import main


@pytest.fixture(scope="module")
def dae_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "dae"
    assert main(["train", "dae", "--data", "embedded", "--steps", "200", "--batch-size", "64", "--lr", "3e-3",
                 "--device", "cpu", "--set", "channels=8", "--set", "latent_dim=16", "--set", "noise=gaussian",
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
    assert main(["demo", "--out", str(tmp_path / "demo"), "--budget", "6", "--device", "cpu"]) == 0
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
    err = capsys.readouterr().err  # mkdir of a folder where a file stands: "File exists" (or "Not a directory")
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
