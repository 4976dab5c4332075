"""DDPM: the noise schedule's closed forms against the paper's recursions, the samplers against a model with
known epsilon, guidance at w = 0 and 1, the loss against a plain recomputation, training and resume."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

import genzoo
from genzoo.config import ConfigError
from genzoo.constants import N_CLASSES
from genzoo.models.ddpm import DDPM
from genzoo.models.diffusion import NoiseSchedule, Sampler, SelfAttention, ema_update, make_betas
from genzoo.train_config import TrainConfig

TINY = {"widths": (8, 16), "res_blocks": 1, "attn_heads": 2, "timesteps": 100, "sample_steps": 5}
TINY_LATENT = {**TINY, "space": "latent", "widths": (16,), "ae_widths": (8, 8), "latent_channels": 2}


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    yield


def scrambled(model: DDPM, seed: int = 0) -> DDPM:
    """The model with every parameter redrawn: zero-initialised output layers would make many checks trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return model.eval()


# ---------------------------------------------------------------------------- the schedule


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_closed_form_noising_matches_iterated_single_steps(kind):
    # q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I), iterated from x_0 in float64: the mean
    # coefficient multiplies by sqrt(1 - beta_t) and the variance goes v -> (1 - beta_t) v + beta_t.
    betas = make_betas(kind, 200).tolist()
    schedule = NoiseSchedule(make_betas(kind, 200))
    x0 = torch.tensor([[[[0.7, -0.3]]]], dtype=torch.float64)
    mean_coef, var = 1.0, 0.0
    for t, beta in enumerate(betas):
        mean_coef *= math.sqrt(1 - beta)
        var = (1 - beta) * var + beta
        tt = torch.tensor([t])
        closed_mean = schedule.q_sample(x0, tt, torch.zeros_like(x0))
        closed_std = schedule.q_sample(torch.zeros_like(x0), tt, torch.ones_like(x0))
        torch.testing.assert_close(closed_mean, mean_coef * x0, rtol=1e-5, atol=1e-7)
        assert closed_std[0, 0, 0, 0].item() == pytest.approx(math.sqrt(var), rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_posterior_matches_the_product_of_the_two_gaussians(kind):
    # q(x_{t-1} | x_t, x_0) is proportional to q(x_t | x_{t-1}) q(x_{t-1} | x_0): precisions add, and the
    # mean is the precision-weighted combination (computed here in float64 from the betas alone).
    betas = make_betas(kind, 100)
    schedule = NoiseSchedule(betas)
    alpha_bar = torch.cumprod(1 - betas, 0)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(1, 1, 3, 3, generator=g, dtype=torch.float64)
    xt = torch.randn(1, 1, 3, 3, generator=g, dtype=torch.float64)
    for t in (1, 2, 10, 50, 99):
        beta, abar_prev = betas[t].item(), alpha_bar[t - 1].item()
        precision = (1 - beta) / beta + 1 / (1 - abar_prev)
        mean = (math.sqrt(1 - beta) / beta * xt + math.sqrt(abar_prev) / (1 - abar_prev) * x0) / precision
        got_mean, got_var = schedule.posterior(x0, xt, torch.tensor([t]))
        torch.testing.assert_close(got_mean, mean, rtol=1e-5, atol=1e-6)
        assert got_var.item() == pytest.approx(1 / precision, rel=1e-5)
    mean0, var0 = schedule.posterior(x0, xt, torch.tensor([0]))  # the last step lands on x_0 itself
    torch.testing.assert_close(mean0, x0, rtol=0, atol=1e-6)
    assert var0.item() == 0


def test_schedule_endpoints():
    linear = NoiseSchedule(make_betas("linear", 1000))
    assert linear.alpha_bar[0].item() == pytest.approx(1 - 1e-4, rel=1e-7)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64).tolist()
    expected_end = math.exp(sum(math.log(1 - b) for b in betas))
    assert linear.alpha_bar[-1].item() == pytest.approx(expected_end, rel=1e-4)  # about 4e-5
    cosine = NoiseSchedule(make_betas("cosine", 1000))
    f = [math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2 for t in (0, 1, 500)]
    assert cosine.alpha_bar[0].item() == pytest.approx(f[1] / f[0], rel=1e-6)
    assert cosine.alpha_bar[499].item() == pytest.approx(f[2] / f[0], rel=1e-5)  # (t = 500 in the paper)
    assert cosine.alpha_bar[-1].item() < 1e-6 and cosine.betas.max().item() <= 0.999 + 1e-7
    for s in (linear, cosine):
        assert (s.alpha_bar[1:] < s.alpha_bar[:-1]).all() and s.alpha_bar.dtype == torch.float32


