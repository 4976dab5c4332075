"""Tests of the adversarial family (gan, cgan, dcgan): tiny networks, a few steps, CPU."""

from __future__ import annotations

import copy
from contextlib import nullcontext

import pytest
import torch
import torch.nn.functional as F

from genzoo import runs
from genzoo.config import ConfigError
from genzoo.models import gan as gan_module
from genzoo.models.base import CapabilityError
from genzoo.models.gan import DCGAN, GAN, ConditionalGAN, discriminator_loss, gradient_penalty, interpolate
from genzoo.train_config import TrainConfig
from genzoo.training import loop as training_loop

TINY = {
    "gan": (GAN, {"latent_dim": 8, "widths": (16, 32)}),
    "cgan": (ConditionalGAN, {"latent_dim": 8, "widths": (16, 32)}),
    "dcgan": (DCGAN, {"latent_dim": 8, "widths": (8, 4)}),
    "dcgan-cond": (DCGAN, {"latent_dim": 8, "widths": (8, 4), "conditional": True}),
    "dcgan-deep": (DCGAN, {"latent_dim": 8, "widths": (8, 4, 4), "minibatch_std": 4, "fc_width": 16, "d_fc_width": 16}),
    "gan-pack-sn": (GAN, {"latent_dim": 8, "widths": (16, 32), "pack": 2, "spectral_norm": True}),
    "dcgan-pack-sn": (DCGAN, {"latent_dim": 8, "widths": (8, 4), "pack": 2, "spectral_norm": True, "d_fc_width": 16}),
}


def tiny(key: str, **overrides):
    cls, base = TINY[key]
    torch.manual_seed(0)
    return cls(**{**base, **overrides})


def batch(n: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g), torch.arange(n) % 10


def optimizers(model):
    return model.configure_optimizers(TrainConfig(beta1=0.5))


def train_step(model, x, y, opts, step: int = 0):
    """One step as the trainer takes it: step `step` of the run (the trainer counts), no autocast (CPU)."""
    return model.train_step(x, y, opts, step=step, autocast=nullcontext)


def params(net):
    return [p.detach().clone() for p in net.parameters()]


def changed(before, net):
    # Most weight tensors moved (not all: a WGAN critic's output bias has zero gradient, it cancels out).
    moved = [not torch.equal(a, b) for a, b in zip(before, net.parameters())]
    return sum(moved) >= 0.75 * len(moved)


# ---------------------------------------------------------------------------- the adversarial step


@pytest.mark.parametrize("key,loss", [("gan", "nonsaturating"), ("cgan", "hinge"), ("dcgan", "nonsaturating"),
                                      ("dcgan-cond", "wgan-gp"), ("gan", "wgan-gp"), ("dcgan-deep", "hinge"),
                                      ("gan-pack-sn", "nonsaturating"), ("dcgan-pack-sn", "hinge")])
def test_step_changes_both_networks_and_lowers_each_ones_loss(key, loss):
    model = tiny(key, loss=loss, lr_g=1e-3, lr_d=1e-3, d_steps=1)  # one D step, then one G step (WGAN-GP's own: 5)
    opts = optimizers(model)
    x, y = batch()
    y_in = y if model.conditional else None
    before = copy.deepcopy(model)

    # Replay the step's random draws: z for D, (eps for the penalty), z for G.
    torch.manual_seed(7)
    z_d = model.randn(len(x), 8)
    eps = model.rand(len(x), 1, 1, 1) if loss == "wgan-gp" else None
    z_g = model.randn(len(x), 8)
    torch.manual_seed(7)
    out = train_step(model, x, y, opts)
    assert set(out) == {"loss_d", "loss_g", "d_real", "d_fake"} and all(v.shape == () for v in out.values())
    out = {k: v.item() for k, v in out.items()}

    assert changed(params(before.generator), model.generator)
    assert changed(params(before.discriminator), model.discriminator)

    # D's own loss on this batch, generator held at its old weights: lower after the step.
    replay = copy.deepcopy(before)
    d_before = replay.d_losses(x, y_in, z_d, eps)["loss"].item()
    assert out["loss_d"] == pytest.approx(d_before, rel=1e-5)
    # D as the generator step saw it: the new weights, and spectral norm's power-iteration
    # vectors as they were after the D step's two forward passes (they move at every pass).
    d_state = model.discriminator.state_dict()
    d_state.update({k: v for k, v in replay.discriminator.state_dict().items() if k.endswith(("._u", "._v"))})

    def with_new_d(generator=None):
        m = copy.deepcopy(before)
        m.discriminator.load_state_dict(d_state)
        if generator is not None:
            m.generator.load_state_dict(generator.state_dict())
        return m

    assert with_new_d().d_losses(x, y_in, z_d, eps)["loss"].item() < d_before

    # G's own loss against the updated D: lower after the G step.
    g_before = with_new_d().g_losses(y_in, z_g)["loss"].item()
    assert out["loss_g"] == pytest.approx(g_before, rel=1e-5)
    assert with_new_d(model.generator).g_losses(y_in, z_g)["loss"].item() < g_before


