import pytest
import torch

from genzoo.config import ConfigError
from genzoo.metrics import psnr
from genzoo.models.dae import corrupt, parse_noise


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