# ---------------------------------------------------------------------------- the samplers


def point_mass(schedule: NoiseSchedule, target: torch.Tensor):
    """(x_t, t) -> (eps, x_0) of the optimal denoiser when the data is the one image `target`:
    x_0 = target, and eps = (x_t - sqrt(abar_t) target) / sqrt(1 - abar_t)."""

    def predict(x, t):
        tt = torch.full((len(x),), t)
        return schedule.eps_from_x0(x, tt, target.expand_as(x)), target.expand_as(x)

    return predict


@pytest.mark.parametrize("steps", [100, 10])
def test_ddim_eta0_follows_the_deterministic_ode_path_of_a_known_model(steps):
    # For a point mass the probability-flow ODE path is x_t = sqrt(abar_t) x* + sqrt(1 - abar_t) e, with
    # e = (x_T - sqrt(abar_T) x*) / sqrt(1 - abar_T) fixed: DDIM (eta = 0) must stay on it at every step.
    schedule = NoiseSchedule(make_betas("linear", 100))
    target = torch.rand(1, 1, 6, 6) * 2 - 1
    sampler = Sampler(schedule, "ddim", steps=steps, eta=0.0)
    x_T = torch.randn(3, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    abar = schedule.alpha_bar.double()
    e = (x_T.double() - abar[-1].sqrt() * target) / (1 - abar[-1]).sqrt()
    out, kept = sampler.run(point_mass(schedule, target), x_T, keep=steps + 1)
    assert len(kept) == steps + 1
    for state, t in zip(kept[1:-1], sampler.timesteps[1:]):
        torch.testing.assert_close(state.double(), abar[t].sqrt() * target + (1 - abar[t]).sqrt() * e,
                                   rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out, target.expand_as(out), rtol=0, atol=1e-4)
    again, _ = sampler.run(point_mass(schedule, target), x_T, generator=torch.Generator().manual_seed(9))
    assert torch.equal(out, again)  # eta = 0 draws nothing


def test_ddim_with_eta1_and_all_steps_is_the_ancestral_step():
    # sigma_t(eta = 1) is the posterior's standard deviation, and its mean is the posterior mean.
    schedule = NoiseSchedule(make_betas("cosine", 50))
    ddim, ancestral = Sampler(schedule, "ddim", 50, eta=1.0), Sampler(schedule, "ancestral", 50)
    assert ddim.timesteps == ancestral.timesteps == list(range(49, -1, -1))
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 1, 4, 4, generator=g), torch.randn(2, 1, 4, 4, generator=g)
    for t in (49, 20, 1):
        xt = schedule.q_sample(x0, torch.tensor([t, t]), eps)
        a = ddim.step(eps, x0, t, t - 1, xt, torch.Generator().manual_seed(5))
        b = ancestral.step(eps, x0, t, t - 1, xt, torch.Generator().manual_seed(5))
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_sampler_options_are_checked():
    schedule = NoiseSchedule(make_betas("linear", 100))
    with pytest.raises(ConfigError, match=r"steps=50: the ancestral sampler takes all 100 steps"):
        Sampler(schedule, "ancestral", 50)
    with pytest.raises(ConfigError, match=r"steps=200: must lie in 1..100"):
        Sampler(schedule, "ddim", 200)
    with pytest.raises(ConfigError, match=r"eta=1.5"):
        Sampler(schedule, "ddim", 10, eta=1.5)


# ---------------------------------------------------------------------------- the network's layout


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_self_attention_against_a_plain_recomputation(layout):
    # Multi-head self-attention over the H*W positions, written from its definition: the 1x1 convolution's
    # 3C channels are q, k, v in turn, each split into heads of d channels; softmax(q.k / sqrt(d)) weighs v.
    B, C, H, W, heads = 2, 8, 3, 5, 2
    d = C // heads
    attn = SelfAttention(C, heads)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in attn.parameters():  # the output convolution starts at zero: redraw everything
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    x = torch.randn(B, C, H, W, generator=g).contiguous(memory_format=layout)
    q, k, v = attn.qkv(attn.norm(x)).flatten(2).split(C, dim=1)  # (B, C, HW) each
    q, k, v = (a.reshape(B, heads, d, H * W) for a in (q, k, v))  # (B, heads, d, HW)
    weights = torch.softmax(torch.einsum("bhdi,bhdj->bhij", q, k) / math.sqrt(d), dim=-1)  # (B, heads, HW, HW)
    mixed = torch.einsum("bhij,bhdj->bhdi", weights, v).reshape(B, C, H, W)
    torch.testing.assert_close(attn(x), x + attn.out(mixed), rtol=1e-5, atol=1e-5)


