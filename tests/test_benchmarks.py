"""The benchmarks' recipes are valid: each builds its model and trainer config and runs a forward pass.

A typo in a recipe would otherwise show only on the GPU, part-way through a benchmark
call of a session's limited device time. The PyTorch-GAN reference of the DCGAN comparison
is checked too: its networks have the published sizes, its resizing keeps real digits, and
a run killed after a checkpoint resumes to the weights of an uninterrupted one.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from genzoo import config, runs
from genzoo.train_config import TrainConfig

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load_benchmark(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # a dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


GAN_MODELS = load_benchmark("gan").MODELS
PIXEL_RECIPES = load_benchmark("pixel").RECIPES


@pytest.mark.parametrize("key", list(GAN_MODELS))
def test_gan_recipe_builds_and_samples(key):
    name, overrides, epochs = GAN_MODELS[key]
    assert epochs > 0
    model = runs.create(name, **overrides)  # an unknown key or a bad value raises ConfigError
    labels = torch.tensor([3, 7]) if model.conditional else None
    x = model.sample(2, y=labels, generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, 1, 28, 28) and 0 <= x.min() and x.max() <= 1


@pytest.mark.parametrize("key", list(PIXEL_RECIPES))
def test_pixel_recipe_builds_and_scores(key):
    name, model_overrides, train_overrides, target = PIXEL_RECIPES[key]
    config.build(TrainConfig, train_overrides)
    model = runs.create(name, **model_overrides)
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0)).round()
    log_p = model.log_prob(x)
    assert log_p.shape == (2,) and bool((log_p < 0).all())
    assert target is None or 75 < target < 90  # nats per image on binarized MNIST


DDPM = load_benchmark("ddpm")


@pytest.mark.parametrize("key", list(DDPM.RECIPES))
def test_ddpm_recipe_builds_and_takes_a_loss(key):
    model_overrides, train_overrides = DDPM.RECIPES[key]
    config.build(TrainConfig, train_overrides)
    model = runs.create("ddpm", **model_overrides)
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    for step in (0, None):  # a latent recipe's first stage, then diffusion
        loss = model.loss(x, torch.tensor([3, 7]), step=step)["loss"]
        assert loss.dim() == 0 and torch.isfinite(loss)


def test_ddpm_best_guidance_prefers_the_accuracy_bar_then_the_fid():
    rows = [{"guidance": 0, "fid": 5.0, "conditional_accuracy": 0.5},
            {"guidance": 2, "fid": 8.0, "conditional_accuracy": 0.985},
            {"guidance": 3, "fid": 9.0, "conditional_accuracy": 0.99}]
    assert DDPM.pick_best(rows)["guidance"] == 2
    assert DDPM.pick_best(rows[:1])["guidance"] == 0


def test_pixel_time_to_quality_is_the_first_epoch_end_at_or_under_the_level():
    log = [{"step": 10, "loss": 80.0, "time": 30.0},  # a training line: not a test figure
           {"step": 10, "epoch": 1, "time": 60.0, "test_loss": 85.0},
           {"step": 20, "epoch": 2, "time": 120.0, "test_loss": 81.45},
           {"step": 30, "epoch": 3, "time": 180.0, "test_loss": 81.0}]
    minutes_to = load_benchmark("pixel").minutes_to
    assert minutes_to(log, 81.45) == 2.0 and minutes_to(log, 81.3) == 3.0 and minutes_to(log, 80.0) is None


REFERENCE = load_benchmark("pytorch_gan_reference")


@pytest.mark.parametrize(
    "key, n_generator, n_discriminator",
    [
        # Counted by hand from PyTorch-GAN's layer lists (weights + biases, batch-norm scales + shifts):
        # DCGAN G: Linear(100, 128*8*8) 827,392 + BN(128) 256 + Conv(128, 128, 3) 147,584 + BN 256
        #          + Conv(128, 64, 3) 73,792 + BN(64) 128 + Conv(64, 1, 3) 577
        # DCGAN D: Conv(1, 16) 160 + Conv(16, 32) 4,640 + BN 64 + Conv(32, 64) 18,496 + BN 128
        #          + Conv(64, 128) 73,856 + Linear(128*2*2, 1) 513
        # CGAN G:  Embedding(10, 10) 100 + Linear(110, 128) 14,208 + Linear(128, 256) 33,024 + BN 512
        #          + Linear(256, 512) 131,584 + BN 1,024 + Linear(512, 1024) 525,312 + BN 2,048
        #          + Linear(1024, 1024) 1,049,600
        # CGAN D:  Embedding 100 + Linear(1034, 512) 529,920 + 2 x Linear(512, 512) 525,312 + Linear(512, 1) 513
        ("dcgan", 1_049_985, 97_857),
        ("cgan", 1_757_412, 1_055_845),
    ],
)
def test_reference_networks_have_the_published_sizes(key, n_generator, n_discriminator):
    generator, discriminator = REFERENCE.build(key, "cpu")
    assert sum(p.numel() for p in generator.parameters()) == n_generator
    assert sum(p.numel() for p in discriminator.parameters()) == n_discriminator
    z, y = torch.randn(3, REFERENCE.LATENT), torch.tensor([1, 2, 3])
    x = generator(z, y)
    assert x.shape == (3, 1, 32, 32) and discriminator(x, y).shape == (3, 1)


def test_reference_resizing_round_trip_keeps_real_digits():
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    up = REFERENCE.to_their_images(x)
    assert up.shape == (4, 1, 32, 32) and -1 <= up.min() and up.max() <= 1
    torch.testing.assert_close(REFERENCE.to_our_images(up), x, atol=1e-5, rtol=0)


def test_reference_training_resumes_where_it_stopped(tmp_path, capsys, monkeypatch):
    g = torch.Generator().manual_seed(0)
    data = SimpleNamespace(
        train_x=torch.rand(100, 1, 28, 28, generator=g), train_y=torch.randint(0, 10, (100,), generator=g)
    )
    REFERENCE.train("cgan", data, tmp_path / "whole", "cpu", epochs=2, seed=0, resume=False, checkpoint_minutes=5)

    # Killed right after the first checkpoint, written after batch 1 of 2 of epoch 1.
    save = REFERENCE.atomic_torch_save

    def save_then_die(obj, path):
        save(obj, path)
        raise KeyboardInterrupt

    monkeypatch.setattr(REFERENCE, "atomic_torch_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        REFERENCE.train("cgan", data, tmp_path / "cut", "cpu", epochs=2, seed=0, resume=False, checkpoint_minutes=0)
    monkeypatch.setattr(REFERENCE, "atomic_torch_save", save)
    capsys.readouterr()
    timing = REFERENCE.train("cgan", data, tmp_path / "cut", "cpu", epochs=2, seed=0, resume=True, checkpoint_minutes=0)
    assert "resumed at epoch 1, batch 1" in capsys.readouterr().out and timing["epochs"] == 2
    assert len(torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["state"]["epoch_seconds"]) == 1

    whole, cut = (
        torch.load(tmp_path / run / "generator.pt", weights_only=True)["generator"] for run in ("whole", "cut")
    )
    assert whole.keys() == cut.keys()
    for name in whole:
        torch.testing.assert_close(cut[name], whole[name], atol=0, rtol=0)
    with pytest.raises(SystemExit, match="--resume"):
        REFERENCE.train("cgan", data, tmp_path / "cut", "cpu", epochs=2, seed=0, resume=False, checkpoint_minutes=5)


def test_speed_benchmark_times_the_trainers_own_step(tiny, tmp_path):
    speed = load_benchmark("speed")
    loop = speed.trainer_loop("ae", tiny, torch.device("cpu"), tmp_path)
    figures = speed.measure_steps(loop, seconds=0, warmup=1)
    assert figures["steps"] == 3 and loop.step == 4 and figures["images_per_s"] > 0
    row = speed.row({"model": "ae", **figures, "batch_size": 128, "threads": 2, "load_average": 1.0})
    assert row.startswith("| ae | ")


@pytest.mark.parametrize("kind", ["fill-box", "fill-half", "upscale-7", "skeleton", "denoise-gaussian"])
def test_instruct_retrieval_finds_the_training_digits_nearest_the_degraded_input(tiny, kind):
    """benchmarks/instruct.py retrieval: the training digit it picks is the one whose degraded version (under the test
    digit's own mask, for a fill) is nearest the test digit's degraded input, by a search written out digit by
    digit; and a test digit placed in the training set is its own nearest."""
    bench = load_benchmark("instruct")
    digits, train = tiny.test_x[:6], torch.cat([tiny.train_x[:40], tiny.test_x[:2]])
    index, inputs, visible = bench.nearest_training_digits(kind, digits, train, 3, torch.Generator().manual_seed(1),
                                                           chunk=4)
    assert index.shape == (6, 3) and inputs.shape == digits.shape
    seen = {"upscale-7": lambda x: bench.edits.downsample(x, 7), "skeleton": bench.edits.skeleton}.get(kind,
                                                                                                     lambda x: x)
    for i in range(6):
        m = visible[i] if visible is not None else torch.ones_like(digits[i])
        distances = torch.stack([((seen(t[None])[0] - inputs[i]) * m).pow(2).sum() for t in train])
        assert torch.allclose(distances[index[i]], distances.sort().values[:3], atol=1e-3)
    if kind != "denoise-gaussian":  # noise can make another digit the nearer one
        assert index[:2, 0].tolist() == [40, 41]
    if visible is not None:  # not told the mask: the distance on every pixel to the input (hidden ones black)
        blind, same_inputs, none = bench.nearest_training_digits(kind, digits, train, 3,
                                                                 torch.Generator().manual_seed(1), mask_known=False)
        assert none is None and torch.equal(same_inputs, inputs)
        for i in range(6):
            distances = torch.stack([(t - inputs[i]).pow(2).sum() for t in train])
            assert torch.allclose(distances[blind[i]], distances.sort().values[:3], atol=1e-3)


def test_instruct_show_hidden_as_marks_the_hidden_pixels_of_the_fills_only(tiny, monkeypatch):
    """benchmarks/instruct.py --hidden-value 0.5: the fills' inputs show their hidden pixels grey, the same pixels
    and draws as the default's black, and every other kind's triples stay as they were."""
    bench = load_benchmark("instruct")
    monkeypatch.setattr(bench.edits, "KINDS", dict(bench.edits.KINDS))  # restored after the test
    kinds = list(bench.edits.KINDS) * 2
    digits = tiny.test_x[:len(kinds)]
    before = bench.edits.make_triples(digits, torch.Generator().manual_seed(0), kinds=kinds)
    bench.show_hidden_as(0.5)
    after = bench.edits.make_triples(digits, torch.Generator().manual_seed(0), kinds=kinds)
    assert after.instructions == before.instructions and torch.equal(after.outputs, before.outputs)
    for i, kind in enumerate(kinds):
        changed = after.inputs[i] != before.inputs[i]
        if kind.startswith("fill-"):
            hidden = (before.inputs[i] == 0) & (after.inputs[i] == 0.5)
            assert changed.any() and (changed == hidden).all()
        else:
            assert not changed.any(), kind


def test_instruct_spread_of_an_editor_that_adds_noise_to_the_exact_output(monkeypatch, capsys):
    """benchmarks/instruct.py spread against theory: an editor that answers the exact output plus independent
    Gaussian noise of standard deviation s lands 20 log10(1/s) dB from the exact output, two of its edits twice
    the squared error apart (3.01 dB less), and the mean of four a quarter of it (6.02 dB more)."""
    bench = load_benchmark("instruct")
    test_x = bench.load_data("embedded", verbose=False).test_x
    kind, n, sigma = "fill-half", 30, 0.1
    k = list(bench.edits.KINDS).index(kind)
    digits = test_x[(k * n) % len(test_x):][:n]  # the block of the test set that evaluate gives the kind
    exact = bench.edits.make_triples(digits, torch.Generator().manual_seed(k), kinds=[kind] * n).outputs

    class NoisyEditor:
        def edit(self, inputs, instructions, *, generator, **_):
            assert len(inputs) == n and len(instructions) == n
            return exact + sigma * torch.randn(exact.shape, generator=generator)

    monkeypatch.setattr(bench.runs, "load", lambda run, device: NoisyEditor())
    monkeypatch.setattr(bench.runs, "read_config", lambda run: {"data": "embedded"})
    args = SimpleNamespace(run="run", device="cpu", seed=0, n=n, samples=4, kinds=kind, steps=1, image_guidance=1.0,
                           text_guidance=1.0)
    row = bench.cmd_spread(args)["kinds"][kind]
    assert row["each"] == pytest.approx(20.0, abs=0.3)
    assert row["between_two"] == pytest.approx(20.0 - 3.01, abs=0.3)
    assert row["mean_of_edits"] == pytest.approx(20.0 + 6.02, abs=0.3)
    with pytest.raises(SystemExit, match="at least 2"):
        bench.cmd_spread(SimpleNamespace(**{**vars(args), "samples": 1}))
    with pytest.raises(SystemExit, match="fill-halves not among the kinds"):
        bench.cmd_spread(SimpleNamespace(**{**vars(args), "kinds": "fill-halves"}))


def test_instruct_style_kept_against_an_editor_that_ignores_the_input_and_one_that_returns_it():
    """benchmarks/instruct.py's semantic edits, style kept: an editor that returns its input unchanged is at feature
    distance 0 and nearer its input than a random digit of the target class every time; one that answers a random
    test digit of the requested class, drawn on its own, is as far from the input as that digit is (nearer in about
    half the edits)."""
    bench = load_benchmark("instruct")
    data = bench.load_data("embedded", verbose=False)
    n = 200
    pool, pool_y = data.test_x, data.test_y

    def target(instruction: str) -> int:
        word = instruction.split()[-1]
        return bench.edits.DIGIT_WORDS.index(word) if word in bench.edits.DIGIT_WORDS else int(word)

    class Editor:
        config = SimpleNamespace(use_text=True)
        device = torch.device("cpu")

        def __init__(self, ignore_input: bool):
            self.ignore_input, self.g = ignore_input, torch.Generator().manual_seed(5)

        def semantic_pairs(self):  # taught pairs whose output is the input shifted down a pixel: the same hand
            return {"inputs": pool[:100], "outputs": torch.roll(pool[:100], 1, dims=2)}

        def edit(self, inputs, instructions, **_):
            if not self.ignore_input:
                return inputs.clone()
            out = []
            for text in instructions:
                same = pool[pool_y == target(text)]
                out.append(same[torch.randint(len(same), (), generator=self.g)])
            return torch.stack(out)

    from genzoo.evaluation.evaluator import load_evaluator

    evaluator = load_evaluator("cpu")
    args = SimpleNamespace(semantic=n, seed=0, image_guidance=1.0, text_guidance=1.0, steps=1)
    kept = bench.semantic_edits(Editor(False), data.test_x, data.test_y, evaluator, args)
    assert kept["train"]["style_distance"] == pytest.approx(0.0, abs=1e-4)
    assert kept["train"]["closer_than_random"] == 1.0
    assert kept["train"]["target_read"] < 0.05 and kept["train"]["source_read"] > 0.9
    drawn = bench.semantic_edits(Editor(True), data.test_x, data.test_y, evaluator, args)
    assert drawn["train"]["target_read"] > 0.9
    assert 0.4 < drawn["train"]["closer_than_random"] < 0.6
    assert drawn["train"]["style_distance"] == pytest.approx(drawn["random_target_digit_to_input"], rel=0.1)
    assert drawn["random_target_digit_to_input"] > 1.5 * drawn["random_pair_distance_in_target_class"]
    assert kept["train"]["correlation"] == pytest.approx({"slant": 1.0, "thickness": 1.0})
    assert kept["training_pairs_correlation"] == pytest.approx({"slant": 1.0, "thickness": 1.0}, abs=0.01)
    for measures in (drawn["train"]["correlation"], drawn["random_target_digit_correlation"]):
        assert all(abs(r) < 0.25 for r in measures.values())  # 200 independent pairs: standard error about 0.07


def test_instruct_slant_and_thickness_of_a_sheared_bar():
    """The handwriting measures against geometry: a vertical bar 3 pixels wide and 16 long is upright and has 48
    pixels of ink along a 14-pixel skeleton; sheared by k columns per row (the top to the right) its slant is k."""
    bench = load_benchmark("instruct")
    bar = torch.zeros(3, 1, 28, 28)
    for i, k in enumerate((0.0, 0.25, -0.5)):
        for row in range(6, 22):
            left = round(13 - k * (row - 13.5))
            bar[i, 0, row, left:left + 3] = 1.0
    slant, thickness = bench.slant_and_thickness(bar)
    assert slant.tolist() == pytest.approx([0.0, 0.25, -0.5], abs=0.03)
    assert thickness[0].item() == pytest.approx(3 * 16 / 14)  # the skeleton stops a pixel short of either end


def test_every_planted_fault_still_applies_and_names_existing_tests():
    """benchmarks/mutations.py plants each fault by replacing a text that must occur once in its file: code that
    moves would otherwise leave a mutation that no longer plants anything (two did once)."""
    mutations = load_benchmark("mutations")
    assert mutations.check(mutations.MUTATIONS, mutations.ROOT / "src" / "genzoo") == []
    assert len({m.name for m in mutations.MUTATIONS}) == len(mutations.MUTATIONS)
    for m in mutations.MUTATIONS:
        assert mutations.TESTS[m.tests], m.name
        assert all((mutations.ROOT / test).is_file() for test in mutations.TESTS[m.tests]), m.name


# ---------------------------------------------------------------------------- benchmarks/time_to_quality.py


class FakeClock:
    """A timer whose every step takes one second: the checkpoint schedule without waiting."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def fake_peer(ttq, name: str, log: list, nll_per_step: float = 100.0):
    """A peer whose step takes one fake second and whose model has log p(x) = -(nll_per_step / steps) exactly."""
    clock = FakeClock()

    def step():
        clock.now += 1.0
        log.append(name)

    side = ttq.PeerSide(name, step, None, f"fake {name}", timer=clock)

    class Model:
        def log_prob(self, x, generator):
            return torch.full((len(x),), -nll_per_step / side.reading.steps)

    side.scorable = Model
    return side


def test_time_to_quality_checkpoints_fall_at_the_budgets_in_the_chosen_order():
    ttq = load_benchmark("time_to_quality")
    steps: list[str] = []
    sides = {"a": fake_peer(ttq, "a", steps), "b": fake_peer(ttq, "b", steps, nll_per_step=200.0)}
    order = []
    for side in sides.values():  # record who trains to which point, in order
        train_until = side.train_until
        side.train_until = lambda s, train_until=train_until, name=side.name: (order.append((name, s)),
                                                                              train_until(s))[1]
    saved = []
    test = torch.zeros(7, 1, 28, 28)
    result = ttq.run_comparison(sides, [2.5, 5.0], ttq.likelihood_scorer(test, seed=0, batch=3), "interleaved",
                                lambda r: saved.append(json.loads(json.dumps(r))))
    assert order == [("a", 2.5), ("b", 2.5), ("a", 5.0), ("b", 5.0)]
    # one fake second a step: the first step at or past each point stops the side
    assert [p["steps"] for p in result["a"]] == [3, 5] and [p["train_seconds"] for p in result["a"]] == [3.0, 5.0]
    assert steps.count("a") == 5 and steps.count("b") == 5
    assert [p["budget_minutes"] for p in result["b"]] == [2.5 / 60, 5.0 / 60]
    assert [p["nll"] for p in result["a"]] == pytest.approx([100 / 3, 100 / 5])
    assert [p["nll"] for p in result["b"]] == pytest.approx([200 / 3, 200 / 5])
    assert all(p["nll_se"] == 0 and p["test_images"] == 7 for p in result["a"] + result["b"])
    assert [len(s["a"]) + len(s["b"]) for s in saved] == [1, 2, 3, 4]  # saved after every checkpoint

    order.clear()
    sides = {"a": fake_peer(ttq, "a", []), "b": fake_peer(ttq, "b", [])}
    for side in sides.values():
        train_until = side.train_until
        side.train_until = lambda s, train_until=train_until, name=side.name: (order.append((name, s)),
                                                                              train_until(s))[1]
    ttq.run_comparison(sides, [1.0, 2.0], lambda side: {}, "sequential")
    assert order == [("a", 1.0), ("a", 2.0), ("b", 1.0), ("b", 2.0)]
    with pytest.raises(ValueError, match=r"budgets \[2.0, 1.0\]: give positive points in ascending order"):
        ttq.run_comparison(sides, [2.0, 1.0], lambda side: {}, "sequential")


def test_time_to_quality_parallel_order_runs_each_side_in_its_own_process_on_its_own_core():
    """`--order parallel`: the same points and scores as the sides taking turns, each side trained and scored in a
    forked process pinned to a core of its own, every point saved as it arrives; a side that fails names itself."""
    ttq = load_benchmark("time_to_quality")
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("parallel order needs two cores")
    test = torch.zeros(7, 1, 28, 28)
    saved = []
    sides = {"a": fake_peer(ttq, "a", []), "b": fake_peer(ttq, "b", [], nll_per_step=200.0)}
    result = ttq.run_comparison(sides, [2.5, 5.0], ttq.likelihood_scorer(test, seed=0, batch=3), "parallel",
                                lambda r: saved.append(len(r["a"]) + len(r["b"])))
    for name, per_step in (("a", 100), ("b", 200)):
        assert [p["steps"] for p in result[name]] == [3, 5]
        assert [p["nll"] for p in result[name]] == pytest.approx([per_step / 3, per_step / 5])
    assert saved == [1, 2, 3, 4]
    cores = {name: {p["core"] for p in points} for name, points in result.items()}
    assert len(cores["a"]) == len(cores["b"]) == 1 and cores["a"] != cores["b"]
    assert sides["a"].reading.steps == 0  # the training happened in the side's own process

    broken = {"a": fake_peer(ttq, "a", []), "b": fake_peer(ttq, "b", [])}
    broken["b"].scorable = None
    with pytest.raises(RuntimeError, match=r"(?s)a side failed in its process:.*b: Traceback"):
        ttq.run_comparison(broken, [1.0], ttq.likelihood_scorer(test, seed=0, batch=3), "parallel")


def test_time_to_quality_summary_reads_the_minutes_to_the_peers_last_quality():
    ttq = load_benchmark("time_to_quality")
    ours = [{"budget_minutes": m, "train_seconds": 60 * m + 1, "nll": v}
            for m, v in ((5, 95.0), (15, 90.0), (30, 88.0))]
    theirs = [{"budget_minutes": m, "train_seconds": 60 * m + 2, "nll": v}
              for m, v in ((5, 94.0), (15, 92.0), (30, 90.5))]
    s = ttq.summarise({"genzoo": ours, "peer": theirs}, "nll", "peer")
    # the peer's 30-minute 90.5 is first reached by genzoo's 15-minute checkpoint (90.0), timed at 901 s
    assert s["genzoo_minutes_to_peer_last"] == pytest.approx(901 / 60)
    assert s["speed_up"] == pytest.approx(1802 / 901)
    assert s["genzoo_better_at"] == [15, 30]
    assert s["speed_up_at_least"] is False  # genzoo's first point (95.0) had not reached it: the ratio is read
    assert s["speed_up_at_most"] == pytest.approx(1802 / 301)  # it got there after its 5-minute point
    assert s["peer_last_gain"] == pytest.approx(92.0 - 90.5)  # the peer still falling when it stopped
    early = ttq.summarise({"genzoo": ours, "peer": [*theirs[:2], {**theirs[2], "nll": 96.0}]}, "nll", "peer")
    assert early["speed_up"] == pytest.approx(1802 / 301) and early["speed_up_at_least"] is True
    assert early["speed_up_at_most"] is None  # there at its first point: no upper bound
    late = ttq.summarise({"genzoo": ours, "peer": [*theirs[:2], {**theirs[2], "nll": 88.5}]}, "nll", "peer")
    assert late["speed_up"] == pytest.approx(1802 / 1801) and late["speed_up_at_most"] == pytest.approx(1802 / 901)
    assert early["peer_last_gain"] == pytest.approx(92.0 - 96.0)
    lone = ttq.summarise({"genzoo": ours, "peer": [{**theirs[0], "nll": 80.0}]}, "nll", "peer")
    assert lone["speed_up"] is None and lone["speed_up_at_least"] is False and lone["peer_last_gain"] is None
    assert lone["speed_up_at_most"] is None


def test_time_to_quality_plot_draws_each_sides_points_and_holds_a_finished_recipe_to_its_last_budget(
        tmp_path, monkeypatch):
    import matplotlib.figure

    ttq = load_benchmark("time_to_quality")
    ours = [{"budget_minutes": 5, "train_seconds": 300, "nll": 91.0, "recipe_finished": False},
            {"budget_minutes": 30, "train_seconds": 1000, "nll": 88.5, "recipe_finished": True}]
    theirs = [{"budget_minutes": 5, "train_seconds": 300, "nll": 94.0},
              {"budget_minutes": 30, "train_seconds": 1800, "nll": 93.0}]
    result = {"row": "vae", "date": "d", "hardware": "h", "threads": [1], "comparisons": {"vae-pythae": {
        "peer_name": "pythae", "key": "nll", "quality": {"measure": "NLL"},
        "checkpoints": {"genzoo": ours, "pythae": theirs}}}}
    saved = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: saved.append(fig))
    ttq.plot_row(result, tmp_path / "p.png")
    lines = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in saved[0].axes[0].lines}
    assert lines["genzoo (cpu recipe)"] == ([5, 1000 / 60], [91.0, 88.5])
    assert lines["pythae"] == ([5, 30], [94.0, 93.0])
    # genzoo's recipe ended at 16.7 minutes: its later points score those weights, drawn flat to the 30-minute one
    assert lines["genzoo (cpu recipe): recipe finished"] == ([1000 / 60, 30], [88.5, 88.5])


