"""Long work on a laptop: budgeted evaluations, evaluations that resume, one writer per run folder, a full disk,
sample files of any size in bounded memory."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import genzoo
from genzoo import defaults, runlock, runs
from genzoo.cli import main
from genzoo.evaluation import evaluate

SRC = str(Path(genzoo.__file__).resolve().parents[1])


def python(code: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    return genzoo.train("vae", data="embedded", out=tmp_path_factory.mktemp("long") / "vae", device="cpu", seed=0,
                        progress=False, model_overrides={"arch": "mlp", "hidden": 64, "latent_dim": 4},
                        train_overrides={"steps": 20, "epochs": 0, "batch_size": 64, "sample_every": 0,
                                         "test_every": 0})


@pytest.fixture(scope="module")
def rbm_run(tmp_path_factory):
    return genzoo.train("rbm", data="embedded", out=tmp_path_factory.mktemp("long") / "rbm", device="cpu",
                        progress=False, model_overrides={"n_hidden": 16, "persistent_chains": 16, "gibbs_steps": 5},
                        train_overrides={"steps": 5, "epochs": 0, "batch_size": 32, "sample_every": 0})


# ---------------------------------------------------------------------------- the budget


def test_the_budget_plan_fits_its_seconds_and_keeps_what_was_given():
    """IWAE: at 50 us per decode, 300 s (85 % usable, half for the likelihood) cannot score 10,000 digits with
    K >= 1000; on 2,000 digits K = (127.5 - ELBO) / (2000 * 5e-5); the samples take the rest."""
    costs = {"decode": 5e-5, "elbo": 1e-4, "sample": 1e-3, "scoring": 2.0}
    own = {"max_test": 0, "random_subset": False, "iwae_k": 5000, "ais_betas": 0, "ais_runs": 0, "n_samples": 10_000}
    none = dict.fromkeys(("max_test", "iwae_k", "ais_betas", "ais_runs", "n_samples"))
    plan = evaluate.plan_budget(costs, 300.0, 10_000, none, own)
    elbo = 1e-4 * (2000 + evaluate.ELBO_DRAWS * 10_000)
    k_10000 = (127.5 - 1e-4 * (10_000 + evaluate.ELBO_DRAWS * 10_000)) / (10_000 * 5e-5)
    assert k_10000 < evaluate.BUDGET_MIN_K
    assert plan["max_test"] == 2000 and plan["random_subset"] and plan["iwae_k"] == int((127.5 - elbo) / 0.1)
    likelihood = plan["iwae_k"] * 2000 * 5e-5 + elbo
    assert plan["n_samples"] == int((255 - likelihood - 2.0) / 1e-3) or plan["n_samples"] == 10_000
    assert evaluate.estimated_seconds(costs, plan, 10_000) <= 255 + 1e-6
    kept = evaluate.plan_budget(costs, 300.0, 10_000, {**none, "iwae_k": 7, "n_samples": 0}, own)
    assert kept["iwae_k"] == 7 and kept["n_samples"] == 0 and kept["max_test"] == 0  # all fit with K = 7
    # AIS: as many betas as fit in the whole usable budget (no samples asked), at most the paper's
    ais = evaluate.plan_budget({"ais_step": 0.05, "image": 1e-5}, 300.0, 10_000, {**none, "n_samples": 0}, own)
    assert ais["ais_betas"] == int((255 - 0.1) / 0.05)
    assert evaluate.plan_budget({"ais_step": 1e-6, "image": 0}, 300.0, 10_000, {**none, "n_samples": 0},
                                own)["ais_betas"] == 14500


def test_the_seconds_gone_before_the_plan_come_off_the_budget(vae_run, monkeypatch):
    """Loading and the timed probe are part of the budget: 100 s gone of 300, the plan is that of 200 s."""
    costs = {"decode": 5e-5, "elbo": 1e-4, "sample": 1e-3, "scoring": 2.0}
    monkeypatch.setattr(evaluate, "probe_costs", lambda *args, **kwargs: costs)
    model = runs.load(vae_run)
    given = dict.fromkeys(("max_test", "iwae_k", "ais_betas", "ais_runs", "n_samples", "n_edits"))
    plan, said = evaluate.choose_settings(model, torch.zeros(16, 1, 28, 28), 10_000, torch.device("cpu"), budget=300,
                                          protocol=None, given=given, started=time.perf_counter() - 100)
    own = {"max_test": 0, "random_subset": False, "iwae_k": model.config.iwae_k, "ais_betas": 0, "ais_runs": 0,
           "n_samples": 10_000, "n_edits": defaults.DEFAULT_EDITS}
    after_100 = evaluate.plan_budget(costs, 200.0, 10_000, given, own)  # a few ms more have gone: K within 1
    assert abs(plan.pop("iwae_k") - after_100.pop("iwae_k")) <= 1 and plan == after_100
    assert evaluate.plan_budget(costs, 300.0, 10_000, given, own)["max_test"] == 2000 != plan["max_test"]
    assert "after 100 s of loading and timing" in said


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="the process's start time is read from /proc")
def test_the_commands_start_up_comes_off_its_budget(vae_run, monkeypatch, capsys):
    """`genzoo evaluate`'s budget is the time the user waits: the seconds since its process started (Python and
    torch's import) are spent before the plan. The process age against a clock started before the process."""
    began = time.monotonic()
    code = "import time; time.sleep(1.5); from genzoo.cli import seconds_since_start; print(seconds_since_start())"
    age = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert 1.5 <= age <= time.monotonic() - began + 0.05  # clock ticks of 10 ms
    spent = []
    monkeypatch.setattr(evaluate, "probe_costs", lambda *args, **kwargs: {"decode": 5e-5, "elbo": 1e-4,
                                                                          "sample": 1e-3, "scoring": 2.0})
    monkeypatch.setattr("genzoo.cli.seconds_since_start", lambda: spent.append(100.0) or 100.0)
    called = time.monotonic()
    assert main(["evaluate", str(vae_run), "--budget", "300", "--device", "cpu", "--max-test", "16",
                 "--samples", "0"]) == 0
    gone = float(re.search(r"after (\d+) s of loading and timing", capsys.readouterr().err).group(1))
    assert spent == [100.0] and 100 <= gone <= 100 + time.monotonic() - called + 0.5


