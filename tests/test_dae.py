import pytest
import torch
import torch.nn.functional as F

from genzoo.config import ConfigError
from genzoo.metrics import psnr
from genzoo.models.dae import DenoisingAutoencoder, corrupt, parse_noise


def test_noise_kinds_have_their_statistics():
    x = torch.full((4000, 1, 28, 28), 0.5)
    g = torch.Generator().manual_seed(0)
    gaussian = corrupt(torch.full_like(x, 0.5), "gaussian", 0.1, g)
    assert (gaussian - 0.5).std().item() == pytest.approx(0.1, rel=0.02)
    masked = corrupt(x, "masking", 0.3, g)
    assert (masked == 0).float().mean().item() == pytest.approx(0.3, abs=0.005)
    assert set(masked.unique().tolist()) == {0.0, 0.5}
    salted = corrupt(x, "salt-and-pepper", 0.2, g)
    assert (salted == 1).float().mean().item() == pytest.approx(0.1, abs=0.005)
    assert (salted == 0).float().mean().item() == pytest.approx(0.1, abs=0.005)


def test_corruption_is_seeded():
    x = torch.rand(3, 1, 28, 28)
    a = corrupt(x, "gaussian", 0.5, torch.Generator().manual_seed(1))
    b = corrupt(x, "gaussian", 0.5, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1


def test_loss_scores_the_reconstruction_of_the_corrupted_digit_against_the_clean_one():
    """Vincent et al. 2008: x~ = clip(x + sigma eps, 0, 1), loss = -log P(x | x~) summed over pixels (Bernoulli),
    averaged over the batch. Recomputed with the same draw of eps (the global RNG, seeded alike)."""
    torch.manual_seed(0)
    model = DenoisingAutoencoder(channels=4, latent_dim=4, noise="gaussian", noise_level=0.5).eval()
    x = (torch.rand(6, 1, 28, 28) < 0.3).float()
    torch.manual_seed(1)
    loss = model.loss(x)["loss"]
    torch.manual_seed(1)
    noisy = (x + 0.5 * torch.randn(x.shape)).clamp(0, 1)
    with torch.no_grad():
        logits = model.decoder(model.encoder(noisy))
    expected = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
    torch.testing.assert_close(loss.detach(), expected)
    with torch.no_grad():  # and not the clean digit's reconstruction (a plain autoencoder's loss)
        clean = F.binary_cross_entropy_with_logits(model.decoder(model.encoder(x)), x, reduction="sum") / len(x)
    assert abs(clean - expected) > 1e-3


def test_psnr_formula():
    x = torch.zeros(2, 1, 28, 28)
    y = x + 0.1  # mse 0.01 -> 20 dB
    assert psnr(y, x).tolist() == pytest.approx([20.0, 20.0])


def test_parse_noise_messages():
    assert parse_noise("masking:0.25") == ("masking", 0.25)
    with pytest.raises(ConfigError, match=r"--noise 'blur:1': kind must be one of gaussian, salt-and-pepper, masking"):
        parse_noise("blur:1")
    with pytest.raises(ConfigError, match=r"noise_level=1.5: must lie in \[0.0, 1.0\]"):
        parse_noise("masking:1.5")
