"""PixelCNN: masked convolutions, plain or gated, optionally class-conditional.

- Plain (van den Oord, Kalchbrenner and Kavukcuoglu 2016, "Pixel Recurrent Neural
  Networks", PixelCNN): a 7x7 convolution with mask A (the pixel itself hidden), then
  residual blocks 1x1 -> 3x3 mask B -> 1x1, then two 1x1 layers to one Bernoulli logit
  per pixel. Its receptive field has a blind spot up and to the right.
- Gated (`gated=true`; van den Oord et al. 2016, "Conditional Image Generation with
  PixelCNN Decoders"): a vertical stack that sees whole rows above, shifted down one row,
  feeding a horizontal stack that sees the current row to the left; gates tanh * sigmoid.
  No blind spot.
- Class-conditional (`conditional=true`): a learned per-class vector added as a bias to
  every layer (to both stacks' gates in the gated model).

Fast sampling (`PixelModel.sample`, exact): every layer caches its activations. Once
pixel (i, j) is drawn, nothing at it or before it in raster order changes again, so for
pixel (i, j) each layer computes its output at (i, j) alone, from its cached earlier
pixels (a pixel's worth of work instead of a whole image's). The gated model's vertical
stacks advance a row at a time, when the row above is complete.
`sample(..., method="naive")` is the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError, odd, positive
from .autoregressive import PixelModel


class MaskedConv2d(nn.Conv2d):
    """A (kh, kw) convolution that only sees pixels before the centre in raster order.

    mask "A": rows above, and the current row strictly left of the centre;
    mask "B": as "A" plus the centre itself;
    mask "vertical": every column of the rows above and of the current row (the gated
    PixelCNN's vertical stack, used shifted down one row).

    The weight keeps its full (kh, kw) shape, but only the corner that holds the mask's
    taps is convolved (`taps`: kh // 2 + 1 rows; on one row, the columns up to the
    centre): the rest would only add zeros, a third of a 3x3's multiply-adds and more of
    a 1 x k's. The input is padded to match, so the output is that of the masked
    (kh, kw) convolution with "same" padding.
    """

    def __init__(self, c_in: int, c_out: int, kernel: tuple[int, int], mask: Literal["A", "B", "vertical"]):
        kh, kw = kernel
        super().__init__(c_in, c_out, kernel, padding=(kh // 2, kw // 2))
        m = torch.zeros(kh, kw)
        m[: kh // 2] = 1
        if mask == "vertical":
            m[kh // 2] = 1
        else:
            m[kh // 2, : kw // 2 + (mask == "B")] = 1
        rows = kh // 2 + 1  # the rows below the centre are masked
        cols = kw if rows > 1 or mask == "vertical" else max(1, kw // 2 + (mask == "B"))
        self.taps = (rows, cols)
        # left, right, top, bottom: output (r, c) reads input rows r - kh // 2 .. r, columns c - kw // 2 ..
        # c - kw // 2 + cols - 1 (a negative right pad drops a last column no output reads)
        self.pads = (kw // 2, cols - 1 - kw // 2, kh // 2, 0)
        self.register_buffer("mask", m[:rows, :cols].clone(), persistent=False)

    def masked_weight(self) -> torch.Tensor:
        """The convolved corner of the weight, masked: (C_out, C_in, rows, cols)."""
        rows, cols = self.taps
        return self.weight[:, :, :rows, :cols] * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, self.pads), self.masked_weight(), self.bias)

    def row(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """Row i of the output from rows <= i of x (B, C, H, W) -> (B, C_out, 1, W)."""
        up = self.pads[2]
        slab = x[:, :, max(0, i - up) : i + 1]  # (B, C, <= up + 1, W)
        slab = F.pad(slab, (*self.pads[:2], up + 1 - slab.shape[2], 0))  # (B, C, up + 1, W + cols - 1)
        return F.conv2d(slab, self.masked_weight(), self.bias)

    def pixel(self, x: torch.Tensor, i: int, j: int) -> torch.Tensor:
        """Output (i, j) alone from rows <= i of x (B, C, H, W), (B, C_out, 1, 1); x's entries
        after (i, j) in raster order are not read (nor (i, j) itself under mask A)."""
        up, left = self.pads[2], self.pads[0]
        width = x.shape[3]
        rows, cols = self.taps
        # the input window of output (i, j): rows i - up .. i, columns j - left .. j - left + cols - 1
        c0, c1 = j - left, j - left + cols
        slab = x[:, :, max(0, i - up) : i + 1, max(0, c0) : min(width, c1)]
        slab = F.pad(slab, (max(0, -c0), max(0, c1 - width), up + 1 - slab.shape[2], 0))  # (B, C, rows, cols)
        return F.conv2d(slab, self.masked_weight(), self.bias)


def gate(a: torch.Tensor) -> torch.Tensor:
    """tanh(first half of the channels) * sigmoid(second half)."""
    value, gate_ = a.chunk(2, dim=1)
    return torch.tanh(value) * torch.sigmoid(gate_)


class ResidualBlock(nn.Module):
    """x + 1x1(relu(3x3 mask B(relu(1x1(relu(x)))) + class bias)), channels 2h -> h -> h -> 2h."""

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.down = nn.Conv2d(channels, channels // 2, 1)
        self.conv = MaskedConv2d(channels // 2, channels // 2, (kernel, kernel), "B")
        self.up = nn.Conv2d(channels // 2, channels, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | float = 0.0) -> torch.Tensor:
        t = F.relu(self.down(F.relu(x)))
        return x + self.up(F.relu(self.conv(t) + cond))

    def pixel(self, x_pixel: torch.Tensor, t_cache: torch.Tensor, i: int, j: int,
              cond: torch.Tensor | float = 0.0) -> torch.Tensor:
        """Output (i, j) of the block, (B, C, 1, 1), from its input there, x_pixel (B, C, 1, 1);
        t_cache (B, C/2, H, W) holds the 1x1 branch at every earlier pixel and gets (i, j)."""
        t_cache[:, :, i : i + 1, j : j + 1] = F.relu(self.down(F.relu(x_pixel)))
        return x_pixel + self.up(F.relu(self.conv.pixel(t_cache, i, j) + cond))


class GatedLayer(nn.Module):
    """One layer of the gated PixelCNN: a vertical and a horizontal stack (no blind spot).

    v_pre = vertical conv of v (rows <= r); v_out = gate(v_pre + bias_v);
    h_out = h + 1x1(gate(horizontal conv of h + 1x1(v_pre shifted down one row) + bias_h)).
    The first layer reads the image with mask A in its horizontal stack and has no residual.
    The class biases bias_v and bias_h are the conditional paper's V^T h, one for each
    stack's gated convolution.
    """

    def __init__(self, c_in: int, channels: int, kernel: int, first: bool):
        super().__init__()
        self.first = first
        self.v_conv = MaskedConv2d(c_in, 2 * channels, (kernel, kernel), "vertical")
        self.h_conv = MaskedConv2d(c_in, 2 * channels, (1, kernel), "A" if first else "B")
        self.v_to_h = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_out = nn.Conv2d(channels, channels, 1)

    def forward(self, v: torch.Tensor, h: torch.Tensor, cond_v: torch.Tensor | float = 0.0,
                cond_h: torch.Tensor | float = 0.0):
        v_pre = self.v_conv(v)  # (B, 2C, H, W), row r sees rows <= r
        v_down = F.pad(v_pre, (0, 0, 1, 0))[:, :, :-1]  # (B, 2C, H, W), row r sees rows < r
        h_new = self.h_out(gate(self.h_conv(h) + self.v_to_h(v_down) + cond_h))
        return gate(v_pre + cond_v), h_new if self.first else h + h_new

    def h_pixel(self, h_row: torch.Tensor, j: int, link: torch.Tensor) -> torch.Tensor:
        """Pixel j of the current row of the horizontal stack, (B, C, 1, 1), from its input row
        h_row (B, C_in, 1, W), set up to column j (up to j - 1 in the first layer), and
        link = v_to_h(v_pre at the row above) + the horizontal class bias at column j, (B, 2C, 1, 1)."""
        h_new = self.h_out(gate(self.h_conv.pixel(h_row, 0, j) + link))
        return h_new if self.first else h_row[:, :, :, j : j + 1] + h_new


@dataclass
class PixelCNNConfig:
    image_size: int = 28
    gated: bool = False
    conditional: bool = False
    n_classes: int = 10
    channels: int = 128  # plain: 2h of the residual blocks; gated: channels of each stack
    n_layers: int = 12  # residual blocks (plain) or gated layers after the first
    first_kernel: int = 7  # the layer that reads the image (mask A)
    kernel: int = 3  # every later layer
    head_channels: int = 128  # the two 1x1 output layers

    def __post_init__(self):
        positive(image_size=self.image_size, n_classes=self.n_classes, channels=self.channels,
                 n_layers=self.n_layers, head_channels=self.head_channels)
        odd(first_kernel=self.first_kernel, kernel=self.kernel)
        if not self.gated and self.channels % 2:
            raise ConfigError(f"channels={self.channels!r}: must be even for the plain PixelCNN (blocks halve it)")


class PixelCNN(PixelModel):
    """Bernoulli PixelCNN on binarized digits: plain, gated, optionally class-conditional."""

    name = "pixelcnn"
    Config = PixelCNNConfig

    def __init__(self, config: Any = None, **overrides: Any):
        super().__init__(config, **overrides)
        cfg = self.config
        c = cfg.channels
        if cfg.gated:
            # The first layer takes the image with the large kernel; later layers `kernel`.
            self.layers = nn.ModuleList(
                [GatedLayer(1, c, cfg.first_kernel, first=True)]
                + [GatedLayer(c, c, cfg.kernel, first=False) for _ in range(cfg.n_layers)]
            )
            widths = [2 * c, 2 * c] * len(self.layers)  # class biases per layer: vertical gates, horizontal gates
        else:
            self.conv_in = MaskedConv2d(1, c, (cfg.first_kernel, cfg.first_kernel), "A")
            self.layers = nn.ModuleList([ResidualBlock(c, cfg.kernel) for _ in range(cfg.n_layers)])
            widths = [c] + [c // 2] * len(self.layers)  # the input conv, then each block's 3x3 conv
        self.head = nn.Sequential(
            nn.ReLU(), nn.Conv2d(c, cfg.head_channels, 1), nn.ReLU(), nn.Conv2d(cfg.head_channels, 1, 1)
        )
        if cfg.conditional:
            # One vector per class and layer, all in one table.
            self.widths = widths
            self.class_bias = nn.Embedding(cfg.n_classes, sum(widths))
            nn.init.zeros_(self.class_bias.weight)

    def _conds(self, y: torch.Tensor | None) -> list[torch.Tensor | float]:
        """Class biases (B, width, 1, 1): for the input conv and each block (plain), or for the
        vertical and the horizontal stack of each layer in turn (gated); zeros when unconditional."""
        n = len(self.layers) * (1 + self.config.gated) + (not self.config.gated)
        if y is None:
            return [0.0] * n
        bias = self.class_bias(y)  # (B, sum(widths))
        return [b[:, :, None, None] for b in bias.split(self.widths, dim=1)]

    # ------------------------------------------------------------ whole image

    def logits(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        conds = self._conds(y)
        if self.config.gated:
            v = h = x
            for layer, cond_v, cond_h in zip(self.layers, conds[0::2], conds[1::2]):
                v, h = layer(v, h, cond_v, cond_h)
        else:
            h = self.conv_in(x) + conds[0]
            for block, cond in zip(self.layers, conds[1:]):
                h = block(h, cond)
        return self.head(h)  # (B, 1, H, W)

    # ------------------------------------------------------------ cached, row by row

    def init_cache(self, n: int, y: torch.Tensor | None) -> dict:
        size, c = self.image_size, self.config.channels
        dtype = self.head[1].weight.dtype
        zeros = lambda ch, rows: torch.zeros(n, ch, rows, size, device=self.device, dtype=dtype)  # noqa: E731
        cache: dict[str, Any] = {"conds": self._conds(y)}
        if self.config.gated:
            # vin[l]: layer l's vertical input (rows filled once final); layer 0 reads the image.
            cache["vin"] = [None] + [zeros(c, size) for _ in self.layers[1:]]
            # vpre[l][:, :, r + 1] holds layer l's vertical conv at row r; index 0 is the zero row above.
            cache["vpre"] = [zeros(2 * c, size + 1) for _ in self.layers]
            cache["link"] = [None] * len(self.layers)  # set at the start of each row
            # hin[l]: layer l's horizontal input on the current row (layers >= 1; layer 0 reads the image),
            # filled pixel by pixel
            cache["hin"] = [None] + [zeros(c, 1) for _ in self.layers[1:]]
        else:
            cache["t"] = [zeros(c // 2, size) for _ in self.layers]
        return cache

    def cached_logit(self, cache: dict, x: torch.Tensor, i: int, j: int) -> torch.Tensor:
        """Only pixel (i, j) of each layer's horizontal path is computed: its earlier pixels are cached
        and its later ones are not read yet."""
        conds = cache["conds"]
        if self.config.gated:
            if j == 0:  # row i - 1 is complete: extend every vertical stack by it
                for index, (layer, cond_v, cond_h) in enumerate(zip(self.layers, conds[0::2], conds[1::2])):
                    if i > 0:
                        v_in = x if index == 0 else cache["vin"][index]
                        v_pre = layer.v_conv.row(v_in, i - 1)  # (B, 2C, 1, W)
                        cache["vpre"][index][:, :, i : i + 1] = v_pre
                        if index + 1 < len(self.layers):
                            cache["vin"][index + 1][:, :, i - 1 : i] = gate(v_pre + cond_v)
                    # what the vertical stack (rows < i) adds to row i, fixed for the whole row
                    cache["link"][index] = layer.v_to_h(cache["vpre"][index][:, :, i : i + 1]) + cond_h
            h_row = x[:, :, i : i + 1]  # (B, 1, 1, W)
            for index, (layer, link) in enumerate(zip(self.layers, cache["link"])):
                h = layer.h_pixel(h_row, j, link[:, :, :, j : j + 1])  # (B, C, 1, 1)
                if index + 1 < len(self.layers):
                    h_row = cache["hin"][index + 1]
                    h_row[:, :, :, j : j + 1] = h
        else:
            h = self.conv_in.pixel(x, i, j) + conds[0]  # (B, C, 1, 1)
            for block, t_cache, cond in zip(self.layers, cache["t"], conds[1:]):
                h = block.pixel(h, t_cache, i, j, cond)
        return self.head(h)[:, 0, 0, 0]