def test_an_editors_edits_fit_the_budget_in_whole_rounds_of_the_kinds():
    """Half of the 255 usable seconds go to the edits when samples are drawn too: a whole number of rounds of the
    23 edit kinds, at least one, at most DEFAULT_EDITS (ten rounds); the samples take what is left."""
    from genzoo.models.instruct.edits import KINDS

    assert len(KINDS) == 23 and defaults.DEFAULT_EDITS == 230
    none = dict.fromkeys(("max_test", "iwae_k", "ais_betas", "ais_runs", "n_samples", "n_edits"))
    own = {"max_test": 0, "random_subset": False, "iwae_k": 0, "ais_betas": 0, "ais_runs": 0, "n_samples": 10_000,
           "n_edits": 230}
    for edit, expected in ((0.5, 230), (2.0, 46), (20.0, 23)):  # 127.5 / (23 e) rounds: 11 -> 10, 2, 0 -> 1
        costs = {"edit": edit, "sample": 0.01, "scoring": 2.0}
        plan = evaluate.plan_budget(costs, 300.0, 10_000, none, own)
        assert plan["n_edits"] == expected, edit
        fit = (255 - 2.0 - edit * expected) / 0.01
        assert plan["n_samples"] == (int(min(10_000, fit)) if fit >= 200 else 0)
    slow = evaluate.plan_budget({"sample": 2.0, "scoring": 2.0}, 300.0, 10_000, none, own)
    assert slow["n_samples"] == 0  # 126 samples fit: under the 200 worth scoring, so none rather than overrun
    kept = evaluate.plan_budget({"edit": 20.0, "sample": 0.01}, 300.0, 10_000, {**none, "n_edits": 5}, own)
    assert kept["n_edits"] == 5


def test_a_sampler_too_slow_for_its_half_leaves_the_whole_budget_to_the_likelihood(rbm_run, tmp_path, monkeypatch,
                                                                                   capsys):
    """An RBM whose Gibbs sampler takes 2 s a sample: its half of the 255 usable seconds holds 62 samples, fewer
    than the 200 worth scoring, so none are drawn, and AIS takes the whole 255 s (5,098 betas at 0.05 s) rather
    than the likelihood's half (2,548) with the other half left idle."""
    costs = {"ais_step": 0.05, "image": 1e-5, "sample": 2.0, "scoring": 2.0}
    none = dict.fromkeys(("max_test", "iwae_k", "ais_betas", "ais_runs", "n_samples", "n_edits"))
    own = {"max_test": 0, "random_subset": False, "iwae_k": 0, "ais_betas": 1000, "ais_runs": 100,
           "n_samples": 10_000, "n_edits": defaults.DEFAULT_EDITS}
    plan = evaluate.plan_budget(costs, 300.0, 10_000, none, own)
    assert plan["n_samples"] == 0 and plan["ais_betas"] == int((255 - 1e-5 * 10_000) / 0.05) == 5098
    assert evaluate.estimated_seconds(costs, plan, 10_000) <= 255 + 1e-6
    # a sampler that fits 200 samples in its half keeps its half: 127.5 s less 2 s of scoring at 0.6 s a sample
    shared = evaluate.plan_budget({**costs, "sample": 0.6}, 300.0, 10_000, none, own)
    assert shared["ais_betas"] == int((127.5 - 0.1) / 0.05) and shared["n_samples"] >= 200
    monkeypatch.setattr(evaluate, "probe_costs", lambda *args, **kwargs: costs)
    metrics = evaluate.evaluate_run(shutil.copytree(rbm_run, tmp_path / "rbm"), device="cpu", budget=300, ais_runs=4)
    # embedded data: 500 test digits; the seconds of loading come off the budget first; 4 chains keep it quick
    assert metrics["settings"]["n_samples"] == 0 and "fid" not in metrics
    assert int((127.5 - 5e-3) / 0.05) < metrics["settings"]["ais"]["betas"] <= int((255 - 5e-3) / 0.05)
    assert ", 0 samples, about " in capsys.readouterr().err


