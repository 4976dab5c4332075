"""Diffusion against closed forms written out here: every prediction type (eps, v, x_0) converted to every other
and back on random tensors, one sampler step and whole short samplings of a model whose output is known, and the
editor's conditioning drops (each condition and their joint) over many draws.

The schedule's tables are recomputed here from the betas in float64 (abar_t = prod(1 - beta_s)), so that a slip
in a table or in a conversion cannot cancel itself out."""

from __future__ import annotations

import math

import pytest
import torch

from genzoo.models.ddpm import DDPM
from genzoo.models.diffusion import NoiseSchedule, Sampler, make_betas
from genzoo.models.instruct import InstructPix2Pix

T = 60
TIMES = (0, 1, 17, 40, T - 1)


def abar_table(kind: str) -> torch.Tensor:
    return torch.cumprod(1 - make_betas(kind, T).double(), 0)


def coefficients(kind: str, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sqrt(abar_t), sqrt(1 - abar_t), shaped (B, 1, 1, 1), float64."""
    abar = abar_table(kind)[t].view(-1, 1, 1, 1)
    return abar.sqrt(), (1 - abar).sqrt()


def close(got: torch.Tensor, expected: torch.Tensor, scale: torch.Tensor | float = 1.0) -> None:
    """Equal up to float32 rounding, which a division by a small coefficient (scale) magnifies."""
    err = (got.double() - expected.double()).abs()
    bound = 2e-5 * (1 + expected.double().abs()) * scale
    assert (err <= bound).all(), f"largest error {err.max().item():.3g} (bound {bound.min().item():.3g} there)"


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_every_prediction_type_converts_to_every_other_and_back(kind):
    schedule = NoiseSchedule(make_betas(kind, T))
    g = torch.Generator().manual_seed(0)
    n = len(TIMES)
    t = torch.tensor(TIMES)
    x0, eps = torch.randn(n, 1, 5, 5, generator=g), torch.randn(n, 1, 5, 5, generator=g)
    a, s = coefficients(kind, t)
    xt = a * x0.double() + s * eps.double()  # q(x_t | x_0)
    v = a * eps.double() - s * x0.double()  # Salimans & Ho's v
    # the inverse relations, from the two above: x_0 = a x_t - s v, eps = s x_t + a v
    assert torch.allclose(a * xt - s * v, x0.double()) and torch.allclose(s * xt + a * v, eps.double())
    close(schedule.q_sample(x0, t, eps), xt)
    close(schedule.v_target(x0, eps, t), v)
    xt32 = xt.float()
    # eps -> (eps, x_0): x_0 = (x_t - s eps) / a, which divides by a (small at the last step)
    got_eps, got_x0 = schedule.split(eps, xt32, t, "eps")
    close(got_eps, eps)
    close(got_x0, x0, scale=1 / a)
    # v -> (eps, x_0)
    got_eps, got_x0 = schedule.split(v.float(), xt32, t, "v")
    close(got_eps, eps)
    close(got_x0, x0)
    # x_0 -> eps: eps = (x_t - a x_0) / s, which divides by s (small at the first step)
    close(schedule.eps_from_x0(xt32, t, x0), eps, scale=1 / s)
    # and back: eps -> x_0 -> eps, v -> eps -> v, x_0 -> eps -> v -> x_0
    _, x0_back = schedule.split(eps, xt32, t, "eps")
    close(schedule.eps_from_x0(xt32, t, x0_back), eps, scale=1 / (a * s))
    eps_v, x0_v = schedule.split(v.float(), xt32, t, "v")
    close(schedule.v_target(x0_v, eps_v, t), v)
    eps_from = schedule.eps_from_x0(xt32, t, x0)
    _, x0_round = schedule.split(schedule.v_target(x0, eps_from, t), xt32, t, "v")
    close(x0_round, x0, scale=1 / s)


def test_the_schedule_tables_are_the_closed_forms():
    betas = make_betas("cosine", T).double()
    abar = torch.cumprod(1 - betas, 0)
    prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    s = NoiseSchedule(betas)
    expected = {"betas": betas, "alphas": 1 - betas, "alpha_bar": abar, "alpha_bar_prev": prev,
                "sqrt_alpha_bar": abar.sqrt(), "sqrt_one_minus_alpha_bar": (1 - abar).sqrt(),
                # Ho et al. eq. 7
                "posterior_var": betas * (1 - prev) / (1 - abar),
                "coef_x0": prev.sqrt() * betas / (1 - abar), "coef_xt": (1 - betas).sqrt() * (1 - prev) / (1 - abar)}
    for name, value in expected.items():
        assert getattr(s, name).dtype == torch.float32, name
        torch.testing.assert_close(getattr(s, name).double(), value, rtol=1e-6, atol=1e-9, msg=name)
    assert s.timesteps == T
    # buffers that follow the model's device, rebuilt from the config rather than saved
    assert dict(s.named_buffers()).keys() == expected.keys() and s.state_dict() == {}


def hand_ddim_step(kind, eps, x0, t, t_prev, eta, noise):
    """Song et al. eq. 12 written out: x_prev = sqrt(abar_prev) x_0 + sqrt(1 - abar_prev - sigma^2) eps + sigma z."""
    abar = abar_table(kind)
    a_t, a_prev = abar[t].item(), (abar[t_prev].item() if t_prev >= 0 else 1.0)
    sigma = eta * math.sqrt((1 - a_prev) / (1 - a_t)) * math.sqrt(1 - a_t / a_prev)
    return math.sqrt(a_prev) * x0.double() + math.sqrt(1 - a_prev - sigma**2) * eps.double() + sigma * noise.double()


@pytest.mark.parametrize("eta", [0.0, 0.6, 1.0])
def test_a_ddim_step_is_the_hand_computed_step(eta):
    schedule = NoiseSchedule(make_betas("linear", T))
    sampler = Sampler(schedule, "ddim", steps=7, eta=eta)
    g = torch.Generator().manual_seed(3)
    x, eps, x0 = (torch.randn(2, 1, 4, 4, generator=g) for _ in range(3))
    for t, t_prev in ((T - 1, 49), (20, 10), (5, -1)):
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(t))
        generator = torch.Generator().manual_seed(t)
        got = sampler.step(eps, x0, t, t_prev, x, generator)
        close(got, hand_ddim_step("linear", eps, x0, t, t_prev, eta, noise))
        if eta == 0:  # a deterministic step draws nothing from the caller's generator
            assert torch.equal(generator.get_state(), torch.Generator().manual_seed(t).get_state())


def test_an_ancestral_step_is_the_posterior_mean_plus_its_noise():
    schedule = NoiseSchedule(make_betas("cosine", T))
    sampler = Sampler(schedule, "ancestral", steps=T)
    betas, abar = make_betas("cosine", T).double(), abar_table("cosine")
    g = torch.Generator().manual_seed(4)
    x, eps, x0 = (torch.randn(2, 1, 4, 4, generator=g) for _ in range(3))
    for t in (T - 1, 30, 1, 0):
        prev = abar[t - 1].item() if t > 0 else 1.0
        b, a_t = betas[t].item(), abar[t].item()
        mean = math.sqrt(prev) * b / (1 - a_t) * x0.double() + math.sqrt(1 - b) * (1 - prev) / (1 - a_t) * x.double()
        std = math.sqrt(b * (1 - prev) / (1 - a_t))
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(t))
        generator = torch.Generator().manual_seed(t)
        got = sampler.step(eps, x0, t, t - 1, x, generator)
        close(got, mean + (std * noise.double() if t > 0 else 0))  # the last step adds no noise
        drew = not torch.equal(generator.get_state(), torch.Generator().manual_seed(t).get_state())
        assert drew == (t > 0)  # nor draws any


class Known(torch.nn.Module):
    """A stand-in U-Net with a known output: 0.5 x_t + 0.1 + 0.01 t (+ 0.2 label, where labels are given)."""

    def forward(self, x, t, y=None):
        out = 0.5 * x + 0.1 + 0.01 * t.view(-1, 1, 1, 1).to(x)
        if y is not None:
            out = out + 0.2 * y.view(-1, 1, 1, 1).to(x)
        return out


@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize(("sampler", "steps", "eta"), [("ddim", 4, 0.0), ("ddim", 5, 0.7), ("ancestral", 12, 1.0)])
def test_sampling_a_model_with_a_known_output_is_the_hand_computed_chain(prediction, sampler, steps, eta):
    """The whole sampler in pixel space, written out: x_T from the generator, then at each step the network's
    output read as eps or v, x_0 from it and clipped to [-1, 1], eps made consistent with the clipped x_0, one
    step, and at the end (x_0 + 1) / 2."""
    model = DDPM(widths=(8, 16), res_blocks=1, timesteps=12, conditional=False, prediction=prediction,
                 ema_decay=0.0, sampler=sampler, sample_steps=steps, sample_eta=eta).eval()
    model.unet = Known()
    got = model.sample(3, generator=torch.Generator().manual_seed(8))

    abar = torch.cumprod(1 - make_betas("cosine", 12).double(), 0)
    betas = make_betas("cosine", 12).double()
    g = torch.Generator().manual_seed(8)
    x = torch.randn(3, 1, 28, 28, generator=g).double()
    times = [round(i * 11 / (steps - 1)) for i in range(steps)][::-1] if sampler == "ddim" else list(range(11, -1, -1))
    for i, t in enumerate(times):
        t_prev = times[i + 1] if i + 1 < len(times) else -1
        a, s = abar[t].sqrt().item(), (1 - abar[t]).sqrt().item()
        out = 0.5 * x + 0.1 + 0.01 * t
        if prediction == "eps":
            x0 = (x - s * out) / a
        else:  # v = a eps - s x_0, x_t = a x_0 + s eps  =>  x_0 = a x_t - s v
            x0 = a * x - s * out
        x0 = x0.clamp(-1, 1)
        eps = (x - a * x0) / s
        a_prev = abar[t_prev].item() if t_prev >= 0 else 1.0
        if sampler == "ancestral":
            b = betas[t].item()
            x = math.sqrt(a_prev) * b / (1 - abar[t].item()) * x0 + \
                math.sqrt(1 - b) * (1 - a_prev) / (1 - abar[t].item()) * x
            if t > 0:
                x = x + math.sqrt(b * (1 - a_prev) / (1 - abar[t].item())) * torch.randn(x.shape, generator=g)
        else:
            sigma = eta * math.sqrt((1 - a_prev) / (1 - abar[t].item()) * (1 - abar[t].item() / a_prev))
            x = math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - sigma**2, 0.0)) * eps
            if sigma > 0:
                x = x + sigma * torch.randn(x.shape, generator=g)
    expected = ((x + 1) / 2).clamp(0, 1)
    assert 0.05 < expected.std() and 0 < expected.mean() < 1  # not a trivial image
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-4)


def test_guided_sampling_with_a_known_output_combines_the_two_predictions():
    """Classifier-free guidance with a network whose label term is known: w = 3 puts 3 times the label's effect
    on top of the null label's output (the null label is N_CLASSES = 10); w = 0 and 1 are the two outputs, and
    w = 2 is guided like any other w."""
    model = DDPM(widths=(8, 16), res_blocks=1, timesteps=12, sample_steps=4, conditional=True, ema_decay=0.0).eval()
    model.unet = Known()
    x, t, y = torch.randn(2, 1, 28, 28), torch.tensor([3, 9]), torch.tensor([2, 7])
    base = 0.5 * x + 0.1 + 0.01 * t.view(-1, 1, 1, 1)
    null, cond = base + 0.2 * 10, base + 0.2 * y.view(-1, 1, 1, 1)
    for w in (0.0, 1.0, 2.0, 3.0):
        torch.testing.assert_close(model.guided_output(model.unet, x, t, y, w), null + w * (cond - null))


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_the_predictor_guides_with_the_labels_and_the_scale_it_is_given(prediction):
    """What the sampler steps with, by hand: the guided output of a network with a known label term, read as eps or
    v, x_0 from it clipped to [-1, 1], eps made consistent with the clipped x_0; no labels is the null label's."""
    model = DDPM(widths=(8, 16), res_blocks=1, timesteps=12, sample_steps=4, conditional=True, ema_decay=0.0,
                 prediction=prediction).eval()
    model.unet = Known()
    abar = torch.cumprod(1 - make_betas("cosine", 12).double(), 0)
    g = torch.Generator().manual_seed(6)
    x, y = 2 * torch.randn(2, 1, 28, 28, generator=g), torch.tensor([2, 7])
    inside = []  # the share of x_0's pixels the clipping leaves alone, in each case
    for labels, w in ((y, 0.0), (y, 1.0), (y, 2.5), (None, 2.5)):
        for t in (11, 4, 0):
            a, s = abar[t].sqrt().item(), (1 - abar[t]).sqrt().item()
            base = 0.5 * x.double() + 0.1 + 0.01 * t
            null = base + 0.2 * 10
            out = null if labels is None else null + w * (base + 0.2 * y.view(-1, 1, 1, 1) - null)
            x0 = ((x - s * out) / a if prediction == "eps" else a * x - s * out).clamp(-1, 1)
            eps = (x - a * x0) / s
            inside.append((x0.abs() < 1).double().mean().item())
            got_eps, got_x0 = model.predictor(labels, w)(x, t)
            close(got_x0, x0, scale=1 / a)
            close(got_eps, eps, scale=1 / (a * s))
    assert any(0 < share < 1 for share in inside)  # the clipping is exercised: some pixels clipped, some not


# ---------------------------------------------------------------------------- the editor's conditioning drops

TINY_EDITOR = {"widths": (8, 16), "res_blocks": 1, "attn_heads": 2, "timesteps": 20, "sample_steps": 2,
               "text_dim": 16, "text_layers": 1, "text_heads": 2, "trigram_buckets": 64}


@pytest.mark.parametrize(("p_text", "p_image", "p_both"), [(0.1, 0.2, 0.3), (0.3, 0.0, 0.15), (0.0, 0.25, 0.0)])
def test_each_drop_rate_and_the_joint_over_many_draws(p_text, p_image, p_both):
    """Distinct rates so that a swap shows: text alone, image alone and both (what two-scale guidance trains
    eps(0, 0) on) each at its configured rate, and nothing dropped at 1 minus their sum."""
    model = InstructPix2Pix(**TINY_EDITOR, p_drop_text=p_text, p_drop_image=p_image, p_drop_both=p_both)
    n = 200_000
    torch.manual_seed(0)
    text, image = model.drops(n)
    rates = {"text only": (text & ~image).double().mean().item(), "image only": (image & ~text).double().mean().item(),
             "both": (text & image).double().mean().item(), "neither": (~text & ~image).double().mean().item()}
    expected = {"text only": p_text, "image only": p_image, "both": p_both, "neither": 1 - p_text - p_image - p_both}
    for key, p in expected.items():
        sd = math.sqrt(p * (1 - p) / n)
        assert abs(rates[key] - p) <= 5 * sd + 1e-9, (key, rates[key], p)
    # the marginals: the text is dropped at p_text + p_both, the image at p_image + p_both
    assert abs(text.double().mean().item() - (p_text + p_both)) < 0.005
    assert abs(image.double().mean().item() - (p_image + p_both)) < 0.005


@pytest.mark.parametrize(("p_text", "p_image", "p_both"),
                         [(0.25, 0.25, 0.25), (0.25, 0.25, 0.0), (0.0, 0.5, 0.25), (0.5, 0.0, 0.5)])
def test_the_drop_kinds_split_the_unit_interval_at_their_rates(monkeypatch, p_text, p_image, p_both):
    """One uniform u in [0, 1) (torch.rand's range) per example: text alone for u in [0, p_text), the image alone
    in [p_text, p_text + p_image), both in the next p_both, nothing after: half-open intervals, so that each kind
    comes at exactly its rate and a rate of 0 never drops. Checked at every edge and one float32 step either side
    (the rates here are exact in float32)."""
    model = InstructPix2Pix(**TINY_EDITOR, p_drop_text=p_text, p_drop_image=p_image, p_drop_both=p_both)
    step = 2.0 ** -24  # torch.rand's float32 draws are multiples of this
    edges = (p_text, p_text + p_image, p_text + p_image + p_both)
    u = sorted({v for e in (0.0, *edges, 1.0) for v in (e - step, e, e + step) if 0 <= v < 1})
    monkeypatch.setattr(torch, "rand", lambda n, **kwargs: torch.tensor(u, dtype=torch.float32)[:n])
    text, image = model.drops(len(u))
    expected_text = [v < edges[0] or edges[1] <= v < edges[2] for v in u]
    expected_image = [edges[0] <= v < edges[2] for v in u]
    assert (text.tolist(), image.tolist()) == (expected_text, expected_image), u


def scrambled(model):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return model


@pytest.mark.parametrize("dropped", ["text", "image", "both", "none"])
def test_the_loss_drops_the_condition_it_says(dropped):
    """With one drop kind at rate 1, the training loss is the loss of the U-Net fed the null instruction (text),
    a zero image (image), or both: computed here with the draws (drops, t, noise) replayed."""
    rates = {"text": (1.0, 0.0, 0.0), "image": (0.0, 1.0, 0.0), "both": (0.0, 0.0, 1.0), "none": (0.0, 0.0, 0.0)}
    p_text, p_image, p_both = rates[dropped]
    model = scrambled(InstructPix2Pix(**TINY_EDITOR, p_drop_text=p_text, p_drop_image=p_image, p_drop_both=p_both,
                                      ema_decay=0.0, word_noise=0.0)).train()
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    inputs, outputs, texts = x.flip(-1), x, ["mirror it"] * 4
    torch.manual_seed(5)
    got = model.triple_loss(inputs, texts, outputs)["loss"]
    torch.manual_seed(5)
    torch.rand(4)  # the drop draw
    t = torch.randint(0, 20, (4,))
    noise = torch.randn(4, 1, 28, 28)
    a, s = (abar := torch.cumprod(1 - make_betas("cosine", 20).double(), 0)[t].view(-1, 1, 1, 1)).sqrt(), \
        (1 - abar).sqrt()
    x0 = 2 * outputs - 1
    xt = (a * x0 + s * noise).float()
    image = torch.zeros_like(inputs) if dropped in ("image", "both") else 2 * inputs - 1
    with torch.no_grad():
        text = model.null_text.expand(4, -1) if dropped in ("text", "both") else model.encode_text(texts)
        expected = ((model.unet(torch.cat([xt, image], 1), t, cond=text) - noise) ** 2).mean()
    torch.testing.assert_close(got.detach(), expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------- the latent model's two-stage loss

TINY_LATENT = {"widths": (16,), "res_blocks": 1, "attn_heads": 2, "timesteps": 20, "sample_steps": 2,
               "space": "latent", "ae_widths": (8, 8), "latent_channels": 2, "kl_weight": 0.3, "p_uncond": 0.5,
               "ema_decay": 0.0}


def test_a_latent_ddpm_trains_its_autoencoder_then_diffuses_its_scaled_latent_means():
    """Rombach et al. in two stages, by hand: before `first_stage_steps` the loss is the autoencoder's, per-image
    Bernoulli nats of a reparameterised z plus kl_weight times KL(N(mu, sigma^2) || N(0, I)); from then on (and
    without a step) the eps loss of Ho et al. on the latent means scaled to unit standard deviation, a scale that
    training measures on its first batch and keeps, and evaluation only borrows."""
    model = scrambled(DDPM(**TINY_LATENT, first_stage_steps=3)).train()
    x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    y = torch.arange(6)
    with torch.no_grad():
        model.latent_scale.zero_()  # (scrambled drew it too)
        mu, logvar = model.first_stage.encoder(2 * x - 1).double().chunk(2, dim=1)
    logvar = logvar.clamp(-30, 10)

    for step in (0, 2):  # stage one
        torch.manual_seed(5)
        got = model.loss(x, y, step=step)
        torch.manual_seed(5)
        z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape).double()
        with torch.no_grad():
            logits = model.first_stage.decoder(z.float()).double()
        p = torch.sigmoid(logits).flatten(1)
        pixels = x.flatten(1).double()
        recon = -(pixels * p.log() + (1 - pixels) * (1 - p).log()).sum(1).mean()
        kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).flatten(1).sum(1).mean()
        assert float(got["stage"]) == 1.0
        close(got["loss"].detach(), recon + 0.3 * kl)
        assert float(model.latent_scale) == 0.0  # nothing measured in stage one

    def diffusion_loss(labels_dropped: bool) -> torch.Tensor:
        torch.manual_seed(6)
        t = torch.randint(0, 20, (6,))
        noise = torch.randn(6, 2, 7, 7)
        drop = torch.rand(6) < 0.5
        assert drop.any() and not drop.all()  # the seed drops some labels, not all
        a = torch.cumprod(1 - make_betas("cosine", 20).double(), 0)[t].view(-1, 1, 1, 1)
        x0 = mu * (1 / mu.float().std())
        xt = (a.sqrt() * x0 + (1 - a).sqrt() * noise).float()
        labels = torch.where(drop, torch.full_like(y, 10), y) if labels_dropped else y
        with torch.no_grad():
            return ((model.unet(xt, t, labels) - noise) ** 2).mean()

    model.eval()  # evaluation: no labels dropped, and the scale is not kept
    for step in (3, None):
        torch.manual_seed(6)
        got = model.loss(x, y, step=step)
        assert float(got["stage"]) == 2.0
        torch.testing.assert_close(got["loss"].detach(), diffusion_loss(False), rtol=1e-5, atol=1e-6)
        assert float(model.latent_scale) == 0.0
    model.train()
    torch.manual_seed(6)
    got = model.loss(x, y, step=3)
    torch.testing.assert_close(got["loss"].detach(), diffusion_loss(True), rtol=1e-5, atol=1e-6)
    assert float(model.latent_scale) == pytest.approx(1 / mu.float().std().item(), rel=1e-6)