def test_d_steps_updates_the_generator_every_kth_call():
    model = tiny("gan", d_steps=3)
    opts = optimizers(model)
    x, y = batch()
    g0 = params(model.generator)
    train_step(model, x, y, opts, step=0)
    train_step(model, x, y, opts, step=1)
    assert all(torch.equal(a, b) for a, b in zip(g0, model.generator.parameters()))
    train_step(model, x, y, opts, step=2)
    assert changed(g0, model.generator)


def test_ema_follows_generator_with_warmup_decay():
    model = tiny("dcgan", ema_decay=0.999)
    opts = optimizers(model)
    ema0 = params(model.generator_ema)
    train_step(model, *batch(), opts)
    decay = (1 + 1) / (10 + 1)  # warm-up after the first generator step
    for e0, e1, p in zip(ema0, model.generator_ema.parameters(), model.generator.parameters()):
        torch.testing.assert_close(e1, decay * e0 + (1 - decay) * p.detach())
    assert model.sampling_network() is model.generator_ema
    assert tiny("dcgan", ema_decay=0.0).sampling_network() is not None


# ---------------------------------------------------------------------------- losses


def test_nonsaturating_loss_matches_binary_cross_entropy_with_smoothing():
    g = torch.Generator().manual_seed(1)
    real, fake = torch.randn(32, generator=g), torch.randn(32, generator=g)
    expected = (F.binary_cross_entropy_with_logits(real, torch.full_like(real, 0.9))
                + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
    torch.testing.assert_close(discriminator_loss(real, fake, "nonsaturating", 0.1), expected)
    torch.testing.assert_close(discriminator_loss(real, fake, "hinge"),
                               torch.clamp(1 - real, min=0).mean() + torch.clamp(1 + fake, min=0).mean())


def test_gradient_penalty_matches_per_sample_autograd():
    model = tiny("dcgan-cond", loss="wgan-gp").double()  # per-sample layer norm: no coupling across the batch
    critic = model.discriminator
    g = torch.Generator().manual_seed(3)
    real = torch.rand(6, 1, 28, 28, generator=g, dtype=torch.float64) * 2 - 1
    fake = torch.rand(6, 1, 28, 28, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.rand(6, 1, 1, 1, generator=g, dtype=torch.float64)
    y = torch.arange(6)

    # Direct: one sample at a time, d critic / d input, its norm, the squared distance to 1.
    terms = []
    for i in range(6):
        xi = (eps[i] * real[i:i + 1] + (1 - eps[i]) * fake[i:i + 1]).requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(xi, y[i:i + 1]).sum(), xi)
        terms.append((grad.norm() - 1) ** 2)
    expected = torch.stack(terms).mean()

    penalty = gradient_penalty(critic, real, fake, y, eps)
    torch.testing.assert_close(penalty, expected)
    penalty.backward()  # second order: the penalty trains the critic's weights
    assert critic.head.weight.grad is not None and critic.head.weight.grad.abs().sum() > 0


def test_gradient_penalty_of_a_linear_critic_is_closed_form():
    w = torch.randn(784, dtype=torch.float64)

    def critic(x, y):
        return x.flatten(1) @ w

    real, fake = torch.rand(4, 1, 28, 28, dtype=torch.float64), torch.rand(4, 1, 28, 28, dtype=torch.float64)
    penalty = gradient_penalty(critic, real, fake, None, torch.rand(4, 1, 1, 1, dtype=torch.float64))
    torch.testing.assert_close(penalty, (w.norm() - 1) ** 2)


# ---------------------------------------------------------------------------- conditioning and sampling


@pytest.mark.parametrize("key", ["cgan", "dcgan-cond"])
def test_conditional_generator_output_depends_on_label(key):
    model = tiny(key)
    train_step(model, *batch(), optimizers(model))
    a = model.sample(8, y=3, generator=torch.Generator().manual_seed(0))
    b = model.sample(8, y=3, generator=torch.Generator().manual_seed(0))
    c = model.sample(8, y=torch.full((8,), 5), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b)  # same seed, same label: same images
    d = model.sample(8, y=3, generator=torch.Generator().manual_seed(1))
    # Same noise, another label: other images, by a fair part of what other noise changes
    # (at initialisation every output is near 0.5, so compare relative differences).
    assert (a - c).abs().mean() > 0.1 * (a - d).abs().mean() > 0
    grid = model.sample(100)  # no labels: default 10 x 10 grid, one digit per row
    assert grid.shape == (100, 1, 28, 28) and 0 <= grid.min() and grid.max() <= 1


def test_cgan_learns_to_follow_labels():
    # Label k's only real image is a bright band at rows 4 + 2k, 5 + 2k. A wiring error in either
    # network (label ignored, wrong label) leaves samples at chance (10%) or far from every band.
    patterns = torch.zeros(10, 1, 28, 28)
    for k in range(10):
        patterns[k, 0, 4 + 2 * k:6 + 2 * k] = 1
    model = tiny("cgan", lr_g=5e-3, lr_d=5e-3, ema_decay=0.0)
    opts = optimizers(model)
    g = torch.Generator().manual_seed(0)
    for i in range(250):
        y = torch.randint(0, 10, (32,), generator=g)
        train_step(model, patterns[y], y, opts, step=i)
    labels = torch.arange(10).repeat(5)
    samples = model.sample(50, y=labels, generator=torch.Generator().manual_seed(1))
    distances = torch.cdist(samples.flatten(1), patterns.flatten(1))  # (50, 10)
    assert (distances.argmin(1) == labels).float().mean() >= 0.9
    assert distances.min(1).values.mean() < 5.0  # an empty image is 7.5 from every band


def test_unconditional_model_refuses_labels():
    with pytest.raises(CapabilityError, match="gan: this model is unconditional.*use cgan"):
        tiny("gan").sample(4, y=3)
    with pytest.raises(CapabilityError, match="dcgan: .*--set conditional=true"):
        tiny("dcgan").sample(4, y=torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"cgan: labels must be digits 0..9, got values in \[0, 12\]"):
        tiny("cgan").sample(4, y=torch.tensor([0, 1, 2, 12]))
    with pytest.raises(ValueError, match=r"cgan: labels must have shape \(4,\) for 4 images, got \(3,\)"):
        tiny("cgan").sample(4, y=torch.tensor([0, 1, 2]))


def test_sampling_is_seeded_and_independent_of_chunking():
    model = tiny("dcgan")
    z = model.randn(7, 8, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(model.decode(z, batch_size=3), model.decode(z))
    torch.testing.assert_close(model.sample(7, generator=torch.Generator().manual_seed(2)), model.decode(z))
    assert model.generator.training  # sampling leaves the training mode alone


def test_interpolate_rows_run_between_the_end_points():
    model = tiny("gan")
    rows = interpolate(model, 5, rows=3, generator=torch.Generator().manual_seed(4))
    assert rows.shape == (3, 5, 1, 28, 28)
    ends = model.randn(3, 2, 8, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(rows[:, 0], model.decode(ends[:, 0]))
    torch.testing.assert_close(rows[:, -1], model.decode(ends[:, 1]))

    cond = tiny("cgan")
    per_digit = interpolate(cond, 4, generator=torch.Generator().manual_seed(0))
    assert per_digit.shape == (10, 4, 1, 28, 28)
    assert (per_digit[0] - per_digit[1]).abs().mean() > 1e-3  # same latent path, other digit
    assert interpolate(cond, 4, label=7, rows=2).shape == (2, 4, 1, 28, 28)
    with pytest.raises(CapabilityError, match="unconditional"):
        interpolate(model, 4, label=7)


# ---------------------------------------------------------------------------- configs


def test_config_errors_name_the_value_and_the_fix():
    with pytest.raises(ConfigError, match=r"label_smoothing=0.1 only applies to loss=nonsaturating, not loss='hinge'"):
        GAN(loss="hinge", label_smoothing=0.1)
    with pytest.raises(ConfigError, match=r"widths=\(64, 32, 16, 8\): dcgan needs two or three channel counts"):
        DCGAN(widths=(64, 32, 16, 8))
    with pytest.raises(ConfigError, match="loss='lsgan': must be one of nonsaturating, hinge, wgan-gp"):
        DCGAN(loss="lsgan")
    with pytest.raises(ConfigError, match="unknown key 'conditional'"):
        GAN(conditional=True)  # gan is unconditional; cgan is the conditional one
    assert DCGAN(d_steps=5, loss="wgan-gp").config.d_steps == 5
    with pytest.raises(
        ConfigError, match=r"minibatch_std=4 mixes samples in D's score, which WGAN-GP's per-sample penalty"
    ):
        DCGAN(minibatch_std=4, loss="wgan-gp")
    with pytest.raises(ConfigError, match=r"pack=2 scores samples together, which WGAN-GP's per-sample penalty"):
        GAN(pack=2, loss="wgan-gp")
    for conditional in (lambda: ConditionalGAN(pack=2), lambda: DCGAN(pack=3, conditional=True)):
        with pytest.raises(ConfigError, match=r"pack=\d is for unconditional models"):
            conditional()
    with pytest.raises(ConfigError, match="pack=0"):
        DCGAN(pack=0)
    with pytest.raises(ConfigError, match="d_fc_width=-1"):
        DCGAN(d_fc_width=-1)


@pytest.mark.parametrize("key", ["gan", "dcgan"])
def test_pack_scores_consecutive_samples_together(key):
    d = tiny(key, pack=2).discriminator.eval()
    x = batch(9)[0] * 2 - 1
    scores = d(x)
    assert scores.shape == (4,)  # 9 samples: four pairs, the ninth left out
    x2 = x.clone()
    x2[1] = -x2[1]  # the second sample of the first pair
    changed_scores = d(x2)
    assert changed_scores[0] != scores[0] and torch.equal(changed_scores[1:], scores[1:])
    x2 = x.clone()
    x2[8] = -x2[8]
    assert torch.equal(d(x2), scores)


@pytest.mark.parametrize("key", ["gan", "dcgan", "dcgan-cond"])
def test_spectral_norm_gives_each_layer_unit_spectral_norm(key):
    model = tiny(key, spectral_norm=True)
    d = model.discriminator.train()
    x, y = batch(8)
    layers = [m for m in d.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.Embedding))]
    assert layers and all(torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in layers)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in d.modules())
    if key.startswith("dcgan"):  # the DCGAN initialisation reached the weights under the normalisation
        assert d.body[0].parametrizations.weight.original.std().item() == pytest.approx(0.02, rel=0.2)
    with torch.no_grad():
        for m in layers:  # far from unit norm before the normalisation, whatever the initialisation
            m.parametrizations.weight.original.mul_(
                5 / torch.linalg.matrix_norm(m.parametrizations.weight.original.flatten(1), ord=2)
            )
        for _ in range(200):  # one power iteration per training forward pass
            d(x * 2 - 1, y if model.conditional else None)
    d.eval()  # eval mode uses the estimate without updating it
    for m in layers:
        assert torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2) == pytest.approx(1.0, rel=1e-2), m