def test_reconstructions_and_denoising_are_timed_and_fit_the_budget(monkeypatch):
    """A denoising autoencoder whose passes over a test image (the reconstruction and the three noise kinds) take
    30 ms: all 10,000 digits would take 300 s of the 255 usable. The probe times those passes on this machine, and
    the budget scores as many digits as its half holds (127.5 s: a random 4,250); the samples take the rest."""
    none = dict.fromkeys(("max_test", "iwae_k", "ais_betas", "ais_runs", "n_samples", "n_edits"))
    own = {"max_test": 0, "random_subset": False, "iwae_k": 0, "ais_betas": 0, "ais_runs": 0, "n_samples": 10_000,
           "n_edits": defaults.DEFAULT_EDITS}
    costs = {"scored": 0.03, "sample": 1e-3, "scoring": 2.0}
    plan = evaluate.plan_budget(costs, 300.0, 10_000, none, own)
    assert plan["max_test"] == int(127.5 / 0.03) == 4250 and plan["random_subset"]
    assert plan["n_samples"] == 10_000 and evaluate.estimated_seconds(costs, plan, 10_000) <= 255 + 1e-6
    assert evaluate.estimated_seconds(costs, {**plan, "max_test": 0}, 10_000) > 255
    assert evaluate.plan_budget({**costs, "scored": 1e-3}, 300.0, 10_000, none, own)["max_test"] == 0  # all fit
    model = genzoo.create("dae", channels=4, latent_dim=2)
    denoise = model.__class__.denoise

    def slow_denoise(self, noisy):
        time.sleep(1e-3 * len(noisy))  # 1 ms a digit, each of the three noise kinds
        return denoise(self, noisy)

    monkeypatch.setattr(model.__class__, "denoise", slow_denoise)
    probed = evaluate.probe_costs(model, torch.rand(200, 1, 28, 28), torch.device("cpu"), 100)
    assert probed["scored"] >= 3e-3


def test_a_default_evaluate_of_a_slow_model_keeps_to_its_budget(vae_run, monkeypatch, capsys):
    """A VAE whose decoder is made slow: the paper's protocol would take hours; the default budget of the command
    (here 8 s) chooses settings that end in about that time, and says both."""
    slow = runs.load(vae_run).__class__
    decode = slow.decode_logits

    def slow_decode(self, z):
        time.sleep(2e-6 * len(z))  # 2 ms per thousand codes decoded
        return decode(self, z)

    monkeypatch.setattr(slow, "decode_logits", slow_decode)
    start = time.perf_counter()
    assert main(["evaluate", str(vae_run), "--budget", "8", "--samples", "0", "--device", "cpu"]) == 0
    took = time.perf_counter() - start
    err = capsys.readouterr().err
    assert "settings for a 8 s budget on this machine (--budget): IWAE K=" in err
    assert "the paper's protocol (--protocol paper): IWAE K=5,000 on all 500 test digits, 0 samples, about " in err
    metrics = json.loads((vae_run / "metrics.json").read_text())
    assert metrics["settings"]["protocol"] == "budget" and metrics["settings"]["budget_seconds"] == 8.0
    assert metrics["nll_nats"]["se"] > 0 and metrics["settings"]["iwae_k"] < 5000
    assert took < 40  # the paper's K = 5,000 on 500 digits would decode for 2.5 M codes: minutes here