def test_time_to_quality_trains_genzoos_recipe_to_each_budget_and_scores_its_run(tmp_path, embedded):
    """genzoo's side through `genzoo train vae --recipe cpu --time-budget` then --resume: each checkpoint's trainer
    clock is at or past its budget, by less than a few steps, and its NLL is the run's own IWAE estimate."""
    ttq = load_benchmark("time_to_quality")
    ours = ttq.GenzooSide("vae", "embedded", tmp_path / "genzoo", 0, ttq.vae_wrap(2))
    peer = fake_peer(ttq, "peer", [])
    test = embedded.test_x[:20].round()
    budgets = [1.0, 2.5]
    result = ttq.run_comparison({"genzoo": ours, "peer": peer}, budgets, ttq.likelihood_scorer(test, seed=3, batch=8),
                                "interleaved")
    points = result["genzoo"]
    assert [p["budget_minutes"] * 60 for p in points] == budgets
    assert points[0]["steps"] > 0 and points[1]["steps"] > points[0]["steps"]
    for p, budget in zip(points, budgets):
        per_step = p["train_seconds"] / p["steps"]
        assert budget <= p["train_seconds"] < budget + 3 * per_step + 0.5
        assert not p["recipe_finished"]
    config = json.loads((tmp_path / "genzoo" / "config.json").read_text())
    assert config["train"]["recipe"] == "cpu" and config["train"]["sample_every"] == 0
    model = runs.load(tmp_path / "genzoo")
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        log_p = torch.cat([model.log_prob(part, k=2, generator=g) for part in test.split(8)]).double()
    assert points[-1]["nll"] == pytest.approx(-float(log_p.mean()), rel=1e-6)
    assert result["peer"][-1]["nll"] == pytest.approx(100 / 3)