def test_minibatch_std_gives_each_sample_its_groups_spread():
    h = torch.randn(8, 3, 2, 2, dtype=torch.float64)
    out = gan_module.MinibatchStd(4)(h)
    assert torch.equal(out[:, :3], h)
    for k in range(8):  # groups are strided: sample k is in group k % 2 with samples k % 2, k % 2 + 2, ...
        members = h[k % 2 :: 2]  # (4, 3, 2, 2)
        expected = (members.var(0, unbiased=False) + 1e-8).sqrt().mean()
        assert torch.allclose(out[k, 3], expected.expand(2, 2))
    # D's score of one sample then depends on the other samples of its group, and only then
    x, _ = batch(8)
    for group, depends in ((0, False), (4, True)):
        d = tiny("dcgan", minibatch_std=group).discriminator.eval()
        x2 = x.clone()
        x2[2] = 1 - x2[2]  # same group as sample 0 (k % 2 == 0)
        assert (d(x * 2 - 1)[0] != d(x2 * 2 - 1)[0]).item() == depends


# ---------------------------------------------------------------------------- honest failure reporting


class FakeEvaluator:
    """Stands in for the evaluator network: predicts a fixed digit, or the requested one."""

    def __init__(self, predict):
        self._predict = predict

    def predict(self, x):
        return self._predict(len(x))


