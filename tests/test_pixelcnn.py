"""PixelCNN (plain, gated, class-conditional): causality, exact normalisation, samplers, completion."""

import itertools

import pytest
import torch

from genzoo.config import ConfigError
from genzoo.models.autoregressive import (
    cached_logits,
    complete,
    completion_rows,
    generate,
    pixel_probabilities,
    visible_mask,
)
from genzoo.models.pixelcnn import MaskedConv2d, PixelCNN

VARIANTS = {
    "plain": {},
    "gated": {"gated": True},
    "plain-conditional": {"conditional": True},
    "gated-conditional": {"gated": True, "conditional": True},
}


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(size: int, **kw) -> PixelCNN:
    torch.manual_seed(0)
    model = PixelCNN(image_size=size, channels=8, n_layers=3, head_channels=8, **kw).double()
    if model.conditional:  # zero-initialised by default; make the labels matter
        torch.nn.init.normal_(model.class_bias.weight)
    return model


def all_binary_3x3() -> torch.Tensor:
    """Every binary 3x3 image, (512, 1, 3, 3) float64."""
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=9)), dtype=torch.float64).view(512, 1, 3, 3)


def input_gradients(model, size: int) -> torch.Tensor:
    """(P, P): entry [k, m] is d logit of pixel k / d input pixel m, P = size * size (raster order)."""
    n = size * size
    x = torch.rand(n, 1, size, size, dtype=torch.float64, requires_grad=True)
    y = torch.arange(n) % 10 if model.conditional else None
    logits = model.logits(x, y).view(n, n)  # (P copies, P pixels)
    logits[torch.arange(n), torch.arange(n)].sum().backward()  # copy k contributes pixel k's logit only
    return x.grad.view(n, n)


