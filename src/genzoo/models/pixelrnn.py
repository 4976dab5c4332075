"""PixelRNN: Row LSTM and Diagonal BiLSTM layers over binarized digits.

van den Oord, Kalchbrenner and Kavukcuoglu 2016, "Pixel Recurrent Neural Networks":
a 7x7 convolution with mask A reads the image, then `n_layers` LSTM layers with
residual connections, then two 1x1 layers to one Bernoulli logit per pixel.

- Row LSTM (`variant=row`): the image is processed one row at a time. The
  input-to-state map is a 1 x k convolution with mask B along the row; the
  state-to-state map is a 1-D convolution (width k) over the previous row's hidden
  state. Its context is a triangle above the pixel.
- Diagonal BiLSTM (`variant=diagonal`): the input map is skewed (row r shifted right
  by r) so that each column of the skewed map is a diagonal of the image; an LSTM
  runs over those columns with a 1x1 input-to-state map and a 2x1 state-to-state
  convolution, which in image coordinates reads the pixel to the left and the one
  above. A second LSTM runs right to left; its output is shifted down one row before
  being added, so that no pixel sees itself or anything after it. Its context is every
  earlier pixel but one, as in the paper's design: the last pixel of the row above,
  x(i-1, W-1), reaches pixel (i, j) only for j >= W-4, through the 7x7 mask-A input
  of row i (no LSTM output of row i-1 can depend on it). On digits that pixel is
  background almost always.

Fast sampling (`PixelModel.sample`, exact): the Row LSTM keeps each layer's (h, c)
for every finished pixel and computes each layer at the new pixel alone, from the states
of the row above and the current row's cached inputs to its left; the
Diagonal BiLSTM keeps the states of every pixel and advances each layer by one LSTM
step per pixel (left-to-right), running the right-to-left direction once over each
row when it is complete. `sample(..., method="naive")` is the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..config import odd, positive
from .autoregressive import PixelModel
from .pixelcnn import MaskedConv2d


def lstm_update(gates: torch.Tensor, c: torch.Tensor, dim: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM cell update: gates (..., 4h, ...) and cell c (..., h, ...), gates along `dim` -> new (h, c).

    Computed in at least float32, also under bf16 autocast: the cell state accumulates over
    up to 55 steps.
    """
    gates = gates.to(torch.promote_types(gates.dtype, torch.float32))
    i, f, o, g = gates.chunk(4, dim=dim)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def skew(x: torch.Tensor) -> torch.Tensor:
    """Shift row r right by r: (B, C, H, W) -> (B, C, H, H + W - 1); column k is the diagonal i + j = k."""
    b, c, height, width = x.shape
    # Rows of length W + H read back as rows of length W + H - 1 slide one more step each.
    flat = F.pad(x, (0, height)).reshape(b, c, height * (width + height))  # (B, C, H * (W + H))
    return flat[:, :, : height * (width + height - 1)].reshape(b, c, height, width + height - 1)


def unskew(x: torch.Tensor, width: int) -> torch.Tensor:
    """Undo `skew`: (B, C, H, H + W - 1) -> (B, C, H, W)."""
    b, c, height, _ = x.shape
    flat = F.pad(x.reshape(b, c, -1), (0, height))  # (B, C, H * (W + H))
    return flat.reshape(b, c, height, width + height)[:, :, :, :width]