def test_epoch_end_warns_when_the_discriminator_wins():
    model = tiny("gan", lr_g=1e-7, lr_d=5e-3)  # a frozen generator against a fast discriminator
    opts = optimizers(model)
    x, y = batch(32)
    for i in range(40):
        train_step(model, x, y, opts, step=i)
    model.epoch_end(0)  # the first epoch, while D learns, may not trip the warning
    for i in range(40, 60):
        train_step(model, x, y, opts, step=i)
    out = model.epoch_end(1)
    assert out["epoch_d_real"] > 0.95 and out["epoch_d_fake"] < 0.05
    assert "gan epoch 1: discriminator wins outright" in out["warning"]
    assert out["coverage_check"] == "skipped: no evaluator network"
    # Averages restart each epoch.
    assert model.epoch_end(2) == {"coverage_check": "skipped: no evaluator network"}


def test_epoch_end_reports_collapse_and_label_following():
    model = tiny("gan")
    out = model.epoch_end(4, evaluator=FakeEvaluator(lambda n: torch.arange(n) % 3))  # three digits only
    assert out["class_coverage"] == 3 and out["max_class_share"] == pytest.approx(0.334, abs=1e-3)
    assert "samples collapsed onto few digits: only 3 of 10 digits" in out["warning"]

    assert "warning" not in model.epoch_end(5, evaluator=FakeEvaluator(lambda n: torch.arange(n) * 10 // n))  # all ten
    cond = tiny("cgan")
    out = cond.epoch_end(1, evaluator=FakeEvaluator(lambda n: torch.arange(n) * 10 // n))  # = default_labels
    assert out["cond_accuracy"] == 1.0 and "warning" not in out
    zeros = FakeEvaluator(lambda n: torch.zeros(n, dtype=torch.long))
    assert (
        "conditional samples do not follow their labels (evaluator accuracy 10.0%"
        in cond.epoch_end(2, zeros)["warning"]
    )


def test_state_dict_round_trip_keeps_samples_and_reads_the_step_count_of_older_runs():
    model = tiny("dcgan-cond", d_steps=2)
    opts = optimizers(model)
    for i in range(3):
        train_step(model, *batch(), opts, step=i)
    clone = tiny("dcgan-cond", d_steps=2)
    clone.load_state_dict({**model.state_dict(), "n_steps": torch.tensor(3)})  # the buffer runs of before held
    gen = lambda: torch.Generator().manual_seed(9)  # noqa: E731
    torch.testing.assert_close(clone.sample(10, generator=gen()), model.sample(10, generator=gen()))


# ---------------------------------------------------------------------------- through the shared trainer


def tiny_data(n: int = 96):
    from genzoo.data import Dataset

    g = torch.Generator().manual_seed(0)
    x = torch.zeros(n, 1, 28, 28)
    y = torch.arange(n) % 10
    for i in range(n):  # a band per digit, with a little noise: easy, but not constant
        x[i, 0, 4 + 2 * y[i]:6 + 2 * y[i]] = 1
    x = (x + 0.1 * torch.rand(x.shape, generator=g)).clamp(0, 1)
    return Dataset("synthetic-bands", "tests", x, y, x[:20], y[:20])


def test_trainer_writes_metrics_grids_and_one_gif_frame_per_epoch(tmp_path, monkeypatch):
    from PIL import Image

    from genzoo import trainer

    monkeypatch.setattr(training_loop, "evaluator_or_reason", lambda device: (None, "no asset in this test"))
    run = trainer.train("cgan", tiny_data(), tmp_path / "run", device="cpu", progress=False,
                        train_overrides={"epochs": 3, "batch_size": 32, "log_every": 1, "n_grid": 20},
                        model_overrides={"latent_dim": 8, "widths": (16, 32)})
    frames = sorted((run / "samples").glob("epoch_*.png"))
    assert [f.name for f in frames] == ["epoch_001.png", "epoch_002.png", "epoch_003.png"]
    with Image.open(run / "samples" / "progress.gif") as gif:
        assert gif.n_frames == 3  # consecutive identical frames would be merged: these must differ
    assert (run / "samples" / "interpolation.png").exists()
    log = runs.read_metrics_log(run)
    steps = [r for r in log if "loss_d" in r]
    assert len(steps) == 9 and all({"loss_g", "d_real", "d_fake"} <= set(r) for r in steps)
    epochs = [r for r in log if "epoch_loss_d" in r]
    assert [r["epoch"] for r in epochs] == [1, 2, 3]
    assert all(r["coverage_check"] == "skipped: no evaluator network" for r in epochs)
    assert all(r["evaluator"] == "unavailable: no asset in this test" for r in epochs)
    loaded = runs.load(run)
    assert isinstance(loaded, ConditionalGAN) and loaded.sample(10, y=7).shape == (10, 1, 28, 28)


def test_resume_mid_run_gives_identical_weights(tmp_path, monkeypatch):
    import signal

    from genzoo import trainer

    monkeypatch.setattr(training_loop, "evaluator_or_reason", lambda device: (None, "no asset in this test"))
    data = tiny_data()
    settings = dict(device="cpu", progress=False, train_overrides={"epochs": 2, "batch_size": 32, "sample_every": 0},
                    model_overrides={"latent_dim": 8, "widths": (8, 4), "conditional": True, "d_steps": 2})
    whole = trainer.train("dcgan", data, tmp_path / "whole", **settings)

    # The same run, interrupted by SIGINT in the middle of epoch 2 (after step 4 of 6), then resumed.
    calls = {"n": 0}
    original = DCGAN.train_step

    def interrupting_step(self, x, y, optimizers, **kwargs):
        out = original(self, x, y, optimizers, **kwargs)
        calls["n"] += 1
        if calls["n"] == 4:
            signal.raise_signal(signal.SIGINT)  # the trainer stops cleanly after this step and checkpoints
        return out

    monkeypatch.setattr(DCGAN, "train_step", interrupting_step)
    part = tmp_path / "part"
    with pytest.raises(KeyboardInterrupt):  # checkpointed first, then the interrupt goes on
        trainer.train("dcgan", data, part, **settings)
    checkpoint = torch.load(part / "checkpoint.pt", weights_only=True)
    assert checkpoint["step"] == 4
    monkeypatch.setattr(DCGAN, "train_step", original)
    trainer.train("dcgan", data, part, device="cpu", progress=False, resume=True)

    from safetensors.torch import load_file

    a, b = load_file(str(whole / "model.safetensors")), load_file(str(part / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    # The epoch averages too: epoch 2's running sums of steps 3 and 4 travelled in the checkpoint.
    epoch_records = [[r for r in runs.read_metrics_log(run) if "epoch_loss_d" in r] for run in (whole, part)]
    assert [r["epoch"] for r in epoch_records[1]] == [1, 2]
    for key in ("epoch_loss_d", "epoch_loss_g", "epoch_d_real", "epoch_d_fake"):
        assert [r[key] for r in epoch_records[0]] == [r[key] for r in epoch_records[1]], key


def test_weights_saved_without_epoch_sums_still_load():
    model = tiny("gan")
    old = {k: v for k, v in model.state_dict().items() if k not in ("epoch_sums", "epoch_steps")}
    clone = tiny("gan")
    clone.epoch_sums.fill_(3.0)
    assert clone.load_state_dict(old, strict=True).missing_keys == []
    assert int(clone.epoch_steps) == 0 and not clone.epoch_sums.any()


def test_averaged_generator_normalises_with_statistics_of_its_own_weights():
    """The EMA generator's first batch norm follows z @ W.T with z ~ N(0, I): mean 0, variance |W_row|^2 exactly.

    Its running statistics must be those of the averaged W (estimated from 2,048 draws: a few per cent),
    not the raw generator's (which a copy of the raw running statistics would give).
    """
    model = tiny("dcgan", ema_decay=0.9)
    opts = optimizers(model)
    for seed in range(6):
        train_step(model, *batch(seed=seed), opts, step=seed)
    rng = torch.get_rng_state()
    model.sample(4, generator=torch.Generator().manual_seed(0))  # brings the statistics up to date
    assert torch.equal(rng, torch.get_rng_state())  # fixed draws: training's random stream is untouched
    linear, norm = model.generator_ema.project[0], model.generator_ema.project[1]
    expected_var = linear.weight.detach().pow(2).sum(1)  # (C0 * 49,)
    ratio = norm.running_var / expected_var
    assert (ratio - 1).abs().mean() < 0.05 and (ratio - 1).abs().max() < 0.25
    assert norm.running_mean.abs().mean() < 0.05 * expected_var.sqrt().mean()
    raw_var = model.generator.project[1].running_var
    assert (raw_var / expected_var - 1).abs().mean() > 0.5  # the raw generator's statistics would be far off
    # A reloaded model recomputes the same statistics from the same weights.
    clone = tiny("dcgan", ema_decay=0.9)
    clone.load_state_dict(model.state_dict())
    clone.sampling_network()
    torch.testing.assert_close(clone.generator_ema.project[1].running_var, norm.running_var, rtol=0, atol=0)


def test_wgan_gp_defaults_are_the_papers_and_explicit_settings_win(tmp_path, monkeypatch):
    """Gulrajani et al. 2017, Algorithm 1: alpha = 1e-4, n_critic = 5, Adam (beta1, beta2) = (0, 0.9)."""
    from genzoo import trainer

    model = DCGAN(loss="wgan-gp")
    assert (model.config.lr_g, model.config.lr_d, model.config.d_steps) == (1e-4, 1e-4, 5)
    opts = model.configure_optimizers(TrainConfig(**model.train_defaults))
    assert all(o.param_groups[0]["betas"] == (0.0, 0.9) and o.param_groups[0]["lr"] == 1e-4 for o in opts.values())
    gan = GAN(loss="wgan-gp", lr_g=3e-4, d_steps=2)  # explicit values win, the others follow the loss
    assert (gan.config.lr_g, gan.config.lr_d, gan.config.d_steps) == (3e-4, 1e-4, 2)
    plain = GAN()  # other losses keep Radford et al.'s settings
    assert (plain.config.lr_g, plain.config.lr_d, plain.config.d_steps) == (2e-4, 2e-4, 1)
    assert (plain.train_defaults["beta1"], plain.train_defaults["beta2"]) == (0.5, 0.999)

    monkeypatch.setattr(training_loop, "evaluator_or_reason", lambda device: (None, "no asset in this test"))
    settings = dict(
        device="cpu", progress=False, model_overrides={"latent_dim": 8, "widths": (16, 32), "loss": "wgan-gp"}
    )
    lengths = {"steps": 1, "epochs": 0, "batch_size": 16, "sample_every": 0}
    run = trainer.train("gan", tiny_data(32), tmp_path / "paper", train_overrides=lengths, **settings)
    config = runs.read_config(run)
    assert (config["train"]["beta1"], config["train"]["beta2"], config["hparams"]["d_steps"]) == (0.0, 0.9, 5)
    run = trainer.train("gan", tiny_data(32), tmp_path / "mine", train_overrides={**lengths, "beta1": 0.5}, **settings)
    assert (runs.read_config(run)["train"]["beta1"], runs.read_config(run)["train"]["beta2"]) == (0.5, 0.9)


def test_the_generator_step_cadence_follows_the_trainers_step_not_the_calls():
    model = tiny("gan", d_steps=2)
    opts = optimizers(model)
    g0 = params(model.generator)
    train_step(model, *batch(), opts, step=4)  # the 5th step: D only
    assert all(torch.equal(a, b) for a, b in zip(g0, model.generator.parameters()))
    train_step(model, *batch(), opts, step=5)  # a resumed run's first call can be a generator step
    assert changed(g0, model.generator)


def test_interpolate_command_writes_rows(tmp_path, monkeypatch):
    from PIL import Image

    from genzoo import cli, trainer

    monkeypatch.setattr(training_loop, "evaluator_or_reason", lambda device: (None, "no asset in this test"))
    run = trainer.train("gan", tiny_data(32), tmp_path / "run", device="cpu", progress=False,
                        train_overrides={"epochs": 1, "batch_size": 16, "sample_every": 0},
                        model_overrides={"latent_dim": 8, "widths": (16, 32)})
    out = tmp_path / "line.png"
    assert cli.main(["interpolate", str(run), "--steps", "6", "--rows", "3", "--out", str(out)]) == 0
    with Image.open(out) as image:  # 2x enlarged 3 x 6 grid of 28 px images with 2 px padding
        assert image.size == (2 * (6 * 30 + 2), 2 * (3 * 30 + 2))
    assert cli.main(["interpolate", str(run), "--label", "3"]) == 2  # unconditional: a one-line error
