"""Pictures of what autoencoders do: reconstructions, denoising rows, prior samples, latent plots.

Each function takes a trained model and test images, and writes PNG files that the
report shows as they are.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .images import save_rows


def spread(x: torch.Tensor, n: int) -> torch.Tensor:
    """n items evenly spaced through x: every digit of a set stored class by class (the embedded one)."""
    return x[torch.linspace(0, len(x) - 1, min(n, len(x))).round().long()]


@torch.no_grad()
def write_reconstructions(model, x: torch.Tensor, path: str | Path) -> Path:
    """Originals (top row) above their reconstructions (bottom row)."""
    x = x.to(model.device)
    return save_rows([x, model.reconstruct(x)], path)


@torch.no_grad()
def write_denoising(model, x: torch.Tensor, path: str | Path, seed: int = 0,
                    noises: list[tuple[str, float]] | None = None) -> Path:
    """For each noise (kind, strength): rows clean / noisy / denoised, one block per noise."""
    from .models.dae import corrupt

    x = x.to(model.device)
    noises = noises or [("gaussian", 0.5), ("salt-and-pepper", 0.3), ("masking", 0.5)]
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for kind, level in noises:
        noisy = corrupt(x, kind, level, generator)
        rows += [x, noisy, model.reconstruct(noisy)]
    return save_rows(rows, path)


@torch.no_grad()
def write_samples_and_means(model, path: str | Path, n: int = 16, seed: int = 0) -> Path:
    """VAE prior samples (top row) above the decoder means they were drawn from (bottom row)."""
    samples, means = model.sample_with_means(n, torch.Generator().manual_seed(seed))
    return save_rows([samples, means], path)


@torch.no_grad()
def write_latent_plots(model, x: torch.Tensor, y: torch.Tensor, run_dir: str | Path, steps: int = 20) -> list[Path]:
    """For a 2-D latent space: test codes coloured by digit, and the decoded manifold grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .images import save_grid

    run_dir = Path(run_dir)
    mu, _ = model.encode(x.to(model.device))
    mu = mu.cpu()
    fig, ax = plt.subplots(figsize=(6, 5.5))
    points = ax.scatter(mu[:, 0], mu[:, 1], c=y.cpu(), cmap="tab10", s=3, vmin=-0.5, vmax=9.5)
    fig.colorbar(points, ax=ax, ticks=range(10), label="digit")
    ax.set(xlabel="z1", ylabel="z2", title="Test digits in the latent space (encoder means)")
    scatter_path = run_dir / "latent_space.png"
    fig.savefig(scatter_path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    # Grid over the prior's central mass: Gaussian quantiles, as in Kingma & Welling's figure 4.
    q = torch.distributions.Normal(0, 1).icdf(torch.linspace(0.05, 0.95, steps))
    z1, z2 = torch.meshgrid(q, q.flip(0), indexing="xy")
    z = torch.stack([z1.flatten(), z2.flatten()], dim=1).to(model.device)  # (steps^2, 2)
    manifold = save_grid(model.decode_mean(z), run_dir / "latent_manifold.png", nrow=steps, scale=1)
    return [scatter_path, manifold]