def test_unet_gives_the_same_outputs_and_gradients_on_channels_last_feature_maps():
    # The attention takes its input in either layout (benchmarks/train_step_ab.py times the U-Net on channels_last
    # feature maps): outputs and gradients must not depend on it beyond float rounding.
    model = scrambled(DDPM(**TINY, attn_resolution=14))  # attention at 14 x 14 as well
    net = model.unet
    g = torch.Generator().manual_seed(0)
    x, t, y = torch.randn(3, 1, 28, 28, generator=g), torch.tensor([3, 50, 99]), torch.tensor([1, 5, N_CLASSES])
    results = []
    for layout in (torch.contiguous_format, torch.channels_last):
        hook = net.stem.register_forward_hook(lambda m, i, out, layout=layout: out.contiguous(memory_format=layout))
        net.zero_grad()
        out = net(x, t, y)
        (out * torch.linspace(-1, 1, 28)).square().mean().backward()
        hook.remove()
        results.append((out.detach(), {n: p.grad.clone() for n, p in net.named_parameters()}))
    (out_nchw, grads_nchw), (out_nhwc, grads_nhwc) = results
    torch.testing.assert_close(out_nhwc, out_nchw, rtol=1e-4, atol=1e-5)
    for name, grad in grads_nchw.items():
        torch.testing.assert_close(grads_nhwc[name], grad, rtol=1e-4, atol=1e-4 * grad.abs().max().item() + 1e-8,
                                   msg=name)


# ---------------------------------------------------------------------------- the model


def test_guidance_0_and_1_are_the_unconditional_and_conditional_predictions():
    model = scrambled(DDPM(**TINY))
    net = model.unet
    g = torch.Generator().manual_seed(0)
    x, t, y = torch.randn(4, 1, 28, 28, generator=g), torch.tensor([3, 50, 99, 0]), torch.tensor([1, 5, 7, 9])
    null = torch.full((4,), N_CLASSES)
    with torch.no_grad():
        cond, uncond = net(x, t, y), net(x, t, null)
        assert not torch.allclose(cond, uncond)
        torch.testing.assert_close(model.guided_output(net, x, t, y, 0.0), uncond)
        torch.testing.assert_close(model.guided_output(net, x, t, y, 1.0), cond)
        torch.testing.assert_close(model.guided_output(net, x, t, y, 3.0), uncond + 3 * (cond - uncond),
                                   rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_loss_against_a_plain_recomputation(prediction):
    model = scrambled(DDPM(**TINY, prediction=prediction, noise_schedule="linear")).train()
    x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    y = torch.arange(6)
    torch.manual_seed(7)
    got = model.loss(x, y)["loss"]
    # The same draws in the same order: t, the noise, then the label dropping.
    torch.manual_seed(7)
    t = torch.randint(0, 100, (6,))
    noise = torch.randn(6, 1, 28, 28)
    drop = torch.rand(6) < model.config.p_uncond
    alpha_bar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 100, dtype=torch.float64), 0)  # Ho et al.'s betas
    a = alpha_bar[t].float().view(-1, 1, 1, 1)
    x0 = 2 * x - 1
    xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
    labels = torch.where(drop, torch.full_like(y, N_CLASSES), y)
    target = noise if prediction == "eps" else a.sqrt() * noise - (1 - a).sqrt() * x0
    expected = ((model.unet(xt, t, labels) - target) ** 2).mean()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def mean_loss(model, x, y, step=None, draws=4) -> float:
    with torch.random.fork_rng():
        torch.manual_seed(123)
        with torch.no_grad():
            return sum(float(model.loss(x, y, step=step)["loss"]) for _ in range(draws)) / draws


@pytest.mark.parametrize("space", ["pixel", "latent"])
def test_a_tiny_model_learns_in_a_few_steps(tiny, space):
    torch.manual_seed(0)
    model = DDPM(**(TINY if space == "pixel" else {**TINY_LATENT, "first_stage_steps": 20}))
    x, y = tiny.train_x[:32], tiny.train_y[:32]
    opt = model.configure_optimizers(TrainConfig(lr=3e-3))["model"]
    stages = [(0, 20), (20, 60)] if space == "latent" else [(0, 40)]
    for first, last in stages:
        before = mean_loss(model.train(), x, y, step=first)
        for step in range(first, last):
            opt.zero_grad(set_to_none=True)
            model(x, y, step=step)["loss"].backward()
            opt.step()
            model.after_optimizer_step(step)
        after = mean_loss(model.train(), x, y, step=last - 1)
        assert after < 0.85 * before, (space, first, before, after)
    if space == "latent":
        assert model.latent_scale.item() > 0  # measured on the first diffusion batch
    ema = dict(model.ema.named_parameters())
    changed = [name for name, p in model.unet.named_parameters() if not torch.equal(p, ema[name])]
    assert changed, "the EMA follows the trained weights at a lag"