# ---------------------------------------------------------------------------- the pixelcnn row: pytorch-generative

PG = load_benchmark("pytorch_generative_reference")


def small(key: str):
    torch.manual_seed(0)
    if key == "pixelcnn":
        return PG.PixelCNN(n_residual=2, residual_channels=4, head_channels=8).double()
    return PG.GatedPixelCNN(n_gated=2, gated_channels=4, head_channels=8).double()


def test_pytorch_generative_masks_are_type_a_and_type_b():
    a = PG.CausalConv2d(True, 1, 2, 3, padding=1).mask
    b = PG.CausalConv2d(False, 1, 2, 3, padding=1).mask
    assert a.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]] and b.tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]
    assert int(PG.CausalConv2d(True, 1, 2, 7, padding=3).mask.sum()) == 3 * 7 + 3


@pytest.mark.parametrize("key", ["pixelcnn", "gated"])
def test_pytorch_generative_networks_see_only_earlier_pixels(key):
    """By input gradients: the logit of pixel (i, j) depends on pixels before it in raster order only, and on some of
    them (the nearest: the pixel to its left and the one above), for pixels on the edges and inside."""
    net = small(key)
    x = torch.bernoulli(torch.full((1, 1, 28, 28), 0.5, dtype=torch.float64),
                        generator=torch.Generator().manual_seed(1)).requires_grad_()
    logits = net(x)
    order = torch.arange(28 * 28).view(28, 28)
    for i, j in [(0, 0), (0, 5), (4, 0), (13, 13), (27, 27), (20, 27)]:
        grad, = torch.autograd.grad(logits[0, 0, i, j], x, retain_graph=True)
        seen = grad[0, 0] != 0
        assert not seen[order >= i * 28 + j].any(), (key, i, j)
        if j > 0:
            assert seen[i, j - 1], (key, i, j)
        if i > 0:
            assert seen[i - 1, j], (key, i, j)


