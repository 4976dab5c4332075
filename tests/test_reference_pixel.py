"""The pixel networks against plain NumPy re-computations of what the papers say they are.

Each test takes a tiny model with seeded weights, copies the raw weights out (the masks are NOT copied:
the reference applies its own, written from the paper's definition), recomputes every pixel's logit
with loops, and compares value for value with `model.logits`:

- PixelCNN (van den Oord et al. 2016a): 7x7-style mask A input, residual blocks 1x1 -> kxk mask B -> 1x1
  with `h + block(h)`, class bias added to every layer;
- gated PixelCNN (van den Oord et al. 2016b): vertical stack over the rows above (shifted down a row into
  the horizontal stack), horizontal stack over the row to the left, gates tanh * sigmoid, the horizontal
  residual after the first layer, one class bias per stack and layer;
- Row LSTM and Diagonal BiLSTM (van den Oord et al. 2016a): the recurrences written in image coordinates
  (no skewing), each layer `x + 1x1(LSTM states)`, the right-to-left direction shifted down a row.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from genzoo.models.autoregressive import cached_logits
from genzoo.models.pixelcnn import PixelCNN
from genzoo.models.pixelrnn import PixelRNN, lstm_update, skew, unskew

pytestmark = pytest.mark.usefixtures("one_thread")


def w(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy().copy()


def allowed(kh: int, kw: int, mask: str) -> np.ndarray:
    """Taps a masked kernel may use, from the paper: rows above the centre; on the centre row the
    taps left of it (A), also the centre (B), or the whole row (vertical stack)."""
    out = np.zeros((kh, kw), dtype=bool)
    for a in range(kh):
        for c in range(kw):
            if a < kh // 2:
                out[a, c] = True
            elif a == kh // 2:
                out[a, c] = mask == "vertical" or c < kw // 2 or (mask == "B" and c == kw // 2)
    return out


def conv(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, taps: np.ndarray | None = None) -> np.ndarray:
    """'Same'-padded convolution (cross-correlation) of x (C, H, W), by loops; only `taps` are used."""
    n_out, _, kh, kw = weight.shape
    _, height, width = x.shape
    out = np.repeat(bias[:, None, None], height * width, axis=1).reshape(n_out, height, width).astype(float)
    for a in range(kh):
        for c in range(kw):
            if taps is not None and not taps[a, c]:
                continue
            for i in range(height):
                for j in range(width):
                    ii, jj = i + a - kh // 2, j + c - kw // 2
                    if 0 <= ii < height and 0 <= jj < width:
                        out[:, i, j] += weight[:, :, a, c] @ x[:, ii, jj]
    return out


def conv1x1(x: np.ndarray, layer) -> np.ndarray:
    return np.einsum("oc,chw->ohw", w(layer.weight)[:, :, 0, 0], x) + w(layer.bias)[:, None, None]


def relu(a):
    return np.maximum(a, 0)


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def gate(a):
    half = len(a) // 2
    return np.tanh(a[:half]) * sigmoid(a[half:])


def head(model, h: np.ndarray) -> np.ndarray:
    """ReLU -> 1x1 -> ReLU -> 1x1 to one logit per pixel."""
    return conv1x1(relu(conv1x1(relu(h), model.head[1])), model.head[3])[0]


def images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((n, 1, size, size), 0.5, dtype=torch.float64), generator=g)


def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Seeded weights large enough that every path moves the logits (class biases are zero-initialised)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.4)
    return model


# ---------------------------------------------------------------------------- PixelCNN


def plain_pixelcnn_reference(model: PixelCNN, x: np.ndarray, y: int | None) -> np.ndarray:
    cfg = model.config
    conds = []
    if cfg.conditional:
        table = w(model.class_bias.weight)[y]
        widths = [cfg.channels] + [cfg.channels // 2] * cfg.n_layers
        conds = np.split(table, np.cumsum(widths)[:-1])
    bias = (lambda k: conds[k][:, None, None]) if cfg.conditional else (lambda k: 0.0)
    k0 = cfg.first_kernel
    h = conv(x, w(model.conv_in.weight), w(model.conv_in.bias), allowed(k0, k0, "A")) + bias(0)
    for index, block in enumerate(model.layers):
        t = relu(conv1x1(relu(h), block.down))
        mask_b = allowed(cfg.kernel, cfg.kernel, "B")
        t = relu(conv(t, w(block.conv.weight), w(block.conv.bias), mask_b) + bias(index + 1))
        h = h + conv1x1(t, block.up)  # the residual: once
    return head(model, h)


def gated_pixelcnn_reference(model: PixelCNN, x: np.ndarray, y: int | None) -> np.ndarray:
    cfg = model.config
    n_layers = len(model.layers)
    if cfg.conditional:
        conds = np.split(w(model.class_bias.weight)[y], n_layers * 2)  # (vertical, horizontal) per layer
    else:
        conds = [0.0] * (2 * n_layers)
    v = h = x
    for index, layer in enumerate(model.layers):
        first = index == 0
        k = cfg.first_kernel if first else cfg.kernel
        cond_v, cond_h = (c[:, None, None] if cfg.conditional else 0.0 for c in conds[2 * index : 2 * index + 2])
        v_pre = conv(v, w(layer.v_conv.weight), w(layer.v_conv.bias), allowed(k, k, "vertical"))
        v_down = np.zeros_like(v_pre)
        v_down[:, 1:] = v_pre[:, :-1]  # row r sees only rows < r
        h_pre = conv(h, w(layer.h_conv.weight), w(layer.h_conv.bias), allowed(1, k, "A" if first else "B"))
        h_new = conv1x1(gate(h_pre + conv1x1(v_down, layer.v_to_h) + cond_h), layer.h_out)
        v = gate(v_pre + cond_v)
        h = h_new if first else h + h_new  # the horizontal residual, from the second layer on
    return head(model, h)


@pytest.mark.parametrize("gated", [False, True], ids=["plain", "gated"])
@pytest.mark.parametrize("conditional", [False, True], ids=["unconditional", "conditional"])
def test_pixelcnn_logits_match_the_plain_computation(gated, conditional):
    torch.manual_seed(0)
    model = PixelCNN(image_size=5, channels=4, n_layers=2, first_kernel=5, kernel=3, head_channels=3,
                     gated=gated, conditional=conditional).double()
    randomise(model)
    x = images(3, 5)
    y = torch.tensor([2, 7, 2]) if conditional else None
    with torch.no_grad():
        got = model.logits(x, y)[:, 0].numpy()
    reference = gated_pixelcnn_reference if gated else plain_pixelcnn_reference
    for n in range(len(x)):
        expected = reference(model, x[n].numpy(), int(y[n]) if conditional else None)
        np.testing.assert_allclose(got[n], expected, rtol=1e-9, atol=1e-9)
    assert np.ptp(got) > 0.1  # the logits move: the comparison has something to compare


def test_pixelcnn_log_prob_is_the_bernoulli_sum_of_the_reference_logits():
    torch.manual_seed(0)
    model = randomise(PixelCNN(image_size=4, channels=4, n_layers=1, first_kernel=3, head_channels=3).double())
    x = images(2, 4, seed=3)
    with torch.no_grad():
        got = model.log_prob(x).numpy()
    for n in range(2):
        p = sigmoid(plain_pixelcnn_reference(model, x[n].numpy(), None))
        v = x[n, 0].numpy()
        np.testing.assert_allclose(got[n], np.sum(v * np.log(p) + (1 - v) * np.log(1 - p)), rtol=1e-6)  # float32 sum


def bernoulli_sum(logits: np.ndarray, x: np.ndarray) -> np.ndarray:
    """sum over pixels of x log sigmoid(l) + (1 - x) log(1 - sigmoid(l)), per image."""
    p = sigmoid(logits)
    return (x * np.log(p) + (1 - x) * np.log(1 - p)).reshape(len(x), -1).sum(1)


def test_a_conditional_pixelcnn_scores_and_trains_on_the_labels_it_is_given():
    """log p(x | y) is the Bernoulli sum of the logits given y (each label scores differently); the loss is its
    mean negated, in nats, and nll / (D log 2) bits per dimension; without labels log_prob refuses, saying why."""
    from genzoo.models.base import CapabilityError

    torch.manual_seed(0)
    model = randomise(PixelCNN(image_size=4, channels=4, n_layers=1, first_kernel=3, head_channels=3, gated=True,
                               conditional=True).double())
    x, y = images(3, 4, seed=5), torch.tensor([2, 7, 7])
    with torch.no_grad():
        got = model.log_prob(x, y).numpy()
        expected = bernoulli_sum(model.logits(x, y).numpy(), x.numpy())
        other = model.log_prob(x, torch.tensor([5, 0, 1])).numpy()
        out = model.loss(x, y)
        one = model.loss(x[:1], y[:1])  # a batch of one image
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert np.abs(other - got).min() > 1e-3
    assert float(out["loss"]) == pytest.approx(-expected.mean(), rel=1e-6)
    assert float(out["bits_per_dim"]) == pytest.approx(-expected.mean() / (16 * np.log(2)), rel=1e-6)
    assert float(one["bits_per_dim"]) == pytest.approx(-expected[0] / (16 * np.log(2)), rel=1e-6)
    message = ("pixelcnn: is class-conditional, log_prob gives log p(x | y) and needs the labels; "
               "pass them as log_prob(x, y), y (N,) ints in [0, 10)")
    with pytest.raises(CapabilityError) as caught:
        model.log_prob(x)
    assert str(caught.value) == message


@pytest.mark.parametrize("conditional", [False, True], ids=["unconditional", "conditional"])
def test_the_fast_sampler_draws_each_pixelcnn_pixel_from_the_whole_networks_probability(conditional, monkeypatch):
    """Raster order by hand: pixel (i, j) is 1 when u_ij < sigmoid(logit_ij) of the whole network given the pixels
    set so far; a completion starts from the known pixels and keeps the visible ones. The fast sampler gets the
    same images from its caches alone, never running the whole network."""
    from genzoo.models.autoregressive import sample_cached

    torch.manual_seed(0)
    model = randomise(PixelCNN(image_size=4, channels=4, n_layers=2, first_kernel=3, head_channels=3, gated=True,
                               conditional=conditional).double()).eval()
    if conditional:
        with torch.no_grad():  # class biases large enough that the labels change the images drawn
            model.class_bias.weight.mul_(6)
    g = torch.Generator().manual_seed(9)
    u = torch.rand(5, 1, 4, 4, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 3, 3, 8, 9]) if conditional else None
    known = images(5, 4, seed=6)
    visible = torch.zeros(5, 1, 4, 4, dtype=torch.bool)
    visible[:, :, :2] = True  # the top half given
    visible[:, :, 3, 1] = True  # and one pixel below it

    def by_hand(start: torch.Tensor | None, y=y) -> torch.Tensor:
        x = torch.zeros(5, 1, 4, 4, dtype=torch.float64) if start is None else torch.where(visible, start, 0.0)
        with torch.no_grad():
            for i in range(4):
                for j in range(4):
                    if start is not None and visible[0, 0, i, j]:
                        continue
                    p = torch.sigmoid(model.logits(x, y)[:, 0, i, j])
                    x[:, 0, i, j] = (u[:, 0, i, j] < p).double()
        return x

    with torch.no_grad():  # the first pixel's probability, which no other pixel changes
        p_first = torch.sigmoid(model.logits(torch.zeros(5, 1, 4, 4, dtype=torch.float64), y)[:, 0, 0, 0].float())
    on_p = u.clone()
    on_p[:, 0, 0, 0] = p_first.double()  # u = p exactly: P(x = 1) = P(u < p), so a draw on p itself gives 0
    expected, completed = by_hand(None), by_hand(known)
    assert 0 < expected.mean() < 1 and not torch.equal(completed, expected)
    if conditional:
        assert not torch.equal(by_hand(None, torch.tensor([5, 0, 1, 2, 3])), expected)
    monkeypatch.setattr(model, "logits", lambda *args: pytest.fail("the fast sampler ran the whole network"))
    assert torch.equal(sample_cached(model, u, y), expected)
    assert torch.equal(sample_cached(model, u, y, known, visible), completed)
    assert (sample_cached(model, on_p, y)[:, 0, 0, 0] == 0).all()


# ---------------------------------------------------------------------------- PixelRNN


def lstm(gates: np.ndarray, c: np.ndarray):
    """Gates (4h,) in the order input, forget, output, candidate; returns (h, c)."""
    i, f, o, g = np.split(gates, 4)
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    return sigmoid(o) * np.tanh(c), c


def row_lstm_reference(layer, x: np.ndarray, kernel: int) -> np.ndarray:
    """Row by row: gates = (1 x k mask-B conv of the row) + (width-k conv of the row above's h)."""
    hid = layer.hidden
    _, height, width = x.shape
    gates_in = conv(x, w(layer.input_to_state.weight), w(layer.input_to_state.bias), allowed(1, kernel, "B"))
    ss_w, ss_b = w(layer.state_to_state.weight), w(layer.state_to_state.bias)  # (4h, h, k), (4h,)
    h_prev, c_prev = np.zeros((hid, width)), np.zeros((hid, width))
    states = np.zeros((hid, height, width))
    for i in range(height):
        h_row, c_row = np.zeros((hid, width)), np.zeros((hid, width))
        for j in range(width):
            recurrent = ss_b.copy()
            for t in range(kernel):
                jj = j + t - kernel // 2
                if 0 <= jj < width:
                    recurrent += ss_w[:, :, t] @ h_prev[:, jj]
            h_row[:, j], c_row[:, j] = lstm(gates_in[:, i, j] + recurrent, c_prev[:, j])
        states[:, i] = h_row
        h_prev, c_prev = h_row, c_row
    return x + conv1x1(states, layer.out)


def diagonal_bilstm_reference(layer, x: np.ndarray) -> np.ndarray:
    """Two LSTMs over the image, each state from the pixel above and the previous one along the row
    (left for the left-to-right direction, right for the other); the cell state comes along the row."""
    hid = layer.hidden
    _, height, width = x.shape
    ss_w, ss_b = w(layer.state_to_state.weight), w(layer.state_to_state.bias)  # (8h, h, 2), (8h,)
    states = []
    for d, columns in ((0, list(range(width))), (1, list(reversed(range(width))))):
        rows = slice(4 * hid * d, 4 * hid * (d + 1))
        gates_in = conv1x1(x, layer.input_to_state[d])  # (4h, H, W)
        h, c = np.zeros((hid, height, width)), np.zeros((hid, height, width))
        step = -1 if d == 0 else 1  # where the previous pixel along the row is
        for i in range(height):
            for j in columns:
                above = h[:, i - 1, j] if i > 0 else np.zeros(hid)
                jj = j + step
                before_h = h[:, i, jj] if 0 <= jj < width else np.zeros(hid)
                before_c = c[:, i, jj] if 0 <= jj < width else np.zeros(hid)
                gates = gates_in[:, i, j] + ss_w[rows, :, 0] @ above + ss_w[rows, :, 1] @ before_h + ss_b[rows]
                h[:, i, j], c[:, i, j] = lstm(gates, before_c)
        states.append(h)
    right_to_left = np.zeros_like(states[1])
    right_to_left[:, 1:] = states[1][:, :-1]  # shifted down one row: no pixel sees itself or later ones
    return x + conv1x1(states[0] + right_to_left, layer.out)


@pytest.mark.parametrize("variant", ["row", "diagonal"])
def test_pixelrnn_logits_match_the_plain_computation(variant):
    torch.manual_seed(0)
    model = PixelRNN(image_size=5, variant=variant, n_layers=2, channels=4, hidden=3, kernel=3, first_kernel=5,
                     head_channels=3).double()
    randomise(model, seed=1)
    x = images(2, 5, seed=2)
    with torch.no_grad():
        got = model.logits(x)[:, 0].numpy()
    for n in range(len(x)):
        h = conv(x[n].numpy(), w(model.conv_in.weight), w(model.conv_in.bias), allowed(5, 5, "A"))
        for layer in model.layers:
            h = row_lstm_reference(layer, h, 3) if variant == "row" else diagonal_bilstm_reference(layer, h)
        np.testing.assert_allclose(got[n], head(model, h), rtol=1e-9, atol=1e-9)
    assert np.ptp(got) > 0.1


@pytest.mark.parametrize("dim", [1, 2])
def test_an_lstm_update_reads_its_gates_along_dim_in_float32(dim):
    """i, f, o, g in that order along `dim`: c' = s(f) c + s(i) tanh(g), h = s(o) tanh(c'); bfloat16 gates (under
    autocast) are promoted to float32, float64 ones kept."""
    rng = np.random.default_rng(3)  # h = 5 states: chunks of ceil(4h / n) split 4h gates in four only for n = 4
    gates, c = rng.standard_normal((2, 3, 20, 5)) * 2, rng.standard_normal((2, 3, 5, 5))
    moved = np.moveaxis(gates, 2, dim)  # the gate axis where `dim` says
    want_h, want_c = np.zeros_like(c), np.zeros_like(c)
    for a, b, col in itertools.product(range(2), range(3), range(5)):
        want_h[a, b, :, col], want_c[a, b, :, col] = lstm(gates[a, b, :, col], c[a, b, :, col])
    c_in = np.moveaxis(c, 2, dim)
    h, c_new = lstm_update(torch.from_numpy(moved), torch.from_numpy(c_in), dim=dim)
    assert h.dtype == c_new.dtype == torch.float64
    np.testing.assert_allclose(np.moveaxis(h.numpy(), dim, 2), want_h, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.moveaxis(c_new.numpy(), dim, 2), want_c, rtol=1e-12, atol=1e-12)
    low = torch.from_numpy(moved).bfloat16()
    h, c_new = lstm_update(low, torch.from_numpy(c_in).float(), dim=dim)
    assert h.dtype == c_new.dtype == torch.float32
    want_h, _ = np.zeros_like(c), None
    rounded = np.moveaxis(low.double().numpy(), dim, 2)
    for a, b, col in itertools.product(range(2), range(3), range(5)):
        want_h[a, b, :, col], _ = lstm(rounded[a, b, :, col], c.astype(np.float32)[a, b, :, col])
    np.testing.assert_allclose(np.moveaxis(h.double().numpy(), dim, 2), want_h, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("height, width", [(5, 3), (3, 5), (1, 4), (4, 1)])
def test_skew_shifts_row_r_right_by_r_and_unskew_undoes_it(height, width):
    x = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    want = np.zeros((2, 3, height, height + width - 1))
    for r in range(height):
        want[:, :, r, r : r + width] = x[:, :, r].numpy()
    skewed = skew(x)
    assert np.array_equal(skewed.numpy(), want)
    assert torch.equal(unskew(skewed, width), x)


@pytest.mark.parametrize("variant", ["row", "diagonal"])
def test_the_fast_samplers_pixelrnn_logits_with_a_wide_row_kernel_and_five_states(variant):
    """Each pixel's logit from the caches, revealed in raster order, equals the whole network's: a Row LSTM whose
    state-to-state convolution is 5 wide reads row i - 1's states j - 2 .. j + 2 (edges padded with zeros)."""
    torch.manual_seed(5)
    model = PixelRNN(image_size=6, variant=variant, n_layers=2, channels=8, hidden=5, kernel=5, first_kernel=5,
                     head_channels=8).double().eval()
    randomise(model, seed=6)
    x = images(2, 6, seed=7)
    with torch.no_grad():
        want = model.logits(x)
    torch.testing.assert_close(cached_logits(model, x), want, rtol=0, atol=1e-10)
    assert np.ptp(want.numpy()) > 0.1