def test_a_budget_too_small_for_every_test_elbo_scores_the_subset_alone(vae_run, tmp_path, monkeypatch, capsys):
    """When the ELBO of every test image (ELBO_DRAWS each, for the whole set's NLL) does not fit, the plan does not
    overrun its budget for it: it scores a random subset's own NLL, the largest that allows K >= BUDGET_MIN_K.
    Embedded data: 500 test digits; 0.05 s an ELBO, 1 ms a decode, 255 usable seconds (no samples):
    whole-set estimates need 0.05 * (n + 5000) >= 255 s; the subset alone, 0.05 * 11 n + 1e-3 n K."""
    costs = {"decode": 1e-3, "elbo": 0.05}
    none = dict.fromkeys(("max_test", "iwae_k", "ais_betas", "ais_runs", "n_edits"))
    own = {"max_test": 0, "random_subset": False, "iwae_k": 5000, "ais_betas": 0, "ais_runs": 0, "n_samples": 0}
    plan = evaluate.plan_budget(costs, 300.0, 500, {**none, "n_samples": 0}, own)
    k_200 = int((255 - 0.05 * 200 * 11) / (1e-3 * 200))
    assert k_200 < evaluate.BUDGET_MIN_K
    assert plan["whole_test"] is False and plan["max_test"] == 100 and plan["random_subset"]
    assert plan["iwae_k"] == int((255 - 0.05 * 100 * 11) / (1e-3 * 100))
    assert evaluate.estimated_seconds(costs, plan, 500) <= 255 + 1e-6
    assert evaluate.estimated_seconds(costs, {**plan, "whole_test": True}, 500) > 255
    monkeypatch.setattr(evaluate, "probe_costs", lambda *args, **kwargs: costs)
    metrics = evaluate.evaluate_run(shutil.copytree(vae_run, tmp_path / "vae"), device="cpu", budget=300,
                                    n_samples=0)
    assert metrics["settings"]["whole_test"] is False and metrics["settings"]["test_images"] == 100
    # the seconds of loading and probing come off the budget first: a K a little below the plan's 2,000
    assert evaluate.BUDGET_MIN_K <= metrics["settings"]["iwae_k"] <= plan["iwae_k"]
    assert metrics["iwae_gap_nats"]["n"] == 100
    assert "nll_nats_whole_test" not in metrics
    said = capsys.readouterr().err
    assert "(their NLL only: the ELBO of every test digit, for the whole set's, does not fit)" in said


# ---------------------------------------------------------------------------- resuming


def _interrupt_after(monkeypatch, ticks: int) -> None:
    """Ctrl-C at the `ticks`-th batch of a long pass, after its partial state was written."""
    count = {"n": 0}
    tick = evaluate.PartialState.tick

    def interrupting(self):
        count["n"] += 1
        tick(self)
        if count["n"] == ticks:
            raise KeyboardInterrupt

    monkeypatch.setattr(evaluate.PartialState, "tick", interrupting)


def _numbers(metrics: dict) -> dict:
    skip = {"seconds", "evaluated_at", "sample_seconds_per_image", "sample_quality_seconds"}
    return {k: v for k, v in metrics.items() if k not in skip}


@pytest.mark.parametrize("ticks", [3, 12, 24])  # in the IWAE pass (twice), in the samples
def test_an_interrupted_evaluation_resumes_to_the_uninterrupted_numbers(vae_run, tmp_path, monkeypatch, ticks):
    settings = {"device": "cpu", "max_test": 120, "random_subset": True, "iwae_k": 30, "n_samples": 2000,
                "save_every": 0.0}
    monkeypatch.setattr(evaluate, "DECODED_PER_CALL", 300)  # 10 images a batch at K = 30: many batches
    whole = evaluate.evaluate_run(shutil.copytree(vae_run, tmp_path / "a"), **settings)
    run = shutil.copytree(vae_run, tmp_path / "b")
    with monkeypatch.context() as m:
        _interrupt_after(m, ticks)
        with pytest.raises(KeyboardInterrupt):
            evaluate.evaluate_run(run, **settings)
    partial = list((run / "evaluations").glob(".partial_*.pt"))
    assert len(partial) == 1 and runlock.holder(run) is None  # kept, and the lock given back
    resumed = evaluate.evaluate_run(run, **settings)
    assert _numbers(resumed) == _numbers(whole)
    assert not list((run / "evaluations").glob(".partial_*.pt"))


def test_an_interrupted_ais_resumes_to_the_uninterrupted_log_z(rbm_run, tmp_path, monkeypatch):
    settings = {"device": "cpu", "max_test": 50, "n_samples": 0, "ais_betas": 300, "ais_runs": 20,
                "save_every": 0.0}
    whole = evaluate.evaluate_run(shutil.copytree(rbm_run, tmp_path / "a"), **settings)
    run = shutil.copytree(rbm_run, tmp_path / "b")
    with monkeypatch.context() as m:
        _interrupt_after(m, 150)
        with pytest.raises(KeyboardInterrupt):
            evaluate.evaluate_run(run, **settings)
    state = torch.load(next((run / "evaluations").glob(".partial_*.pt")), weights_only=True)
    assert state["passes"]["AIS steps"]["step"] == 150
    resumed = evaluate.evaluate_run(run, **settings)
    assert resumed["log_z"] == whole["log_z"] and resumed["nll_nats"] == whole["nll_nats"]