def test_pytorch_generative_pixelcnn_adds_each_blocks_input_twice_as_published():
    """pixel_cnn.py: the block returns h + net(h) and the model adds h again; recomputed here layer by layer."""
    F = torch.nn.functional
    net = small("pixelcnn")
    x = torch.bernoulli(torch.full((2, 1, 28, 28), 0.3, dtype=torch.float64))
    h = F.conv2d(x, net.input.weight * net.input.mask, net.input.bias, padding=3)
    for block in net.blocks:
        relu, c1, _, c3, _, c5 = block.net
        inner = F.conv2d(torch.relu(h), c1.weight, c1.bias)
        inner = F.conv2d(torch.relu(inner), c3.weight * c3.mask, c3.bias, padding=1)
        h = 2 * h + F.conv2d(torch.relu(inner), c5.weight, c5.bias)
    torch.testing.assert_close(net(x), net.head(h))


def test_pytorch_generative_loss_is_the_bernoulli_nll_and_one_step_takes_it():
    logits = torch.randn(3, 1, 28, 28, dtype=torch.float64)
    x = torch.bernoulli(torch.full_like(logits, 0.4))
    p = torch.sigmoid(logits)
    by_hand = -(x * p.log() + (1 - x) * (1 - p).log()).sum((1, 2, 3))
    torch.testing.assert_close(PG.bernoulli_nll(x, logits), by_hand)

    train_x = torch.rand(40, 1, 28, 28)
    run = PG.Reproduce("pixelcnn", train_x, seed=3, network=small("pixelcnn").float())
    assert run.batch_size == 256 and run.optimizer.defaults["lr"] == 1e-3
    rng = torch.Generator().set_state(run.rng.get_state())
    batch = torch.bernoulli(train_x[run.order[:256]], generator=rng)  # the whole (short) epoch, binarized afresh
    with torch.no_grad():
        expected = float(PG.bernoulli_nll(batch, run.model(batch)).mean())
    before = [p.detach().clone() for p in run.model.parameters()]
    assert run.step() == pytest.approx(expected, rel=1e-6)
    assert any(not torch.equal(a, b) for a, b in zip(before, run.model.parameters()))
    run.step()  # a new epoch: reshuffled, binarized again
    assert run.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.999977 ** 2)
    with torch.no_grad():
        torch.testing.assert_close(-run.log_prob(batch), PG.bernoulli_nll(batch, run.model(batch)))