def full_mask(kh: int, kw: int, mask: str) -> torch.Tensor:
    """The (kh, kw) mask written out: rows above the centre; on its row, left of it (A), also the centre (B),
    or the whole row (vertical)."""
    m = torch.zeros(kh, kw, dtype=torch.float64)
    m[: kh // 2] = 1
    m[kh // 2, : kw if mask == "vertical" else kw // 2 + (mask == "B")] = 1
    return m


@pytest.mark.parametrize(("kernel", "mask"), [((7, 7), "A"), ((3, 3), "B"), ((3, 3), "vertical"), ((5, 5), "vertical"),
                                              ((1, 7), "A"), ((1, 3), "B"), ((1, 3), "A"), ((1, 1), "A")])
def test_masked_conv_is_the_same_padded_conv_with_the_masked_weight(kernel, mask):
    """forward (which convolves only the weight's unmasked corner), row and pixel against F.conv2d of the
    whole (kh, kw) weight times the mask, with "same" padding."""
    torch.manual_seed(0)
    conv = MaskedConv2d(3, 5, kernel, mask).double()
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64)
    kh, kw = kernel
    weight = conv.weight * full_mask(kh, kw, mask)
    expected = torch.nn.functional.conv2d(x, weight, conv.bias, padding=(kh // 2, kw // 2))
    torch.testing.assert_close(conv(x), expected, rtol=0, atol=1e-12)
    for i in range(6):
        torch.testing.assert_close(conv.row(x, i), expected[:, :, i : i + 1], rtol=0, atol=1e-12)
        for j in range(7):
            torch.testing.assert_close(conv.pixel(x, i, j), expected[:, :, i : i + 1, j : j + 1], rtol=0, atol=1e-12)
    # the gradient reaches only the unmasked taps
    conv(x).sum().backward()
    assert (conv.weight.grad[:, :, full_mask(kh, kw, mask) == 0] == 0).all()
    assert (conv.weight.grad[:, :, full_mask(kh, kw, mask) == 1] != 0).all()


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_logit_ignores_its_own_and_later_pixels(variant):
    grads = input_gradients(tiny(6, **VARIANTS[variant]), 6)
    own_and_later = torch.triu(torch.ones(36, 36, dtype=torch.bool))
    assert grads[own_and_later].abs().max().item() == 0.0
    assert (grads[~own_and_later] != 0).any()


def test_gated_has_no_blind_spot_and_plain_has_one():
    earlier = ~torch.triu(torch.ones(36, 36, dtype=torch.bool))
    gated = input_gradients(tiny(6, gated=True), 6)
    assert (gated[earlier] != 0).all()  # every earlier pixel reaches every logit
    plain = input_gradients(tiny(6), 6)
    # pixel (3, 0) of the plain model misses (2, 4): up and to the right, the blind spot.
    assert plain[3 * 6 + 0, 2 * 6 + 4] == 0.0 and gated[3 * 6 + 0, 2 * 6 + 4] != 0.0


@pytest.mark.parametrize("variant", VARIANTS)
def test_probabilities_of_all_512_binary_3x3_images_sum_to_one(variant):
    model = tiny(3, **VARIANTS[variant])
    images = all_binary_3x3()
    y = torch.full((512,), 7) if model.conditional else None
    total = model.log_prob(images, y).double().exp().sum().item()
    assert total == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_cached_logits_equal_the_whole_network_logits(variant):
    # Finer than equal samples: a cache error too small to flip a drawn pixel still shows here.
    model = tiny(5, **VARIANTS[variant]).eval()
    x = torch.bernoulli(torch.full((3, 1, 5, 5), 0.4, dtype=torch.float64), generator=torch.Generator().manual_seed(2))
    y = torch.arange(3) if model.conditional else None
    torch.testing.assert_close(cached_logits(model, x, y), model.logits(x, y), rtol=0, atol=1e-10)


def test_samples_follow_the_distribution_the_model_scores():
    """Every pixel's share of ones in 6,000 samples against its exact marginal, summed over all 512 binary 3x3
    images weighted by the model's own probabilities (weights scaled up so that pixels are far from even odds)."""
    model = tiny(3, gated=True)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    images = all_binary_3x3()
    probs = model.log_prob(images).double().exp()
    exact = (probs[:, None] * images.view(512, 9)).sum(0)  # P(pixel k = 1)
    assert (exact - 0.5).abs().max() > 0.3  # a pixel the draws could get the wrong way round is there
    u = torch.rand(6000, 1, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    drawn = generate(model, u, None, method="cached").view(6000, 9).mean(0)
    torch.testing.assert_close(drawn, exact, atol=0.03, rtol=0)  # 5 standard errors at most


@pytest.mark.parametrize("variant", VARIANTS)
def test_cached_sampler_equals_naive_sampler_given_the_same_noise(variant):
    model = tiny(5, **VARIANTS[variant])
    u = torch.rand(4, 1, 5, 5, generator=torch.Generator().manual_seed(1))
    y = torch.arange(4) if model.conditional else None
    naive = generate(model, u, y, method="naive")
    cached = generate(model, u, y, method="cached")
    assert torch.equal(naive, cached)
    assert 0 < naive.mean() < 1 and set(naive.unique().tolist()) <= {0.0, 1.0}


def test_same_generator_same_samples_and_shape():
    model = tiny(6, gated=True, conditional=True)
    a = model.sample(4, y=torch.tensor([1, 2, 3, 4]), generator=torch.Generator().manual_seed(5))
    b = model.sample(4, y=torch.tensor([1, 2, 3, 4]), generator=torch.Generator().manual_seed(5))
    assert a.shape == (4, 1, 6, 6) and torch.equal(a, b)
    c = model.sample(4, y=torch.tensor([1, 2, 3, 4]), generator=torch.Generator().manual_seed(6))
    assert not torch.equal(a, c)


@pytest.mark.parametrize("hide", ["bottom-half", "right-half", "box"])
def test_completion_never_changes_visible_pixels(hide, tmp_path):
    model = tiny(8, gated=True)
    x = torch.bernoulli(torch.full((3, 1, 8, 8), 0.5), generator=torch.Generator().manual_seed(0)).double()
    out = complete(model, x, hide, n_completions=2, generator=torch.Generator().manual_seed(0))
    visible = visible_mask(hide, 8)
    assert out.shape == (2, 3, 1, 8, 8)
    for completion in out:
        assert torch.equal(completion[visible.expand(3, -1, -1, -1)], x.float()[visible.expand(3, -1, -1, -1)])
    assert (out != x.float()).any()  # the hidden part is filled in, not copied
    rows = completion_rows(model, x, hide, n_completions=2, generator=torch.Generator().manual_seed(0))
    assert rows.shape == (4, 3, 1, 8, 8) and torch.equal(rows[2:], out)  # original, visible, then the completions


def test_loss_is_mean_nll_in_nats_and_bits_per_dim():
    model = tiny(6)
    x = torch.bernoulli(torch.full((5, 1, 6, 6), 0.3), generator=torch.Generator().manual_seed(0)).double()
    out = model.loss(x)
    nll = -model.log_prob(x).mean()
    assert out["loss"].item() == pytest.approx(nll.item())
    assert out["bits_per_dim"].item() == pytest.approx(nll.item() / (36 * 0.6931471805599453))
    p = pixel_probabilities(model, x)
    assert p.shape == x.shape and 0 < p.min() and p.max() < 1


@pytest.mark.parametrize("gated", [False, True])
def test_training_steps_lower_the_nll(gated, nll_after_steps_on_a_bar):
    torch.manual_seed(0)
    first, last = nll_after_steps_on_a_bar(
        PixelCNN(image_size=8, channels=16, n_layers=2, head_channels=16, gated=gated)
    )
    assert last < 0.6 * first


def test_bad_config_and_bad_input_name_the_value():
    with pytest.raises(ConfigError, match="kernel=4: must be an odd number"):
        PixelCNN(kernel=4)
    with pytest.raises(ConfigError, match="channels=7: must be even"):
        PixelCNN(channels=7)
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 1, 28, 28\), got \(2, 1, 8, 8\)"):
        PixelCNN(channels=8, n_layers=1, head_channels=8).log_prob(torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="--hide 'top': must be one of bottom-half, right-half, box"):
        visible_mask("top")


def test_labels_are_checked_and_a_single_label_is_broadcast():
    model = tiny(5, conditional=True)
    a = model.sample(3, y=torch.tensor(4), generator=torch.Generator().manual_seed(0))
    b = model.sample(3, y=torch.full((3,), 4), generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match=r"pixelcnn: labels must be digits 0..9, got values in \[1, 12\]"):
        model.sample(3, y=torch.tensor([1, 2, 12]))


def test_genzoo_complete_writes_rows_from_a_trained_run(tiny, tmp_path):
    import genzoo
    from genzoo.cli import main
    from genzoo.commands import complete

    run = genzoo.train("pixelcnn", data=tiny, out=tmp_path / "run", device="cpu", seed=0, progress=False,
                       train_overrides={"steps": 2, "epochs": 0, "batch_size": 8, "sample_every": 0},
                       model_overrides={"channels": 8, "n_layers": 1, "head_channels": 8, "gated": True})
    assert (run / "completions-bottom-half.png").exists() and (run / "pixel_probabilities.png").exists()
    out = tmp_path / "box.png"
    assert main(["complete", str(run), "--hide", "box", "-n", "2", "--completions", "1", "--out", str(out)]) == 0
    assert out.exists()
    with pytest.raises(ConfigError, match="--hide 'top': must be one of"):
        complete(run, "top")
