"""Trainer: resume after a kill, the NaN guard, the options, DDP with gloo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest
import torch
from safetensors.torch import load_file

import genzoo
from genzoo.config import ConfigError, build
from genzoo.models.base import GenerativeModel
from genzoo.train_config import TrainConfig
from genzoo.training import TrainingError
from genzoo.training.devices import Distributed
from genzoo.training.loop import Loop

AE_TINY = ["--set", "channels=4", "--set", "latent_dim=4"]


def genzoo_cmd(*args, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "genzoo", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def weights(run):
    return load_file(str(run / "model.safetensors"))


def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
    common = ["train", "vae", "--data", "embedded", "--steps", "200", "--batch-size", "16", "--device", "cpu",
              "--set", "channels=4", "--set", "latent_dim=4", "--set", "checkpoint_minutes=0"]
    full = genzoo_cmd(*common, "--out", str(tmp_path / "full"))
    assert full.wait(timeout=300) == 0, full.stdout.read()

    killed = genzoo_cmd(*common, "--out", str(tmp_path / "killed"))
    checkpoint = tmp_path / "killed" / "checkpoint.pt"  # written after every step here
    deadline = time.time() + 120
    while time.time() < deadline and not checkpoint.exists():
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)  # no chance to clean up: only the checkpoints on disk survive
    killed.wait()
    state = torch.load(checkpoint, weights_only=True)
    assert 0 < state["step"] < 200, "the kill should land mid-run"

    resumed = genzoo_cmd("train", "vae", "--out", str(tmp_path / "killed"), "--resume", "--device", "cpu")
    assert resumed.wait(timeout=300) == 0, resumed.stdout.read()
    a, b = weights(tmp_path / "full"), weights(tmp_path / "killed")
    for key in a:
        assert torch.equal(a[key], b[key]), key
    steps = [r["step"] for r in genzoo.runs.read_metrics_log(tmp_path / "killed") if "loss" in r]
    assert steps == sorted(set(steps)), "no step is logged twice after a resume"


def test_sigterm_checkpoints_and_says_how_to_resume(tmp_path):
    run = tmp_path / "run"
    proc = genzoo_cmd("train", "ae", "--data", "embedded", "--epochs", "50", "--batch-size", "16", "--device", "cpu",
                      *AE_TINY, "--out", str(run))
    log = run / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not log.exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 128 + signal.SIGTERM, output  # checkpointed, then ended as a SIGTERM asks
    step = torch.load(run / "checkpoint.pt", weights_only=True)["step"]
    assert f"stopped by SIGTERM at step {step}/" in output
    assert f"genzoo train ae --out {run} --resume" in output


@dataclass
class ExplodingConfig:
    explode_at: int = 3


class Exploding(GenerativeModel):
    """A model whose loss turns NaN after a few steps."""

    name = "exploding"
    Config = ExplodingConfig

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        self.w = torch.nn.Parameter(torch.ones(1))
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def loss(self, x, y=None, *, step=None):
        self.calls += self.training  # training steps only, not the test pass at epoch ends
        bad = torch.tensor(float("nan")) if self.calls > self.config.explode_at else torch.tensor(1.0)
        return {"loss": (self.w * x.mean() - 1).pow(2) * bad}

    def sample(self, n, *, y=None, generator=None):
        return self.rand(n, 1, 28, 28, generator=generator)


def test_nan_loss_stops_with_message_and_keeps_checkpoint(tiny, tmp_path):
    with pytest.raises(
        TrainingError, match=r"exploding: loss=nan at step 4; training stopped. The last good checkpoint \(step 3\)"
    ):
        genzoo.train(Exploding(), data=tiny, out=tmp_path, device="cpu", progress=False,
                     train_overrides={"steps": 10, "epochs": 0, "batch_size": 128, "checkpoint_minutes": 0})
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 3


def test_nan_between_checks_names_its_step_and_keeps_the_checkpoint_before_it(tiny, tmp_path):
    # Values are read from the device only at log points and before checkpoints (here the epoch
    # ends, steps 8 and 16): the NaN of step 11 is found at step 16, named as step 11, and
    # the checkpoint of step 8 is the one on disk.
    with pytest.raises(
        TrainingError, match=r"loss=nan at step 11; training stopped. The last good checkpoint \(step 8\)"
    ):
        genzoo.train(Exploding(explode_at=10), data=tiny, out=tmp_path, device="cpu", progress=False,
                     train_overrides={"steps": 24, "epochs": 0, "batch_size": 32, "log_every": 100, "sample_every": 0})
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 8
    assert [r["step"] for r in genzoo.runs.read_metrics_log(tmp_path) if "loss" in r] == [8]


def test_resuming_a_finished_run_leaves_it_as_it_was(tiny, tmp_path):
    train = {"steps": 4, "epochs": 0, "batch_size": 64, "log_every": 2, "sample_every": 0}
    genzoo.train("ae", data=tiny, out=tmp_path, device="cpu", progress=False, train_overrides=train,
                 model_overrides={"channels": 4, "latent_dim": 4})
    log = (tmp_path / "metrics.jsonl").read_text()
    assert '"event": "end"' in log
    genzoo.train("ae", data=tiny, out=tmp_path, device="cpu", progress=False, resume=True)
    assert (tmp_path / "metrics.jsonl").read_text() == log


def test_train_or_resume_continues_a_run_with_a_checkpoint_and_starts_one_without(tiny, tmp_path):
    from genzoo.trainer import train_or_resume

    kw = {"device": "cpu", "progress": False, "model_overrides": {"channels": 4, "latent_dim": 4}}
    train = {"steps": 4, "epochs": 0, "batch_size": 64, "sample_every": 0}
    train_or_resume("ae", tiny, tmp_path, train_overrides=train, **kw)  # no checkpoint: a fresh run
    log = (tmp_path / "metrics.jsonl").read_text()
    train_or_resume("ae", tiny, tmp_path, train_overrides={**train, "steps": 8}, **kw)  # continued as configured
    assert (tmp_path / "metrics.jsonl").read_text() == log
    train_or_resume("ae", tiny, tmp_path, resume=False, train_overrides={**train, "steps": 8}, **kw)
    assert genzoo.runs.read_config(tmp_path)["train"]["steps"] == 8


def test_bad_options_list_valid_keys(tiny, tmp_path):
    with pytest.raises(ConfigError, match=r"ae: unknown key 'latent'; valid keys: latent_dim=16, channels=32"):
        genzoo.train("ae", data=tiny, out=tmp_path, model_overrides={"latent": "3"})
    with pytest.raises(ConfigError, match=r"latent_dim='x': expected int"):
        genzoo.create("ae", latent_dim="x")
    with pytest.raises(ConfigError, match=r"latent_dim=0: must be > 0"):
        genzoo.create("vae", latent_dim=0)
    with pytest.raises(ConfigError, match=r"loss='l1': must be one of bce, mse"):
        genzoo.create("ae", loss="l1")
    with pytest.raises(ConfigError, match=r"trainer: unknown key 'epoch'"):
        genzoo.train("ae", data=tiny, out=tmp_path, train_overrides={"epoch": 1})


def test_cosine_schedule_and_warmup():
    from genzoo.training.schedule import lr_factor

    f = lr_factor(TrainConfig(schedule="cosine", warmup_steps=10), 110)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5) and f(110) == pytest.approx(0.0, abs=1e-12)


def test_ddp_two_processes_match_one(tmp_path):
    """2 gloo processes, each on half of every global batch, give the weights of one process."""
    common = ["train", "ae", "--data", "embedded", "--steps", "8", "--batch-size", "32", "--device", "cpu",
              "--set", "channels=4", "--set", "latent_dim=4", "--set", "sample_every=0"]
    single = genzoo_cmd(*common, "--out", str(tmp_path / "one"))
    assert single.wait(timeout=300) == 0, single.stdout.read()
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
                          "-m", "genzoo", *common, "--out", str(tmp_path / "two")],
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stdout + ddp.stderr
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    # Parameters must agree; buffers are statistics of each rank's own codes (DDP keeps rank 0's).
    for key, _ in genzoo.create("ae", channels=4, latent_dim=4).named_parameters():
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)
    end = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()][-1]
    assert end["world_size"] == 2


def test_test_pass_logs_the_exact_test_nll_of_a_pixel_model(tiny, tmp_path):
    # A pixel model's test_loss is its exact NLL on the fixed binarization: the figure logged at the
    # last epoch end must equal log_prob of the saved (final) weights, computed here independently.
    from genzoo.data import fixed_binarization

    genzoo.train("pixelcnn", data=tiny, out=tmp_path, device="cpu", progress=False,
                 model_overrides={"gated": True, "channels": 8, "n_layers": 1, "head_channels": 8},
                 train_overrides={"epochs": 2, "batch_size": 32, "sample_every": 0, "test_images": 40})
    tests = [r for r in genzoo.runs.read_metrics_log(tmp_path) if "test_loss" in r]
    assert [r["epoch"] for r in tests] == [1, 2] and all(r["test_images"] == 40 for r in tests)
    model = genzoo.load(tmp_path, device="cpu").eval()
    with torch.no_grad():
        nll = -model.log_prob(fixed_binarization(tiny.test_x[:40])).double().mean().item()
    assert tests[-1]["test_loss"] == pytest.approx(nll, rel=1e-5)
    assert tests[-1]["test_loss"] < tests[0]["test_loss"]


def test_test_pass_repeats_and_leaves_training_as_it_was(tiny, tmp_path):
    # The denoising autoencoder's loss draws noise: a test pass that took its noise from the
    # training RNG would change every later batch's corruption, and so the weights.
    def run(out, test_every):
        genzoo.train("dae", data=tiny, out=out, device="cpu", progress=False,
                     model_overrides={"channels": 4, "latent_dim": 4},
                     train_overrides={"epochs": 3, "batch_size": 64, "sample_every": 0, "test_every": test_every})
        return weights(out), [r for r in genzoo.runs.read_metrics_log(out) if "test_loss" in r]

    plain, no_tests = run(tmp_path / "plain", 0)
    tested, tests = run(tmp_path / "tested", 1)
    _, tests_again = run(tmp_path / "again", 1)
    assert no_tests == [] and [r["epoch"] for r in tests] == [1, 2, 3]
    for key in plain:
        assert torch.equal(plain[key], tested[key]), key
    assert [r["test_loss"] for r in tests] == [r["test_loss"] for r in tests_again]


def test_a_finished_run_trained_for_longer_matches_a_run_of_that_length(tiny, tmp_path):
    # Constant schedule: 2 epochs, then --resume to 4, must be the 4-epoch run bit for bit.
    kw = {"device": "cpu", "progress": False, "model_overrides": {"channels": 4, "latent_dim": 4}}
    train = {"batch_size": 64, "sample_every": 0, "schedule": "constant"}
    genzoo.train("vae", data=tiny, out=tmp_path / "four", train_overrides={**train, "epochs": 4}, **kw)
    genzoo.train("vae", data=tiny, out=tmp_path / "two", train_overrides={**train, "epochs": 2}, **kw)
    genzoo.train("vae", data=tiny, out=tmp_path / "two", resume=True, train_overrides={"epochs": 4},
                 device="cpu", progress=False)
    a, b = weights(tmp_path / "four"), weights(tmp_path / "two")
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert genzoo.runs.read_config(tmp_path / "two")["train"]["epochs"] == 4
    test_epochs = [r["epoch"] for r in genzoo.runs.read_metrics_log(tmp_path / "two") if "test_loss" in r]
    assert test_epochs == [1, 2, 3, 4]
    with pytest.raises(TrainingError, match=r"at step 16, past the 12 steps that epochs=3 make"):
        genzoo.train("vae", data=tiny, out=tmp_path / "two", resume=True, train_overrides={"epochs": 3})
    with pytest.raises(TrainingError, match="drop lr"):
        genzoo.train("vae", data=tiny, out=tmp_path / "two", resume=True, train_overrides={"epochs": 6, "lr": 0.1})


def test_lengthening_a_cosine_run_follows_the_new_schedule_and_says_so(tiny, tmp_path, capsys):
    from genzoo.training.schedule import lr_factor

    train = {"epochs": 2, "batch_size": 64, "sample_every": 0, "log_every": 1, "schedule": "cosine", "lr": 0.01}
    genzoo.train("ae", data=tiny, out=tmp_path, device="cpu", progress=False, train_overrides=train,
                 model_overrides={"channels": 4, "latent_dim": 4})
    genzoo.train(
        "ae", data=tiny, out=tmp_path, device="cpu", progress=False, resume=True, train_overrides={"epochs": 4}
    )
    assert "training to step 16 instead of 8 (now at step 8); the cosine schedule now spans 16 steps: " \
           "the learning rate goes from 0 to 0.005" in capsys.readouterr().err
    cfg = genzoo.config.build(genzoo.train_config.TrainConfig, genzoo.runs.read_config(tmp_path)["train"])
    logged = {r["step"]: r["lr"] for r in genzoo.runs.read_metrics_log(tmp_path) if "lr" in r}
    for step in range(9, 17):  # the rate after each step of the lengthened part: the 16-step cosine
        assert logged[step] == pytest.approx(0.01 * lr_factor(cfg, 16)(step))


def test_the_first_step_of_a_lengthened_run_takes_the_new_rate(tiny, tmp_path):
    # The finished 8-step cosine run ends at rate 0; were that rate kept for the first new step,
    # one more step (to 9) would leave the weights as they were.
    train = {"epochs": 2, "batch_size": 64, "sample_every": 0, "schedule": "cosine", "lr": 0.01}
    genzoo.train("ae", data=tiny, out=tmp_path, device="cpu", progress=False, train_overrides=train,
                 model_overrides={"channels": 4, "latent_dim": 4})
    before = weights(tmp_path)
    genzoo.train("ae", data=tiny, out=tmp_path, device="cpu", progress=False, resume=True,
                 train_overrides={"steps": 9, "epochs": 0})
    after = weights(tmp_path)
    assert not torch.equal(before["encoder.net.0.weight"], after["encoder.net.0.weight"])


def test_resume_survives_a_torn_last_line_of_the_log(tiny, tmp_path):
    kw = {"device": "cpu", "progress": False}
    genzoo.train("ae", data=tiny, out=tmp_path, model_overrides={"channels": 4, "latent_dim": 4}, **kw,
                 train_overrides={"steps": 4, "epochs": 0, "batch_size": 64, "log_every": 1, "sample_every": 0})
    log = tmp_path / "metrics.jsonl"
    whole = log.read_text()
    log.write_text(whole + '{"loss": 0.31, "st')  # a kill in the middle of a write
    assert genzoo.runs.read_metrics_log(tmp_path) == [json.loads(line) for line in whole.splitlines()]
    genzoo.train("ae", data=tiny, out=tmp_path, resume=True, train_overrides={"steps": 6}, **kw)
    records = [json.loads(line) for line in log.read_text().splitlines()]  # every line whole again
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert records[-1]["event"] == "end" and records[-1]["step"] == 6
    log.write_text('{"step": 1\n' + log.read_text())  # a bad line before the last is damage, not a kill
    with pytest.raises(genzoo.runs.RunError, match=r"metrics.jsonl: line 1 is not valid JSON"):
        genzoo.runs.read_metrics_log(tmp_path)


@dataclass
class NaNGradientConfig:
    nan_from: int = 3


class NaNGradient(GenerativeModel):
    """A finite loss whose gradient is NaN from step `nan_from` on: sqrt(v * 0) is 0, its derivative inf * 0."""

    name = "nan-gradient"
    Config = NaNGradientConfig

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        self.w = torch.nn.Parameter(torch.ones(1))
        self.v = torch.nn.Parameter(torch.ones(1))

    def loss(self, x, y=None, *, step=None):
        loss = (self.w * x.mean() - 1).pow(2)
        if step is not None and step >= self.config.nan_from:
            loss = loss + torch.sqrt(self.v * 0)
        return {"loss": loss}

    def sample(self, n, *, y=None, generator=None):
        return self.rand(n, 1, 28, 28, generator=generator)


def test_nan_gradients_stop_training_before_a_checkpoint_holds_them(tiny, tmp_path):
    with pytest.raises(TrainingError, match=r"nan-gradient: non-finite weights \(v\) after step 4, whose losses were "
                                            r"finite; training stopped. The last good checkpoint \(step 3\) is kept in "
                                            r".*Start afresh with --overwrite and a lower --lr \(this run: 0.001\) "
                                            r"or --set grad_clip=1$"):
        genzoo.train(NaNGradient(), data=tiny, out=tmp_path, device="cpu", progress=False,
                     train_overrides={"steps": 10, "epochs": 0, "batch_size": 128, "checkpoint_minutes": 0})
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["step"] == 3 and all(torch.isfinite(v).all() for v in state["model"].values())
    assert all(torch.isfinite(v).all() for v in weights(tmp_path).values())


def test_a_nan_before_any_checkpoint_says_there_is_none(tiny, tmp_path):
    """`--lr 1e6 --steps 2` in the issue: no checkpoint exists, so none is said to be kept; on a CPU there is no
    autocast, so no amp advice; the way out is --overwrite (a plain rerun is refused: the folder holds a run)."""
    with pytest.raises(TrainingError) as stopped:
        genzoo.train(Exploding(explode_at=0), data=tiny, out=tmp_path, device="cpu", progress=False,
                     train_overrides={"steps": 10, "epochs": 0, "batch_size": 128, "log_every": 100, "lr": 1e6})
    message = str(stopped.value)
    assert message.startswith(f"exploding: loss=nan at step 1; training stopped. No checkpoint was written yet, so "
                              f"{tmp_path} has nothing to resume from. Start afresh with --overwrite and a lower --lr "
                              "(this run: 1e+06) or --set grad_clip=1")
    assert "amp" not in message and "step -1" not in message
    assert not (tmp_path / "checkpoint.pt").exists()


def test_a_run_shorter_than_the_test_set_scores_as_many_test_digits_as_it_trains_on(tiny, tmp_path, capsys):
    genzoo.train("ae", data=tiny, out=tmp_path, device="cpu", progress=False,
                 model_overrides={"channels": 4, "latent_dim": 4},
                 train_overrides={"steps": 3, "epochs": 0, "batch_size": 16, "sample_every": 0})
    err = capsys.readouterr().err
    assert "this run trains on 48 images, fewer than the 64 test digits: its test pass scores 48" in err
    (test,) = [r for r in genzoo.runs.read_metrics_log(tmp_path) if "test_loss" in r]
    assert test["test_images"] == 48
    spread = tiny.test_x[torch.linspace(0, 63, 48).long()]  # evenly over the test set
    model = genzoo.load(tmp_path)
    with torch.no_grad():
        expected = sum(model.loss(part)["loss"].item() * len(part) for part in spread.split(16)) / 48
    assert test["test_loss"] == pytest.approx(expected, rel=1e-6)


def test_a_signal_during_the_pictures_skips_them_and_resume_makes_them(tiny, tmp_path, monkeypatch, capsys):
    from genzoo.models.ae import Autoencoder

    calls, made = [], []

    def pictures(self, data):
        calls.append(data)
        if len(calls) == 1:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C while the pictures are drawn: they stop at once
        made.append(data)
        return {}

    monkeypatch.setattr(Autoencoder, "pictures", pictures)
    kw = {"device": "cpu", "progress": False}
    with pytest.raises(KeyboardInterrupt):
        genzoo.train("ae", data=tiny, out=tmp_path, model_overrides={"channels": 4, "latent_dim": 4}, **kw,
                     train_overrides={"steps": 2, "epochs": 0, "batch_size": 64, "sample_every": 0, "test_every": 0})
    assert made == []
    assert f"stopped by SIGINT at step 2/2 during the pictures (checkpointed); the pictures were skipped; make them " \
           f"with: genzoo train ae --out {tmp_path} --resume" in capsys.readouterr().err
    log = genzoo.runs.read_metrics_log(tmp_path)
    assert log[-1] == {"event": "pictures_skipped", "step": 2} and log[-2]["event"] == "end"
    genzoo.train("ae", data=tiny, out=tmp_path, resume=True, **kw)
    assert len(made) == 1  # the resumed finished run made its pictures
    assert genzoo.runs.read_metrics_log(tmp_path) == log[:-1]


def test_sigterm_during_the_test_pass_stops_within_seconds_with_the_checkpoint_kept(tmp_path):
    run = tmp_path / "run"
    # 500 test digits one at a time through the default PixelCNN: a test pass of many seconds.
    proc = genzoo_cmd("train", "pixelcnn", "--data", "embedded", "--steps", "2", "--batch-size", "1", "--device", "cpu",
                      "--set", "sample_every=0", "--set", "test_images=500", "--out", str(run))
    checkpoint = run / "checkpoint.pt"  # written at the last step, before the test pass
    deadline = time.time() + 120
    while time.time() < deadline and not checkpoint.exists():
        time.sleep(0.05)
    time.sleep(1.0)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=60)[0]
    assert time.monotonic() - sent < 10, output
    assert proc.returncode == 128 + signal.SIGTERM, output
    assert "stopped by SIGTERM at step 2/2 during the test pass (checkpointed)" in output
    assert torch.load(checkpoint, weights_only=True)["step"] == 2
    assert all(torch.isfinite(v).all() for v in weights(run).values())
    assert not [r for r in genzoo.runs.read_metrics_log(run) if "test_loss" in r]


def test_ddp_resume_of_a_noise_drawing_model_is_exact(tmp_path):
    """2 gloo processes training a VAE (each rank draws its own noise): 8 steps straight, or 4 then --resume to 8."""
    common = ["--data", "embedded", "--batch-size", "32", "--device", "cpu", "--set", "channels=4",
              "--set", "latent_dim=4", "--set", "sample_every=0", "--set", "test_every=0",
              "--set", "schedule=constant"]  # the rate of a 4-step run then is that of the 8-step one

    def torchrun(*args):
        done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                               "--master_port=29518", "-m", "genzoo", "train", "vae", *args],
                              env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr

    torchrun(*common, "--steps", "8", "--out", str(tmp_path / "straight"))
    torchrun(*common, "--steps", "4", "--out", str(tmp_path / "resumed"))
    torchrun("--out", str(tmp_path / "resumed"), "--resume", "--steps", "8", "--device", "cpu")
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert len(torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["rng_ranks"]) == 2


# ---------------------------------------------------------------------------- honest progress (issue 25)

AE_SMALL = {"device": "cpu", "model_overrides": {"channels": 4, "latent_dim": 4}}


def test_progress_without_a_terminal_is_a_line_per_five_percent(capsys):
    from genzoo.training import progress

    with progress.bar(200, "work", "image", enabled=True) as bar:  # pytest's stderr is not a terminal
        for _ in range(200):
            bar.update(1)
    lines = capsys.readouterr().err.splitlines()
    assert 19 <= len(lines) <= 21 and "\r" not in "".join(lines)
    assert lines[0].startswith("work:   5% 10/200 image (") and "left" in lines[0]
    assert lines[-1].startswith("work: 100% 200/200 image (")


def test_the_bar_rate_leaves_out_the_epoch_pictures(tiny, tmp_path, monkeypatch, capsys):
    """`rbm --steps 2` ended at "32.54s/step" for 0.4 s steps: the epoch's picture counted as training."""
    from genzoo.training import loop as training_loop

    real = training_loop.write_sample_grid

    def slow_grid(*args, **kwargs):
        time.sleep(3)
        return real(*args, **kwargs)

    monkeypatch.setattr(training_loop, "write_sample_grid", slow_grid)
    genzoo.train("ae", data=tiny, out=tmp_path, train_overrides={"steps": 2, "epochs": 0, "batch_size": 8,
                                                                 "test_every": 0, "n_grid": 4}, **AE_SMALL)
    (last,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ae: 100% 2/2 step")]
    elapsed = last.split("(")[1].split(" elapsed")[0]  # mm:ss, rounded down
    shown = int(elapsed.split(":")[0]) * 60 + int(elapsed.split(":")[1])
    # the log line at step 2 is written before the epoch's grid: its time is the two steps' (from the same start)
    (logged,) = [r["time"] for r in genzoo.runs.read_metrics_log(tmp_path) if r.get("step") == 2 and "loss" in r]
    assert shown <= logged + 1, f"{last}; the steps took {logged:.1f} s, the grid 3 s more"


def test_a_time_budgeted_run_shows_its_budget_and_ends_without_alarm(tiny, tmp_path, capsys):
    genzoo.train("ae", data=tiny, out=tmp_path, train_overrides={"epochs": 50, "batch_size": 8, "time_budget": 1e-9,
                                                                 "sample_every": 0, "test_every": 0}, **AE_SMALL)
    err = capsys.readouterr().err
    assert "s of its time budget" in err and "/1600 step" not in err  # 50 epochs of 32 steps: never shown
    assert f"genzoo: ae: trained for its time budget of 1e-09 s: 1 steps (0.0312 epochs), checkpointed in {tmp_path}" \
        in err
    assert f"To train it for longer: genzoo train ae --out {tmp_path} --resume --time-budget" in err
    assert "time budget reached at step" not in err


def test_the_first_log_line_after_a_resume_averages_the_whole_window(tiny, tmp_path):
    """A run stopped at step 1 and resumed logs at step 3 the mean of steps 1-3, as an uninterrupted run does."""
    train = {"steps": 6, "epochs": 0, "batch_size": 8, "log_every": 3, "sample_every": 0, "test_every": 0}
    genzoo.train("ae", data=tiny, out=tmp_path / "full", progress=False, train_overrides=train, **AE_SMALL)
    genzoo.train("ae", data=tiny, out=tmp_path / "cut", progress=False,
                 train_overrides={**train, "time_budget": 1e-9}, **AE_SMALL)  # stops, checkpointed, after step 1
    genzoo.train("ae", data=tiny, out=tmp_path / "cut", progress=False, resume=True, device="cpu",
                 train_overrides={"time_budget": 0.0})

    def lines(run):
        return {r["step"]: r["loss"] for r in genzoo.runs.read_metrics_log(run) if "loss" in r and "event" not in r}

    full, cut = lines(tmp_path / "full"), lines(tmp_path / "cut")
    assert set(full) == set(cut) == {3, 6}
    assert cut[3] == full[3] and cut[6] == full[6]


def test_gmm_counts_em_iterations_and_refuses_steps(tiny, tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"gmm: does not use the trainer's steps: EM counts iterations, not steps: "
                                          r"--set max_iter=N"):
        genzoo.train("gmm", data=tiny, out=tmp_path / "steps", device="cpu", train_overrides={"steps": 5})
    genzoo.train("gmm", data=tiny, out=tmp_path / "gmm", device="cpu",
                 model_overrides={"n_components": 2, "pca_dim": 5, "max_iter": 4, "tol": 0.0})
    err = capsys.readouterr().err
    assert "genzoo: fitting gmm on 256 images, EM, at most 4 iterations (--set max_iter=N)" in err
    assert "gmm: EM: 100% 4/4 iteration" in err
    (end,) = [r for r in genzoo.runs.read_metrics_log(tmp_path / "gmm") if r.get("event") == "end"]
    assert end["em_iterations"] == 4 and end["fit"] == "EM" and end["steps_this_session"] == 0
    assert end["images_per_s"] == pytest.approx(256 / end["train_seconds"], rel=0.01)


@pytest.mark.parametrize("grad_clip", [0.0, 0.05])
def test_the_optimizer_steps_on_gradients_clipped_to_grad_clip(tiny, tmp_path, grad_clip):
    """`grad_clip`: the global gradient norm the optimizer sees is at most grad_clip (0: the gradients untouched)."""
    torch.manual_seed(0)
    model = genzoo.create("ae", channels=4, latent_dim=4)
    cfg = build(TrainConfig, {"batch_size": 16, "grad_clip": grad_clip, "sample_every": 0, "test_every": 0},
                owner="trainer")
    loop = Loop(model, cfg, tiny, tmp_path, torch.device("cpu"), 0, Distributed(torch.device("cpu")), False)
    seen = []

    def norm_before_step(optimizer, args, kwargs):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        seen.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))

    loop.optimizers["model"].register_step_pre_hook(norm_before_step)
    for step in range(3):
        loop.train_step(*loop.batches.at(step))
    if grad_clip:
        assert all(n <= grad_clip * (1 + 1e-4) for n in seen) and max(seen) > 0.9 * grad_clip
    else:
        assert min(seen) > 0.05  # unclipped: far above the other case's bound, so that the bound is not trivial