def test_pytorch_generative_reproduce_networks_have_the_published_sizes():
    """Counted by hand. PixelCNN (trunk 32): the 7 x 7 input 1,600; a block 1 x 1 32->16 528, 3 x 3 16->16 2,320,
    1 x 1 16->32 544, 15 of them; the head 32->32 1,056 and 32->1 33. Gated (128): the input layer (kernel 7) 232,960,
    a gated layer 312,704, 10 of them, the head 4,161."""
    count = lambda key: sum(p.numel() for p in PG.build(key).parameters())  # noqa: E731
    assert count("pixelcnn") == 1_600 + 15 * (528 + 2_320 + 544) + 1_056 + 33
    assert count("gated") == 232_960 + 10 * 312_704 + 4_161
    assert PG.REPRODUCE["gated"]["batch_size"] == 128 and PG.REPRODUCE["gated"]["lr_decay"] == 0.9999


def fast_genzoo_side(ttq, monkeypatch, batch_size: int = 16) -> None:
    """genzoo's side of a row's smoke test at a small batch, and without the pictures the trainer draws after each
    session (not training time, but most of a tiny run's)."""
    from genzoo.training.loop import Loop

    monkeypatch.setattr(Loop, "make_pictures", lambda self, stops: None)
    monkeypatch.setattr(ttq, "GenzooSide", functools.partial(
        ttq.GenzooSide, sets=("sample_every=0", "test_every=0", f"batch_size={batch_size}")))