def test_kill_9_then_the_same_command_gives_the_same_numbers(vae_run, tmp_path, monkeypatch):
    """A real kill -9 in the middle of the IWAE pass (its partial state saved every batch)."""
    monkeypatch.setattr(evaluate, "DECODED_PER_CALL", 2000)  # as in the killed process: the same batches
    a, b = shutil.copytree(vae_run, tmp_path / "a"), shutil.copytree(vae_run, tmp_path / "b")
    code = ("import sys, genzoo.evaluation.evaluate as e; e.DECODED_PER_CALL = 2000; "
            "e.evaluate_run(sys.argv[1], device='cpu', iwae_k=400, n_samples=0, max_test=200, save_every=0.0)")
    whole = evaluate.evaluate_run(a, device="cpu", iwae_k=400, n_samples=0, max_test=200)
    child = subprocess.Popen([sys.executable, "-c", code, str(b)], env={**os.environ, "PYTHONPATH": SRC},
                             stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:  # killed once part of the IWAE pass is kept
        found = list((b / "evaluations").glob(".partial_*.pt"))
        if found:
            try:
                if torch.load(found[0], weights_only=True)["passes"].get("log p(x)", {}).get("done", 0) >= 20:
                    break
            except (RuntimeError, EOFError, FileNotFoundError):
                pass
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert runlock.holder(b) is None  # the kernel dropped the dead process's lock
    resumed = evaluate.evaluate_run(b, device="cpu", iwae_k=400, n_samples=0, max_test=200)
    assert _numbers(resumed) == _numbers(whole)


# ---------------------------------------------------------------------------- one writer per run folder


def test_a_second_trainer_is_refused_with_the_holders_pid_and_command(tmp_path, capsys):
    run = tmp_path / "twin"
    holder = python(f"import sys, time, genzoo.runlock as r; r.acquire({str(run)!r}, 'training'); "
                    "print('held', flush=True); time.sleep(60)")
    assert holder.stdout.readline().strip() == "held"
    try:
        assert main(["train", "ae", "--data", "embedded", "--steps", "1", "--out", str(run)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0
        assert f"{run}: in use by another process (PID {holder.pid} on " in err
        assert "`-c`" in err and f"kill {holder.pid}" in err
        assert not (run / "config.json").exists()  # nothing of the second run was written
        assert runlock.holder(run)["pid"] == holder.pid  # readers see who holds it, unblocked
    finally:
        holder.kill()
        holder.wait()
    # the holder died without giving the lock back: the next process takes it over and says so
    assert main(["train", "ae", "--data", "embedded", "--steps", "1", "--out", str(run), "--set",
                 "channels=4", "--set", "latent_dim=4"]) == 0
    err = capsys.readouterr().err
    assert f"genzoo: {run}: taking over the lock left by PID {holder.pid} on " in err and "no longer running" in err
    assert runlock.holder(run) is None and (run / "model.safetensors").exists()


def test_overwrite_keeps_the_lock_it_holds(tmp_path, monkeypatch):
    """`train --overwrite` empties the run folder while holding its lock: the lock file stays, so a third process
    that comes meanwhile is refused instead of locking a fresh file of the same name."""
    from genzoo import trainer

    run = tmp_path / "ae"
    args = ["train", "ae", "--data", "embedded", "--steps", "1", "--out", str(run), "--set", "channels=4",
            "--set", "latent_dim=4", "--device", "cpu"]
    assert main(args) == 0
    (run / "samples" / "old.png").write_bytes(b"old")
    seen = {}
    write_config = trainer.runs.write_config

    def meanwhile(run_dir, *rest):  # the folder just emptied, the new run not yet written
        seen["left"] = sorted(p.name for p in run_dir.rglob("*"))
        seen["holder"] = runlock.holder(run_dir)
        third = python(f"import genzoo.runlock as r\ntry:\n    r.acquire({str(run)!r}, 'training')\n"
                       "    print('took it')\nexcept r.RunBusyError as e:\n    print(e)")
        seen["third"] = third.communicate(timeout=120)[0].strip()
        return write_config(run_dir, *rest)

    monkeypatch.setattr(trainer.runs, "write_config", meanwhile)
    assert main([*args, "--overwrite"]) == 0
    assert seen["left"] == [runlock.LOCK, "samples"] and seen["holder"]["pid"] == os.getpid()
    assert seen["third"].startswith(f"{run}: in use by another process (PID {os.getpid()} on ")
    assert runlock.holder(run) is None and not (run / "samples" / "old.png").exists()


def test_one_process_may_nest_its_holds(tmp_path):
    with runlock.hold(tmp_path, "training"), runlock.hold(tmp_path, "evaluation"):
        assert runlock.holder(tmp_path)["pid"] == os.getpid()
    assert runlock.holder(tmp_path) is None


# ---------------------------------------------------------------------------- a full disk


def _full_disk_after(monkeypatch, path_part: str) -> None:
    """Writes through runs.write_atomic into a file named like `path_part` find no space left."""
    real_open = os.open

    def opening(path, flags, mode=0o777, **kwargs):
        fd = real_open(path, flags, mode, **kwargs)
        if path_part in str(path):
            os.close(fd)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return fd

    monkeypatch.setattr(runs.os, "open", opening)


def test_a_full_disk_ends_in_one_line_and_resume_continues(tmp_path, monkeypatch, capsys):
    run = tmp_path / "ae"
    args = ["train", "ae", "--data", "embedded", "--out", str(run), "--set", "channels=4", "--set", "latent_dim=4",
            "--device", "cpu", "--seed", "0"]
    assert main([*args, "--steps", "2"]) == 0
    weights = (run / "model.safetensors").read_bytes()
    checkpoint = (run / "checkpoint.pt").read_bytes()
    capsys.readouterr()
    with monkeypatch.context() as m:
        _full_disk_after(m, "model.safetensors")
        assert main(["train", "ae", "--out", str(run), "--resume", "--steps", "4"]) == 2
    out = capsys.readouterr().err
    err = out.strip().splitlines()[-1]  # after the progress lines, one line
    assert "Traceback" not in out
    size = len(runs.save_safetensors({k: v.contiguous() for k, v in runs.load(run).state_dict().items()}))
    assert err.startswith(f"genzoo train: error: {run / 'model.safetensors'}: no space left on the device to write "
                          f"it (the write needs about {size / 1000:,.1f} KB, ")
    assert (run / "model.safetensors").read_bytes() == weights and (run / "checkpoint.pt").read_bytes() == checkpoint
    assert not list(run.glob(".*.tmp"))
    assert main(["train", "ae", "--out", str(run), "--resume", "--steps", "4"]) == 0  # space freed
    assert runs.load_checkpoint(run / "checkpoint.pt")["step"] == 4


def test_a_full_disk_while_writing_an_evaluation_ends_in_one_line(vae_run, tmp_path, monkeypatch, capsys):
    run = shutil.copytree(vae_run, tmp_path / "vae")
    with monkeypatch.context() as m:
        _full_disk_after(m, "test50_samples0")
        assert main(["evaluate", str(run), "--max-test", "50", "--iwae-k", "10", "--samples", "0",
                     "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"genzoo evaluate: error: {run / 'evaluations' / 'test50_samples0_seed0_k10.json'}: no "
                          "space left on the device to write it (the write needs about ")
    assert main(["evaluate", str(run), "--max-test", "50", "--iwae-k", "10", "--samples", "0", "--device", "cpu"]) == 0


# ---------------------------------------------------------------------------- sample files of any size


def _peak_rss_mb(run: Path, n: int, out: Path) -> float:
    code = (f"import resource, genzoo.commands as c; c.sample({str(run)!r}, {n}, out={str(out)!r}, device='cpu'); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    child = python(code)
    stdout, stderr = child.communicate(timeout=600)
    assert child.returncode == 0, stderr
    return float(stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("suffix", [".npz", ".npy"])
def test_sample_files_stream_in_bounded_memory(vae_run, tmp_path, suffix):
    """200,000 digits are 157 MB as uint8: kept in memory (and concatenated once more) they would raise the peak by
    about twice that; streamed, the peak is that of 2,000 digits, within a few MB."""
    small = _peak_rss_mb(vae_run, 2_000, tmp_path / f"small{suffix}")
    large = _peak_rss_mb(vae_run, 200_000, tmp_path / f"large{suffix}")
    assert large - small < 40, (small, large)
    images = np.load(tmp_path / f"large{suffix}")
    images = images["images"] if suffix == ".npz" else images
    assert images.shape == (200_000, 28, 28) and images.dtype == np.uint8
    first = np.load(tmp_path / f"small{suffix}")
    first = first["images"] if suffix == ".npz" else first
    assert np.array_equal(images[:2_000], first)  # the same seeded draws, however many follow


# ---------------------------------------------------------------------------- budgeted estimates apart


def _evaluation(model: str, nll: float, fid: float, protocol: str, *, n: int = 10_000, k: int | None = None,
                kind: str = "exact") -> dict:
    """metrics.json as `evaluate` writes it: the likelihood on `n` test images, FID-style on 10,000 samples."""
    entry = {"value": nll, "n": n, "kind": kind, "likelihood_data": "binarized", **({"k": k} if k else {})}
    settings = {"test_images": n, "n_samples": 10_000, "seed": 0, "iwae_k": k, "random_subset": n < 10_000,
                "protocol": protocol, **({"budget_seconds": 300.0} if protocol == "budget" else {})}
    return {"model": model, "nll_nats": entry, "bits_per_dim": {**entry, "value": nll / 784 / 0.6931},
            "fid": {"value": fid, "n": 10_000}, "settings": settings, "hardware": "CPU", "evaluator_version": "v1",
            "seed": 0}


def test_budgeted_estimates_are_marked_and_never_ranked_against_paper_figures(tmp_path):
    """A budgeted PixelCNN measured exactly like the paper-protocol rows (all 10,000 digits, 10,000 samples) has the
    lowest NLL and FID-style score: it is marked and never bolded against them; the best paper figure is."""
    from genzoo.evaluation.leaderboard import leaderboard_row, row_label, table
    from genzoo.showcase.bench import leaderboard_markdown
    from genzoo.showcase.report import write_report

    paper_a = _evaluation("pixelcnn", 82.0, 5.0, "paper")
    paper_b = _evaluation("vae", 85.0, 9.0, "paper", k=5000, kind="estimate")
    budgeted = _evaluation("pixelrnn", 70.0, 1.0, "budget")
    rows = [leaderboard_row(Path(m["model"]), m) for m in (budgeted, paper_a, paper_b)]
    assert [r["protocol"] for r in rows] == ["budget", "paper", "paper"] and rows[0]["budget_seconds"] == 300.0
    assert row_label(rows[0]) == "pixelrnn (exact), budgeted 300 s"
    assert row_label(rows[2]) == "vae (estimate), paper protocol"
    assert row_label(leaderboard_row(Path("x"), {"model": "ae"})) == "ae"  # an evaluation before protocols: given
    columns, cells, notes = table(rows)
    at = {c.key: i for i, c in enumerate(columns)}
    for key, best_row in (("nll_nats_binarized", 1), ("fid", 1), ("bits_per_dim_binarized", 1)):
        assert [line[at[key]].best for line in cells] == [i == best_row for i in range(3)], key
        assert cells[0][at[key]].mark and not cells[1][at[key]].mark, key
    assert any("a time budget's settings" in note and "not ranked" in note for note in notes)
    assert any(note.startswith("budgeted:") and "--protocol paper" in note for note in notes)
    # one budgeted row against one paper row: the full evaluation is the reference, the budgeted one is marked
    columns, cells, _ = table(rows[:2])
    assert cells[0][at["fid"]].mark and not cells[0][at["fid"]].best and not cells[1][at["fid"]].mark
    # two budgeted rows rank against each other only
    other = leaderboard_row(Path("b"), _evaluation("gmm", 60.0, 3.0, "budget"))
    columns, cells, _ = table([rows[0], other, *rows[1:], leaderboard_row(Path("c"), paper_a)])
    fid = [line[at["fid"]] for line in cells]
    assert [c.best for c in fid] == [False, False, True, False, True] and fid[0].mark and fid[1].mark
    columns, cells, _ = table([rows[0], other])
    assert [line[at["fid"]].best for line in cells] == [True, False]
    meta = {"data": "mnist", "seed": 0, "budget": "none", "n_samples": 10_000, "evaluator_version": "v1",
            "hardware": "CPU", "date": "2026-12-07"}
    names = [line.split("|")[1].strip() for line in leaderboard_markdown(rows, meta).splitlines()
             if line.startswith("| ")]
    # the budgeted row last although its FID-style score is the lowest
    assert names == ["model", "pixelcnn (exact), paper protocol", "vae (estimate), paper protocol",
                     "pixelrnn (exact), budgeted 300 s"]
    folders = []
    for m in (budgeted, paper_a):
        folder = tmp_path / m["model"]
        (folder / "evaluations").mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({"model": m["model"], "hparams": {}, "train": {},
                                                        "data": "mnist", "seed": 0}))
        (folder / "evaluations" / "e.json").write_text(json.dumps(m))
        folders.append(folder)
    page = write_report(folders, tmp_path / "report").read_text()
    assert "pixelrnn (exact), budgeted 300 s</td>" in page and "pixelcnn (exact), paper protocol</td>" in page
    assert "<td>1.00*</td>" in page and "<td>5.00</td>" in page  # the budgeted FID-style marked, not ranked


# ---------------------------------------------------------------------------- a full disk: pictures and arrays


def test_a_full_disk_while_writing_a_picture_ends_in_one_line(vae_run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "grid.png"
    assert main(["sample", str(vae_run), "-n", "16", "--out", str(out), "--device", "cpu"]) == 0
    before = out.read_bytes()
    capsys.readouterr()
    with monkeypatch.context() as m:
        _full_disk_after(m, "grid.png")
        assert main(["sample", str(vae_run), "-n", "16", "--seed", "1", "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and err.count("\n") == 0
    # the PNG the command would have written, encoded here without a disk: its size is the one the line names
    images, _ = __import__("genzoo.commands", fromlist=["x"]).draw_in_batches(
        runs.load(vae_run), 16, None, torch.Generator().manual_seed(1), {})
    from io import BytesIO

    from PIL import Image

    from genzoo.images import grid
    picture = Image.fromarray(grid(images.float() / 255))
    picture = picture.resize((picture.width * 2, picture.height * 2), Image.NEAREST)
    encoded = BytesIO()
    picture.save(encoded, format="PNG")
    size = len(encoded.getvalue())
    assert 1000 <= size < 1_000_000
    assert err.startswith(f"genzoo sample: error: {out}: no space left on the device to write it (the write needs "
                          f"about {size / 1000:,.1f} KB, ")
    assert err.endswith(" free); the file as it was before is kept. Free some space and run the command again (a "
                        "training run continues from its last checkpoint with --resume)")
    assert out.read_bytes() == before and not list(tmp_path.glob(".*.tmp"))


def test_a_full_disk_while_a_figure_is_written_keeps_the_old_file(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from genzoo.images import save_pictures

    figure = Figure(figsize=(2, 2))
    figure.subplots().plot([0, 1], [1, 0])
    (path,) = save_pictures({"curve.svg": figure}, tmp_path)
    before = path.read_bytes()
    assert before.lstrip().startswith(b"<?xml")  # the suffix chose the format
    with monkeypatch.context() as m:
        _full_disk_after(m, "curve.svg")
        with pytest.raises(runs.DiskFullError, match=rf"^{path}: no space left on the device to write it \(the write "
                                                     r"needs about [\d.,]+ KB, "):
            save_pictures({"curve.svg": figure}, tmp_path)
    assert path.read_bytes() == before and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("suffix", [".npz", ".npy"])
def test_a_full_disk_while_streaming_samples_ends_in_one_line(vae_run, tmp_path, monkeypatch, capsys, suffix):
    """The disk fills after 3,000 digits of 5,000: one line naming the file and the size of the whole array, no
    half file left, an earlier file of that name kept."""
    from genzoo.commands import drawing

    out = tmp_path / f"digits{suffix}"
    out.write_bytes(b"earlier")
    stream = drawing._stream_images

    class Filling:
        def __init__(self, f):
            self.f, self.written = f, 0

        def write(self, data):
            self.written += len(data)
            if self.written > 3000 * 784:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

    monkeypatch.setattr(drawing, "_stream_images", lambda model, n, labels, g, options, f:
                        stream(model, n, labels, g, options, Filling(f)))
    assert main(["sample", str(vae_run), "-n", "5000", "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"genzoo sample: error: {out}: no space left on the device to write it (the write needs "
                          f"about {5000 * 784 / 1e6:.1f} MB, ")
    assert out.read_bytes() == b"earlier" and sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_a_slow_probe_call_is_not_repeated(monkeypatch):
    """A quick call is timed on its second run (the first pays for set-up); a slow one's first run is its time."""
    calls = []

    def fn(seconds):
        calls.append(seconds)
        time.sleep(seconds)

    monkeypatch.setattr(evaluate, "PROBE_ONCE_ABOVE", 0.2)
    assert 0.05 <= evaluate._timed(lambda: fn(0.05)) < 0.2 and calls == [0.05, 0.05]
    calls.clear()
    assert evaluate._timed(lambda: fn(0.3)) >= 0.3 and calls == [0.3]


class _FakeSampler:
    """What probe_costs asks of a model that only samples: each call sleeps `per_call` (a chain's steps) and
    `per_sample` a sample, the first call `set_up` more (a GAN's averaged generator setting its batch norms)."""

    log_prob_kind, has_elbo, can_edit, can_sample, conditional = None, False, False, True, False
    can_reconstruct = can_denoise = False

    def __init__(self, set_up: float, per_call: float, per_sample: float):
        self.set_up, self.per_call, self.per_sample, self.calls = set_up, per_call, per_sample, []

    def sample(self, n, *, y=None, generator=None):
        self.calls.append(n)
        time.sleep(self.per_call + self.per_sample * n + (self.set_up if len(self.calls) == 1 else 0.0))
        return torch.zeros(n, 1, 28, 28)


def test_a_one_time_set_up_in_the_first_draw_is_not_taken_for_a_slow_sampler(monkeypatch):
    """A first draw of 8 that takes 0.5 s of set-up: the sample's cost is that of later draws (10 ms), not 1/8 of
    the first (the budget would draw none); a sampler slow on every call keeps its cost over 8, one call more."""
    monkeypatch.setattr(evaluate, "PROBE_ONCE_ABOVE", 0.2)
    x, cpu = torch.zeros(16, 1, 28, 28), torch.device("cpu")
    set_up = _FakeSampler(set_up=0.5, per_call=0.0, per_sample=0.01)
    assert 0.01 <= evaluate.probe_costs(set_up, x, cpu, 100)["sample"] < 0.03 and set_up.calls[0] == 8
    slow = _FakeSampler(set_up=0.0, per_call=0.4, per_sample=0.0)  # a Gibbs chain: as long for 1 sample as for 8
    assert 0.05 <= evaluate.probe_costs(slow, x, cpu, 100)["sample"] < 0.1 and slow.calls == [8, 1]