class RowLSTM(nn.Module):
    """x + 1x1(Row LSTM(x)): one row at a time, state from the row above (width-k conv)."""

    def __init__(self, channels: int, hidden: int, kernel: int):
        super().__init__()
        self.hidden = hidden
        self.input_to_state = MaskedConv2d(channels, 4 * hidden, (1, kernel), "B")
        self.state_to_state = nn.Conv1d(hidden, 4 * hidden, kernel, padding=kernel // 2)
        self.out = nn.Conv2d(hidden, channels, 1)

    def step(self, gates_in: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Row i's (h, c) (B, hidden, W) from its input gates (B, 4h, W) and row i - 1's state."""
        return lstm_update(gates_in + self.state_to_state(h), c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, height, width = x.shape
        gates_in = self.input_to_state(x)  # (B, 4h, H, W)
        h = c = x.new_zeros(b, self.hidden, width)
        rows = []
        # unbind, not gates_in[:, :, i]: the backward of one slice per step would write a whole
        # zero-filled gates_in-sized gradient each time (H of them); unbind's is one stack.
        for gates_row in gates_in.unbind(2):
            h, c = self.step(gates_row, h, c)
            rows.append(h)
        return x + self.out(torch.stack(rows, dim=2))  # (B, C, H, W)


class DiagonalBiLSTM(nn.Module):
    """x + 1x1(left-to-right diagonal LSTM + right-to-left one shifted down a row).

    Both directions advance together, one skewed column per step: the right-to-left one
    runs on the mirrored image, with its own weights (a grouped state-to-state conv).
    """

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        # index 0: left to right; 1: right to left (run on the mirrored image).
        self.input_to_state = nn.ModuleList([nn.Conv2d(channels, 4 * hidden, 1) for _ in range(2)])
        # Group d maps direction d's state to its gates; kernel tap 0 reads the state
        # above (i - 1, j), tap 1 the previous one along the row.
        self.state_to_state = nn.Conv1d(2 * hidden, 8 * hidden, 2, groups=2)
        self.out = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, height, width = x.shape
        hid = self.hidden
        gates_in = torch.cat([self.input_to_state[0](x), self.input_to_state[1](x.flip(3))], dim=1)  # (B, 8h, H, W)
        gates_in = skew(gates_in)  # (B, 8h, H, H + W - 1)
        inside = skew(x.new_ones(1, 1, height, width))[0, 0]  # (H, H + W - 1): 1 on the image
        h = c = x.new_zeros(b, 2 * hid, height)  # both directions' states along the current diagonal
        columns = []
        for k, gates_column in enumerate(gates_in.unbind(3)):  # unbind: see RowLSTM.forward
            # Pad one row on top: output r reads state r - 1 (above) and r (previous along the row).
            gates = gates_column + self.state_to_state(F.pad(h, (1, 0)))  # (B, 8h, H)
            h, c = lstm_update(gates.view(b, 2, 4 * hid, height), c.view(b, 2, hid, height), dim=2)
            h = h.reshape(b, 2 * hid, height) * inside[:, k]  # positions off the image stay zero
            c = c.reshape(b, 2 * hid, height) * inside[:, k]
            columns.append(h)
        states = unskew(torch.stack(columns, dim=3), width)  # (B, 2h, H, W)
        left_to_right, right_to_left = states[:, :hid], states[:, hid:].flip(3)
        right_to_left = F.pad(right_to_left, (0, 0, 1, 0))[:, :, :-1]  # shifted down one row
        return x + self.out(left_to_right + right_to_left)

    def cell(self, d: int, x_pixel: torch.Tensor, h_above: torch.Tensor, h_before: torch.Tensor,
             c_before: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One pixel's step of direction d: x_pixel (B, C), neighbours' h (B, hidden), previous c -> (h, c)."""
        gates_in = self.input_to_state[d](x_pixel[:, :, None, None])[:, :, 0, 0]  # (B, 4h)
        rows = slice(4 * self.hidden * d, 4 * self.hidden * (d + 1))  # direction d's group
        weight, bias = self.state_to_state.weight[rows], self.state_to_state.bias[rows]
        recurrent = F.conv1d(torch.stack([h_above, h_before], dim=2), weight, bias)[:, :, 0]  # (B, 4h)
        return lstm_update(gates_in + recurrent, c_before)


@dataclass
class PixelRNNConfig:
    image_size: int = 28
    variant: Literal["row", "diagonal"] = "diagonal"
    n_layers: int = 7
    channels: int = 64  # the residual stream
    hidden: int = 32  # LSTM state size h
    kernel: int = 3  # Row LSTM's convolution width
    first_kernel: int = 7  # the mask-A input convolution
    head_channels: int = 64

    def __post_init__(self):
        positive(image_size=self.image_size, n_layers=self.n_layers, channels=self.channels,
                 hidden=self.hidden, head_channels=self.head_channels)
        odd(first_kernel=self.first_kernel, kernel=self.kernel)


class PixelRNN(PixelModel):
    """Bernoulli PixelRNN on binarized digits: Row LSTM or Diagonal BiLSTM layers."""

    name = "pixelrnn"
    Config = PixelRNNConfig

    def __init__(self, config: Any = None, **overrides: Any):
        super().__init__(config, **overrides)
        cfg = self.config
        self.conv_in = MaskedConv2d(1, cfg.channels, (cfg.first_kernel, cfg.first_kernel), "A")
        if cfg.variant == "row":
            layers = [RowLSTM(cfg.channels, cfg.hidden, cfg.kernel) for _ in range(cfg.n_layers)]
        else:
            layers = [DiagonalBiLSTM(cfg.channels, cfg.hidden) for _ in range(cfg.n_layers)]
        self.layers = nn.ModuleList(layers)
        self.head = nn.Sequential(
            nn.ReLU(), nn.Conv2d(cfg.channels, cfg.head_channels, 1), nn.ReLU(), nn.Conv2d(cfg.head_channels, 1, 1)
        )

    def logits(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv_in(x)
        for layer in self.layers:
            h = layer(h)
        return self.head(h)  # (B, 1, H, W)

    # ------------------------------------------------------------ cached sampling

    def init_cache(self, n: int, y: torch.Tensor | None) -> dict:
        size, hidden, layers = self.image_size, self.config.hidden, len(self.layers)
        dtype = self.head[1].weight.dtype
        zeros = lambda *shape: torch.zeros(n, *shape, device=self.device, dtype=dtype)  # noqa: E731
        if self.config.variant == "row":
            # h[l][:, :, r + 1] is row r's state; index 0 is the zero state above the image.
            return {"h": [zeros(hidden, size + 1, size) for _ in range(layers)],
                    "c": [zeros(hidden, size + 1, size) for _ in range(layers)],
                    # each layer's input on the current row, filled pixel by pixel
                    "in_row": [zeros(self.config.channels, 1, size) for _ in range(layers)]}
        return {
            "inputs": [zeros(self.config.channels, size, size) for _ in range(layers)],  # each layer's input
            # left to right: state of (i, j) at [i + 1, j + 1]; row 0 and column 0 are the zeros outside.
            "h0": [zeros(hidden, size + 1, size + 1) for _ in range(layers)],
            "c0": [zeros(hidden, size + 1, size + 1) for _ in range(layers)],
            # right to left: state of (i, j) at [i + 1, j]; row 0 and column W are the zeros outside.
            "h1": [zeros(hidden, size + 1, size + 1) for _ in range(layers)],
            "c1": [zeros(hidden, size + 1, size + 1) for _ in range(layers)],
        }

    def cached_logit(self, cache: dict, x: torch.Tensor, i: int, j: int) -> torch.Tensor:
        if self.config.variant == "row":
            return self._row_logit(cache, x, i, j)
        return self._diagonal_logit(cache, x, i, j)

    def _row_logit(self, cache: dict, x: torch.Tensor, i: int, j: int) -> torch.Tensor:
        """Every layer at pixel (i, j) alone: its input there, the input row's cached earlier pixels and
        row i - 1's cached states; the row's later pixels are not read yet."""
        size = self.image_size
        a = self.conv_in.pixel(x, i, j)  # (B, C, 1, 1)
        for layer, in_row, h_cache, c_cache in zip(self.layers, cache["in_row"], cache["h"], cache["c"]):
            in_row[:, :, :, j : j + 1] = a
            gates_in = layer.input_to_state.pixel(in_row, 0, j)[:, :, 0]  # (B, 4h, 1)
            k = layer.state_to_state.kernel_size[0]
            c0, c1 = j - k // 2, j + k // 2 + 1  # row i - 1's states that reach column j
            above = h_cache[:, :, i, max(0, c0) : min(size, c1)]
            above = F.pad(above, (max(0, -c0), max(0, c1 - size)))  # (B, hidden, k)
            recurrent = F.conv1d(above, layer.state_to_state.weight, layer.state_to_state.bias)  # (B, 4h, 1)
            h, c = lstm_update(gates_in + recurrent, c_cache[:, :, i, j : j + 1])
            h_cache[:, :, i + 1, j : j + 1], c_cache[:, :, i + 1, j : j + 1] = h, c
            a = a + layer.out(h[:, :, None])  # (B, C, 1, 1)
        return self.head(a)[:, 0, 0, 0]

    def _diagonal_logit(self, cache: dict, x: torch.Tensor, i: int, j: int) -> torch.Tensor:
        """One LSTM step per layer at (i, j); at the start of a row, the right-to-left pass over the row above."""
        size = self.image_size
        if j == 0 and i > 0:  # row i - 1 is final: run every layer's right-to-left LSTM over it
            r = i - 1
            for layer, inputs, h1, c1 in zip(self.layers, cache["inputs"], cache["h1"], cache["c1"]):
                for jj in reversed(range(size)):
                    h1[:, :, r + 1, jj], c1[:, :, r + 1, jj] = layer.cell(
                        1, inputs[:, :, r, jj], h1[:, :, r, jj], h1[:, :, r + 1, jj + 1], c1[:, :, r + 1, jj + 1]
                    )
        a = self.conv_in.row(x, i)[:, :, 0, j]  # (B, C)
        for layer, inputs, h0, c0, h1 in zip(self.layers, cache["inputs"], cache["h0"], cache["c0"], cache["h1"]):
            inputs[:, :, i, j] = a
            h, c = layer.cell(0, a, h0[:, :, i, j + 1], h0[:, :, i + 1, j], c0[:, :, i + 1, j])
            h0[:, :, i + 1, j + 1], c0[:, :, i + 1, j + 1] = h, c
            # the right-to-left state of the pixel above (row i - 1 -> index i; zeros for i = 0)
            a = a + layer.out((h + h1[:, :, i, j])[:, :, None, None])[:, :, 0, 0]
        return self.head(a[:, :, None, None])[:, 0, 0, 0]