def small_pixelcnn_row(monkeypatch):
    """The time_to_quality benchmark with the pixelcnn row's sides made small: genzoo's as `fast_genzoo_side`, the
    restated peers' networks one layer of 4 channels."""
    ttq = load_benchmark("time_to_quality")
    fast_genzoo_side(ttq, monkeypatch)
    monkeypatch.setitem(ttq.pixel_reference.REPRODUCE["pixelcnn"], "network",
                        {"n_residual": 1, "residual_channels": 4, "head_channels": 8})
    monkeypatch.setitem(ttq.pixel_reference.REPRODUCE["gated"], "network",
                        {"n_gated": 1, "gated_channels": 4, "head_channels": 8})
    return ttq


@pytest.mark.parametrize("order", ["interleaved", "parallel"])
def test_time_to_quality_pixelcnn_row_runs_at_tiny_budgets(tmp_path, monkeypatch, one_thread, order):
    """The pixelcnn row end to end: genzoo's cpu recipe (at batch 16, without its end-of-session pictures) and both
    restated peers (small stand-ins for their networks) trained to each budget and scored by the exact NLL of the
    same fixed-binarized test digits; in parallel order each side in its own process."""
    if order == "parallel" and len(os.sched_getaffinity(0)) < 2:
        pytest.skip("parallel order needs two cores")
    ttq = small_pixelcnn_row(monkeypatch)
    result = ttq.main(["pixelcnn", "--data", "embedded", "--budgets", "0.001,0.002", "--test-images", "12",
                       "--out-dir", str(tmp_path), "--work", str(tmp_path / "work"), "--order", order])
    assert list(result["comparisons"]) == ["pixelcnn", "gated"] and result["order"] == order
    for entry in result["comparisons"].values():
        assert entry["quality"]["measure"] == "exact NLL, nats" and entry["quality"]["test_images"] == 12
        assert entry["peer_version"] == "restated here (no package)"
        for side in ("genzoo", "pytorch-generative"):
            points = entry["checkpoints"][side]
            assert [p["budget_minutes"] for p in points] == [0.001, 0.002]
            assert all(p["test_images"] == 12 and 0 < p["nll"] < 1e7 for p in points)
            assert 0 < points[0]["steps"] <= points[1]["steps"]
    run = json.loads((tmp_path / "time-to-quality-pixelcnn.json").read_text())
    assert run["comparisons"]["gated"]["summary"]["key"] == "nll"
    assert (tmp_path / "time-to-quality-pixelcnn.png").stat().st_size > 0
    # genzoo's last point is its run's own exact NLL on the same digits
    test = ttq.fixed_binarization(ttq.spread(ttq.load_data("embedded").test_x, 12))
    model = runs.load(tmp_path / "work" / "gated" / "genzoo")
    with torch.no_grad():
        nll = -float(model.log_prob(test).double().mean())
    assert result["comparisons"]["gated"]["checkpoints"]["genzoo"][-1]["nll"] == pytest.approx(nll, rel=1e-6)


