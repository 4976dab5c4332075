"""pytorch-generative's PixelCNN and Gated PixelCNN with their `reproduce()` settings, restated to compare with ours.

pytorch-generative (github.com/EugenHotaj/pytorch-generative) is not on PyPI. This file restates, in our own code,
what its `reproduce()` functions train on binarized MNIST, read from the repository at commit d1f0a5c:

- `pytorch_generative/nn/convolution.py`: `CausalConv2d`, a convolution whose kernel sees the rows above and the
  pixels to the left (and the centre pixel itself unless `mask_center`), and `GatedActivation`,
  tanh(first half of the channels) * sigmoid(second half);
- `pytorch_generative/models/autoregressive/pixel_cnn.py`: `PixelCNN` (a 7 x 7 centre-masked input convolution to
  2 x `residual_channels`, `n_residual` residual blocks of ReLU, 1 x 1 halving, ReLU, 3 x 3 causal convolution,
  ReLU, 1 x 1 restoring, then a ReLU, 1 x 1, ReLU, 1 x 1 head) and its `reproduce()`: 15 blocks, 16 residual
  channels (32 in the trunk), 32 head channels, batch 256, Adam 1e-3, `MultiplicativeLR` x 0.999977 a step;
- `pytorch_generative/models/autoregressive/gated_pixel_cnn.py`: `GatedPixelCNN` (a vertical and a horizontal
  stack, the masked N x 1 and 1 x N convolutions written as unmasked (N // 2 + 1)-long ones padded and cropped, a
  1 x 1 link from the vertical to the horizontal stack, gated activations, skip connections summed into the head)
  and its `reproduce()`: a 7 x 7 centre-masked input layer, 10 gated layers of 128 channels, 32 head channels,
  batch 128, Adam 1e-3, `MultiplicativeLR` x 0.9999 a step;
- `pytorch_generative/trainer.py`: a step is zero_grad, the loss, backward, `clip_grad_norm_` at 1e50 (the norm is
  computed for its log and never clips), the optimizer's step, then the scheduler's step (every batch);
- `pytorch_generative/datasets.py`: `get_mnist_loaders(batch_size, dynamically_binarize=True)`, the digits in
  [0, 1] (`ToTensor`) drawn as Bernoulli pixels afresh each time a digit is loaded, shuffled every epoch, the last
  short batch kept;
- the loss of both `reproduce()`s: binary cross-entropy on the logits, summed over the pixels of an image and
  averaged over the batch, which is the Bernoulli negative log-likelihood in nats per image.

Kept as published: the PixelCNN's residual block returns `x + net(x)` and the model adds its input again
(`x = x + layer(x)`), so that each block computes 2 x + net(x) (STYLE.md's counter-example); the masked
weights are parameters too (counted, moved by Adam, never used).

Deliberately different: the mask multiplies the kernel inside `forward` (theirs zeroes the masked weights in place
before each call: the same outputs, and the same steps for every weight the outputs use); the data lie in memory
as one tensor (their DataLoader's workers are left out of the clock); the random numbers (shuffling, binarization)
come from a torch generator seeded by the caller.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# The `reproduce()` settings: network arguments, batch size, learning rate, per-step decay of the rate.
REPRODUCE = {
    "pixelcnn": {"network": {"n_residual": 15, "residual_channels": 16, "head_channels": 32}, "batch_size": 256,
                 "lr": 1e-3, "lr_decay": 0.999977},
    "gated": {"network": {"n_gated": 10, "gated_channels": 128, "head_channels": 32}, "batch_size": 128,
              "lr": 1e-3, "lr_decay": 0.9999},
}
NO_CLIP = 1e50  # their trainer's max_norm when no clipping is asked for


class CausalConv2d(nn.Conv2d):
    """A convolution whose output at a pixel sees the rows above it and the pixels to its left in its own row, and
    the pixel itself unless `mask_center` (type A with it, type B without)."""

    def __init__(self, mask_center: bool, in_channels: int, out_channels: int, kernel_size: int, padding: int):
        super().__init__(in_channels, out_channels, kernel_size, padding=padding)
        h, w = self.weight.shape[-2:]
        mask = torch.zeros(h, w)
        mask[: h // 2] = 1
        mask[h // 2, : w // 2 + int(not mask_center)] = 1
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, self.stride, self.padding)


class CausalResidualBlock(nn.Module):
    """ReLU, 1 x 1 to half the channels, ReLU, 3 x 3 causal (type B), ReLU, 1 x 1 back; returns x + net(x)."""

    def __init__(self, channels: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.ReLU(), nn.Conv2d(channels, channels // 2, 1),
            nn.ReLU(), CausalConv2d(False, channels // 2, channels // 2, 3, padding=1),
            nn.ReLU(), nn.Conv2d(channels // 2, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


def head(channels: int, head_channels: int) -> nn.Sequential:
    """ReLU, 1 x 1 to `head_channels`, ReLU, 1 x 1 to one logit a pixel."""
    return nn.Sequential(nn.ReLU(), nn.Conv2d(channels, head_channels, 1), nn.ReLU(), nn.Conv2d(head_channels, 1, 1))


class PixelCNN(nn.Module):
    """pytorch-generative's PixelCNN on one-channel binary images: logits (N, 1, H, W) of p(x_ij = 1 | x_<ij)."""

    def __init__(self, n_residual: int = 15, residual_channels: int = 128, head_channels: int = 32):
        super().__init__()
        channels = 2 * residual_channels
        self.input = CausalConv2d(True, 1, channels, 7, padding=3)
        self.blocks = nn.ModuleList(CausalResidualBlock(channels) for _ in range(n_residual))
        self.head = head(channels, head_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.input(x)  # (N, 2 residual_channels, H, W)
        for block in self.blocks:
            h = h + block(h)  # as published: the block adds h already, so h becomes 2 h + net(h)
        return self.head(h)


class GatedActivation(nn.Module):
    """tanh of the first half of the channels times the sigmoid of the second half."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = x.chunk(2, dim=1)
        return torch.tanh(value) * torch.sigmoid(gate)


class GatedPixelCNNLayer(nn.Module):
    """One gated layer: (vertical, horizontal) -> (vertical, horizontal, skip), all (N, channels, H, W).

    The vertical stack at row i sees rows < i only: a 1 x N convolution, then an (N // 2 + 1) x 1 one padded by one
    row more than it needs and cropped to the first H rows (a shift down by one). The horizontal stack sees the
    pixels to the left in the same row, the pixel itself unless `mask_center` (the input layer), through a
    1 x (N // 2 + 1) convolution cropped to the first W columns, plus the vertical stack through a 1 x 1 link.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, mask_center: bool = False):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size={kernel_size}: must be odd")
        pad, half = (kernel_size - 1) // 2, kernel_size // 2 + 1
        self.mask_center = mask_center
        self.activation = GatedActivation()
        self.vertical_1xn = nn.Conv2d(in_channels, out_channels, (1, kernel_size), padding=(0, pad))
        self.vertical_nx1 = nn.Conv2d(out_channels, 2 * out_channels, (half, 1), padding=(pad + 1, 0))
        self.vertical_1x1 = nn.Conv2d(in_channels, 2 * out_channels, 1)
        self.link = nn.Conv2d(2 * out_channels, 2 * out_channels, 1)
        self.horizontal_1xn = nn.Conv2d(in_channels, 2 * out_channels, (1, half), padding=(0, pad + int(mask_center)))
        self.horizontal_residual = nn.Conv2d(out_channels, out_channels, 1)
        self.horizontal_skip = nn.Conv2d(out_channels, out_channels, 1)

    def forward(self, vertical_in: torch.Tensor, horizontal_in: torch.Tensor):
        h, w = vertical_in.shape[-2:]
        vertical = self.vertical_nx1(self.vertical_1xn(vertical_in))[:, :, :h]  # (N, 2 C, H, W): rows above
        link = self.link(vertical)
        vertical = self.activation(vertical + self.vertical_1x1(vertical_in))  # (N, C, H, W)
        horizontal = self.activation(link + self.horizontal_1xn(horizontal_in)[:, :, :, :w])  # (N, C, H, W)
        skip = self.horizontal_skip(horizontal)
        horizontal = self.horizontal_residual(horizontal)
        if not self.mask_center:  # the input layer has no residual: it would pass the pixel itself on
            horizontal = horizontal + horizontal_in
        return vertical, horizontal, skip


class GatedPixelCNN(nn.Module):
    """pytorch-generative's Gated PixelCNN on one-channel binary images: logits (N, 1, H, W)."""

    def __init__(self, n_gated: int = 10, gated_channels: int = 128, head_channels: int = 32):
        super().__init__()
        self.input = GatedPixelCNNLayer(1, gated_channels, kernel_size=7, mask_center=True)
        self.layers = nn.ModuleList(GatedPixelCNNLayer(gated_channels, gated_channels) for _ in range(n_gated))
        self.head = head(gated_channels, head_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        vertical, horizontal, skips = self.input(x, x)
        for layer in self.layers:
            vertical, horizontal, skip = layer(vertical, horizontal)
            skips = skips + skip
        return self.head(skips)


def build(key: str) -> nn.Module:
    """The network of `reproduce()` for `key` ("pixelcnn" or "gated")."""
    if key not in REPRODUCE:
        raise ValueError(f"{key!r}: the restated networks are {', '.join(REPRODUCE)}")
    return (PixelCNN if key == "pixelcnn" else GatedPixelCNN)(**REPRODUCE[key]["network"])


def bernoulli_nll(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Their loss per image: binary cross-entropy on the logits summed over the pixels, (N,) nats."""
    return F.binary_cross_entropy_with_logits(logits.flatten(1), x.flatten(1), reduction="none").sum(1)


class Reproduce:
    """`reproduce()` of `key` as one training step at a time on `train_x` (N, 1, 28, 28) in [0, 1]."""

    def __init__(self, key: str, train_x: torch.Tensor, seed: int, network: nn.Module | None = None):
        settings = REPRODUCE[key]
        torch.manual_seed(seed)  # the initial weights
        self.model = network if network is not None else build(key)
        self.batch_size = settings["batch_size"]
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=settings["lr"])
        self.scheduler = torch.optim.lr_scheduler.MultiplicativeLR(self.optimizer,
                                                                   lr_lambda=lambda _: settings["lr_decay"])
        self.train_x, self.rng = train_x, torch.Generator().manual_seed(seed)
        self.order, self.position, self.steps = torch.randperm(len(train_x), generator=self.rng), 0, 0

    def batch(self) -> torch.Tensor:
        """The next batch, binarized afresh: (B, 1, 28, 28) in {0, 1}."""
        if self.position >= len(self.train_x):
            self.order, self.position = torch.randperm(len(self.train_x), generator=self.rng), 0
        index = self.order[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        return torch.bernoulli(self.train_x[index], generator=self.rng)

    def step(self) -> float:
        self.model.train()
        x = self.batch()
        self.optimizer.zero_grad()
        loss = bernoulli_nll(x, self.model(x)).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), NO_CLIP)
        self.optimizer.step()
        self.scheduler.step()
        self.steps += 1
        return float(loss.detach())

    @torch.no_grad()
    def log_prob(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Exact log p(x) in nats, (N,), of binary images x (N, 1, 28, 28). `generator` is unused (exact)."""
        self.model.eval()
        return -bernoulli_nll(x, self.model(x))
