"""PixelRNN (Row LSTM, Diagonal BiLSTM): causality, exact normalisation, samplers, completion, skew."""

import itertools

import pytest
import torch

from genzoo.config import ConfigError
from genzoo.models.autoregressive import cached_logits, complete, generate, visible_mask
from genzoo.models.pixelrnn import PixelRNN, skew, unskew

VARIANTS = ("row", "diagonal")


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(size: int, variant: str) -> PixelRNN:
    torch.manual_seed(0)
    return PixelRNN(image_size=size, variant=variant, channels=8, hidden=4, n_layers=2, head_channels=8).double()


def input_gradients(model, size: int) -> torch.Tensor:
    """(P, P): entry [k, m] is d logit of pixel k / d input pixel m, P = size * size (raster order)."""
    n = size * size
    x = torch.rand(n, 1, size, size, dtype=torch.float64, requires_grad=True)
    logits = model.logits(x).view(n, n)  # (P copies, P pixels)
    logits[torch.arange(n), torch.arange(n)].sum().backward()  # copy k contributes pixel k's logit only
    return x.grad.view(n, n)


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_logit_ignores_its_own_and_later_pixels(variant):
    grads = input_gradients(tiny(6, variant), 6)
    own_and_later = torch.triu(torch.ones(36, 36, dtype=torch.bool))
    assert grads[own_and_later].abs().max().item() == 0.0
    assert (grads[~own_and_later] != 0).any()


def test_diagonal_sees_more_of_the_row_above_than_the_row_lstm():
    # Pixel (5, 0): the Row LSTM's triangular context misses (4, 4) up and to the right; the
    # right-to-left diagonal LSTM reaches it. What the diagonal model still misses is only the
    # last pixel of the row above, for the pixels of a row left of column W - 4 (here 0 and 1;
    # 24 of 28 on digits): the mask-A input conv hides each pixel from its own LSTM input, so
    # (4, 5) enters only through row 5's inputs at columns >= W - 4 = 2, as in the paper's design.
    row, diagonal = input_gradients(tiny(6, "row"), 6), input_gradients(tiny(6, "diagonal"), 6)
    assert row[5 * 6 + 0, 4 * 6 + 4] == 0.0 and diagonal[5 * 6 + 0, 4 * 6 + 4] != 0.0
    earlier = ~torch.triu(torch.ones(36, 36, dtype=torch.bool))
    missed = {(divmod(k, 6), divmod(m, 6)) for k, m in ((diagonal == 0) & earlier).nonzero().tolist()}
    assert missed == {((i, j), (i - 1, 5)) for i in range(1, 6) for j in (0, 1)}


@pytest.mark.parametrize("variant", VARIANTS)
def test_probabilities_of_all_512_binary_3x3_images_sum_to_one(variant):
    model = tiny(3, variant)
    images = torch.tensor(list(itertools.product([0.0, 1.0], repeat=9)), dtype=torch.float64).view(512, 1, 3, 3)
    assert model.log_prob(images).double().exp().sum().item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_cached_logits_equal_the_whole_network_logits(variant):
    # Finer than equal samples: a cache error too small to flip a drawn pixel still shows here.
    model = tiny(5, variant).eval()
    x = torch.bernoulli(torch.full((3, 1, 5, 5), 0.4, dtype=torch.float64), generator=torch.Generator().manual_seed(2))
    y = None
    torch.testing.assert_close(cached_logits(model, x, y), model.logits(x, y), rtol=0, atol=1e-10)


@pytest.mark.parametrize("variant", VARIANTS)
def test_cached_sampler_equals_naive_sampler_given_the_same_noise(variant):
    model = tiny(5, variant)
    u = torch.rand(3, 1, 5, 5, generator=torch.Generator().manual_seed(1))
    naive, cached = generate(model, u, method="naive"), generate(model, u, method="cached")
    assert torch.equal(naive, cached)
    assert 0 < naive.mean() < 1


@pytest.mark.parametrize("variant", VARIANTS)
def test_completion_never_changes_visible_pixels(variant):
    model = tiny(5, variant)
    x = torch.bernoulli(torch.full((2, 1, 5, 5), 0.5), generator=torch.Generator().manual_seed(0))
    visible = visible_mask("right-half", 5).expand(2, -1, -1, -1)
    out = complete(model, x, "right-half", n_completions=3, generator=torch.Generator().manual_seed(0))
    for completion in out:
        assert torch.equal(completion[visible], x[visible])


def test_same_generator_same_samples():
    model = tiny(5, "diagonal")
    a = model.sample(3, generator=torch.Generator().manual_seed(2))
    b = model.sample(3, generator=torch.Generator().manual_seed(2))
    assert a.shape == (3, 1, 5, 5) and torch.equal(a, b)


@pytest.mark.parametrize("variant", VARIANTS)
def test_training_steps_lower_the_nll(variant, nll_after_steps_on_a_bar):
    torch.manual_seed(0)
    first, last = nll_after_steps_on_a_bar(PixelRNN(image_size=8, variant=variant, channels=16, hidden=8, n_layers=2,
                                                    head_channels=16))
    assert last < 0.6 * first


def test_skew_puts_diagonals_in_columns_and_unskew_inverts_it():
    x = torch.arange(12.0).view(1, 1, 3, 4)
    s = skew(x)
    assert s.shape == (1, 1, 3, 6)
    assert s[0, 0, :, 2].tolist() == [2.0, 5.0, 8.0]  # pixels (0, 2), (1, 1), (2, 0): i + j = 2
    assert torch.equal(unskew(s, 4), x)
    x = torch.randn(2, 3, 5, 7)
    reference = torch.zeros(2, 3, 5, 11)
    for r in range(5):
        reference[:, :, r, r : r + 7] = x[:, :, r]
    assert torch.equal(skew(x), reference) and torch.equal(unskew(reference, 7), x)


def test_bad_config_names_the_value():
    with pytest.raises(ConfigError, match="variant='grid': must be one of row, diagonal"):
        PixelRNN(variant="grid")
    with pytest.raises(ConfigError, match="kernel=2: must be an odd number"):
        PixelRNN(kernel=2)