def test_time_to_quality_only_measures_a_row_one_comparison_at_a_time(tmp_path, monkeypatch, one_thread):
    """`--only` measures the comparisons it names and keeps the row's others already in its JSON, each with the
    command and date of the run that measured it; an unknown name is refused before anything is written."""
    ttq = small_pixelcnn_row(monkeypatch)
    row = ["pixelcnn", "--data", "embedded", "--budgets", "0.001", "--test-images", "12", "--out-dir", str(tmp_path)]
    saved = tmp_path / "time-to-quality-pixelcnn.json"
    first = ttq.main([*row, "--work", str(tmp_path / "w1"), "--only", "gated"])
    assert list(first["comparisons"]) == ["gated"]
    gated = json.loads(saved.read_text())["comparisons"]["gated"]
    assert gated["measured"]["command"].endswith("--only gated")

    second = ttq.main([*row, "--work", str(tmp_path / "w2"), "--only", "pixelcnn"])
    assert list(second["comparisons"]) == ["pixelcnn", "gated"]  # the row's own order
    both = json.loads(saved.read_text())
    assert both["comparisons"]["gated"] == gated  # kept as measured, its own command with it
    assert both["comparisons"]["pixelcnn"]["measured"]["command"].endswith("--only pixelcnn")
    assert both["command"].endswith("--only pixelcnn")
    assert both["comparisons"]["pixelcnn"]["checkpoints"]["genzoo"][0]["budget_minutes"] == 0.001
    ttq.main([*row, "--work", str(tmp_path / "w3"), "--only", "pixelcnn"])  # once more: gated is still the first's
    third = saved.read_text()
    assert json.loads(third)["comparisons"]["gated"] == gated

    with pytest.raises(SystemExit):
        ttq.main([*row, "--only", "gatd"])
    assert saved.read_text() == third  # refused before anything was measured or written