def test_same_generator_same_images_and_options_are_used():
    model = scrambled(DDPM(**TINY))
    y = torch.tensor([0, 4, 9])
    for options in ({}, {"eta": 0.5}, {"sampler": "ancestral", "guidance": 0.0}):
        a = model.sample(3, y=y, generator=torch.Generator().manual_seed(3), **options)
        b = model.sample(3, y=y, generator=torch.Generator().manual_seed(3), **options)
        c = model.sample(3, y=y, generator=torch.Generator().manual_seed(4), **options)
        assert a.shape == (3, 1, 28, 28) and 0 <= a.min() and a.max() <= 1
        assert torch.equal(a, b) and not torch.equal(a, c), options
    g1 = model.sample(3, y=y, generator=torch.Generator().manual_seed(3), guidance=1.0)
    g3 = model.sample(3, y=y, generator=torch.Generator().manual_seed(3), guidance=3.0)
    assert not torch.equal(g1, g3)
    assert model.sample_settings(sampler="ancestral") == {"sampler": "ancestral", "steps": 100, "eta": 1.0,
                                                          "guidance": 2.0}
    with pytest.raises(genzoo.models.base.CapabilityError, match="ddpm: sampling has no option temperature"):
        model.sample(2, temperature=0.5)


def test_resume_in_either_stage_gives_the_same_weights_ema_included(tiny, tmp_path):
    train = {"steps": 12, "epochs": 0, "batch_size": 32, "log_every": 4, "n_grid": 4, "sample_every": 0,
             "test_every": 0, "warmup_steps": 0}
    hparams = {**TINY_LATENT, "first_stage_steps": 6, "sample_steps": 2}
    kw = {"data": tiny, "device": "cpu", "seed": 0, "progress": False}
    genzoo.train("ddpm", out=tmp_path / "full", train_overrides=train, model_overrides=hparams, **kw)
    for stop in (4, 9):  # in the autoencoder's stage, and in the diffusion stage
        run = tmp_path / f"stopped{stop}"
        genzoo.train("ddpm", out=run, train_overrides={**train, "steps": stop}, model_overrides=hparams, **kw)
        genzoo.train("ddpm", out=run, resume=True, train_overrides={"steps": 12}, **kw)
        a, b = load_file(str(tmp_path / "full" / "model.safetensors")), load_file(str(run / "model.safetensors"))
        assert set(a) == set(b) and any(k.startswith("ema.") for k in a) and "latent_scale" in a
        for key in a:
            assert torch.equal(a[key], b[key]), (stop, key)
    model = genzoo.load(tmp_path / "full")
    assert model.latent_scale.item() > 0
    images = model.sample(2, y=torch.tensor([1, 2]), generator=torch.Generator().manual_seed(0))
    assert images.shape == (2, 1, 28, 28)


def test_config_errors_name_the_value():
    with pytest.raises(ConfigError, match=r"sample_steps=2000: must be <= timesteps=1000"):
        DDPM(sample_steps=2000)
    with pytest.raises(ConfigError, match=r"p_uncond=1.5"):
        DDPM(p_uncond=1.5)
    model = DDPM(**TINY, conditional=False)
    with pytest.raises(genzoo.models.base.CapabilityError, match="unconditional"):
        model.sample(2, y=torch.tensor([1, 2]))


@pytest.mark.parametrize("n", [0, 5, 100_000])
def test_ema_update_is_the_moving_average_with_its_warm_up(n):
    """ema <- d ema + (1 - d) net, d = min(ema_decay, (1 + n) / (10 + n)) after n earlier updates (the warm-up
    keeps a short run's average from sitting near the initial weights)."""
    torch.manual_seed(0)
    net, ema = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = [p.detach().clone() for p in ema.parameters()]
    ema_update(ema, net, n, 0.999)
    d = {0: 0.1, 5: 6 / 15, 100_000: 0.999}[n]
    for old, new, target in zip(before, ema.parameters(), net.parameters()):
        torch.testing.assert_close(new.detach(), d * old + (1 - d) * target.detach())
