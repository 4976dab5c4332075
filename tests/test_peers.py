"""benchmarks/peers.py (issue 22): its measuring helpers, and each peer comparison's smallest configuration.

The helpers are checked everywhere: the FLOP count against a count written by hand for a
two-layer network, the A B A B order of the interleaving, the nearest-width search, the ratio of
the report. The comparisons run only where the peer library is importable (the optional `peers`
extra, not part of the test extra); elsewhere they are skipped with the reason. They check what
the benchmark's "like for like" rests on: pythae's VAE built around genzoo's networks computes
the same negative ELBO as genzoo's VAE for the same noise, and the peers' cosine noise schedules
are genzoo's; then a couple of steps of each comparison run end to end.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import genzoo
from genzoo.models.diffusion import make_betas

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
spec = importlib.util.spec_from_file_location("benchmark_peers", BENCHMARKS / "peers.py")
peers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(peers)


def needs(peer: str):
    reason = peers.peer_missing(peer)
    return pytest.mark.skipif(reason is not None, reason=f"{reason} (install the peers extra: benchmarks/peers.py)")


# ---------------------------------------------------------------------------- the helpers (no peer needed)


def test_counted_flops_of_a_two_layer_network_match_a_count_by_hand():
    B, n_in, H, n_out = 8, 5, 7, 3
    net = nn.Sequential(nn.Linear(n_in, H), nn.ReLU(), nn.Linear(H, n_out))
    x = torch.randn(B, n_in)  # needs no gradient: the first layer's input gradient is not computed

    def step():
        net(x).sum().backward()

    # forward: 2BIH + 2BHO; backward: the weight gradients 2BIH + 2BHO, the hidden layer's input gradient 2BHO
    # (I = n_in, O = n_out)
    assert peers.counted_flops(step) == 4 * B * n_in * H + 6 * B * H * n_out


def test_interleave_takes_the_sides_in_turn_and_times_each_call():
    calls = []
    cpu = {}
    times = peers.interleave({"a": lambda r: calls.append(("a", r)), "b": lambda r: calls.append(("b", r))}, 3, cpu)
    assert calls == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    assert [len(t) for t in times.values()] == [3, 3] and all(s >= 0 for t in times.values() for s in t)
    assert [len(t) for t in cpu.values()] == [3, 3] and all(s >= 0 for t in cpu.values() for s in t)


def test_interleave_counts_the_cpu_time_of_work_and_not_of_waiting():
    cpu = {}

    def busy(r):
        end = peers.time.process_time() + 0.05
        while peers.time.process_time() < end:
            pass

    times = peers.interleave({"busy": busy, "asleep": lambda r: peers.time.sleep(0.05)}, 1, cpu)
    assert cpu["busy"][0] >= 0.05 and times["asleep"][0] >= 0.05 and cpu["asleep"][0] < 0.02


def test_nearest_width_picks_the_parameter_count_nearest_the_target():
    target = sum(p.numel() for p in nn.Linear(10, 24).parameters())  # 264
    assert peers.nearest_width(lambda w: nn.Linear(10, w), target + 5, range(8, 41, 8)) == 24


def test_report_ratio_is_the_throughput_of_genzoo_over_the_peer():
    def side(median, images, cpu=None):
        out = {"seconds": {"median": median, "min": median, "max": median, "all": [median]}, "images": images,
               "flops_per_image": 1e6, "gflops_per_s": 1.0, "share_of_peak": 0.1}
        if cpu:
            out["cpu_seconds"] = {"median": cpu, "min": cpu, "max": cpu, "all": [cpu]}
        return out

    # the peer takes twice the time for 3/2 of the images: genzoo's throughput is 4/3 of the peer's
    row = {"comparison": "ddpm-pixel", "peer": "p", "parameters": {"genzoo": 1, "peer": 1},
           "genzoo": side(1.0, 100), "peer_side": side(2.0, 150), "load_before": 1, "load_after": 1}
    assert "| x1.33 (x1.33, x1.33-x1.33) | - |" in peers.markdown_row(row)
    # by CPU time: 0.5 s against 1.5 s for 3/2 of the images
    row.update(genzoo=side(1.0, 100, cpu=0.5), peer_side=side(2.0, 150, cpu=1.5))
    assert "| x1.33 (x1.33, x1.33-x1.33) | x2.00 (x2.00, x2.00-x2.00) |" in peers.markdown_row(row)


def test_peak_gflops_is_the_rate_of_a_timed_matrix_product(monkeypatch):
    clock = iter([0.0, 0.5, 1.0, 1.25])  # two timed products: 0.5 s and 0.25 s; the best counts
    monkeypatch.setattr(peers.time, "perf_counter", lambda: next(clock))
    assert peers.peak_gflops(size=64, repeats=2) == pytest.approx(2 * 64**3 / 0.25 / 1e9)


# ---------------------------------------------------------------------------- pythae


@needs("pythae")
@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_pythae_vae_around_our_networks_has_our_negative_elbo(arch):
    torch.manual_seed(0)
    ours = genzoo.create("vae", **peers.vae_overrides(arch), **({"channels": 8} if arch == "conv" else {}))
    theirs = peers.pythae_vae(ours, "vae", 5)
    x = torch.bernoulli(torch.rand(6, 1, 28, 28), generator=torch.Generator().manual_seed(1))
    ours.train(), theirs.train()
    torch.manual_seed(2)  # both draw eps = randn of shape (B, D) from the global generator, once
    their_loss = theirs({"data": x}).loss  # mean over the batch of BCE summed over pixels + KL
    torch.manual_seed(2)
    our_nelbo = ours.loss(x)["nelbo"]
    assert float(their_loss.detach()) == pytest.approx(float(our_nelbo), rel=1e-5)
    # and the two share the networks: a step of pythae's moves genzoo's weights
    before = ours.decoder.net[-1].bias.clone() if arch == "mlp" else next(ours.decoder.parameters()).clone()
    their_loss.backward()
    torch.optim.SGD(theirs.parameters(), lr=0.1).step()
    after = ours.decoder.net[-1].bias if arch == "mlp" else next(ours.decoder.parameters())
    assert not torch.equal(before, after)


@needs("pythae")
def test_pythae_iwae_and_our_train_k_take_the_same_gradient(monkeypatch):
    """pythae's IWAE loss is -sum_k w~_k log w_k with the normalised weights w~ held constant, whose gradient is that
    of the bound -log (1/K) sum_k w_k that genzoo's `train_k` minimises: equal for the same draws."""
    import pythae.models.iwae.iwae_model as their_module

    torch.manual_seed(0)
    ours = genzoo.create("vae", arch="mlp", hidden=32, latent_dim=4, train_k=3)
    theirs = peers.pythae_vae(ours, "iwae", 3)
    x = torch.bernoulli(torch.rand(5, 1, 28, 28), generator=torch.Generator().manual_seed(1))
    eps = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(2))  # ours: (K, B, D); pythae's: (B, K, D)
    monkeypatch.setattr(their_module.torch, "randn_like", lambda std: eps.transpose(0, 1).clone())
    monkeypatch.setattr(ours, "randn", lambda *shape, generator=None: eps.clone())
    gradients = []
    for loss in (lambda: theirs({"data": x}).loss, lambda: ours.loss(x)["loss"]):
        ours.zero_grad()
        loss().backward()
        gradients.append(torch.cat([p.grad.flatten() for p in ours.parameters()]))
    # pythae's BCE takes sigmoid probabilities, ours logits: rounding apart, a few 1e-5 on gradients of order 1
    scale = float(gradients[1].abs().max())
    assert scale > 0.1
    torch.testing.assert_close(gradients[0], gradients[1], rtol=0, atol=1e-4 * scale)


@needs("pythae")
@pytest.mark.parametrize("peer", ["vae", "iwae"])
def test_vae_comparison_runs_its_smallest_configuration(tiny, one_thread, peer):
    r = peers.compare_vae(tiny, "mlp", peer, epoch_images=256, repeats=1, batch_size=128, lr=1e-3,
                          test_images=8, k=4, iwae_k=2, peak=10.0)
    assert r["parameters"]["genzoo"] == r["parameters"]["peer"] == 652_824
    assert r["genzoo"]["images"] == 256 and r["peer_side"]["images"] == 256
    # the same networks and objective (against the IWAE ours trains the same bound, decoding each image K = 2
    # times): the same matrix products per image
    ours, theirs = r["genzoo"]["flops_per_image"], r["peer_side"]["flops_per_image"]
    assert theirs == pytest.approx(ours, rel=1e-9)
    for side in ("genzoo", "peer_side"):
        assert math.isfinite(r[side]["test_nll"]) and 0 < r[side]["test_nll"] < 784 * math.log(2) + 50
        assert r[side]["seconds"]["median"] > 0


# ---------------------------------------------------------------------------- diffusion


def our_alpha_bar(timesteps: int = 1000) -> torch.Tensor:
    return torch.cumprod(1 - make_betas("cosine", timesteps), 0)


@needs("diffusers")
def test_diffusers_cosine_schedule_is_ours():
    from diffusers import DDPMScheduler

    theirs = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2").alphas_cumprod.double()
    assert torch.allclose(theirs, our_alpha_bar(), atol=1e-6)


@needs("lucidrains")
def test_lucidrains_cosine_schedule_is_ours():
    unet = peers.lucidrains_unet(8)
    theirs = peers.import_peer("lucidrains").GaussianDiffusion(unet, image_size=28, timesteps=1000,
                                                                beta_schedule="cosine").alphas_cumprod.double()
    assert torch.allclose(theirs, our_alpha_bar(), atol=1e-6)


@pytest.mark.parametrize("peer", [pytest.param("lucidrains", marks=needs("lucidrains")),
                                  pytest.param("diffusers", marks=needs("diffusers"))])
def test_ddpm_comparison_runs_its_smallest_configuration(tiny, one_thread, peer):
    r = peers.compare_ddpm(tiny, peer, steps=1, repeats=1, batch_size=4, peak=10.0,
                           overrides={"widths": (8, 16, 16), "res_blocks": 1}, widths=range(8, 25, 8))
    assert r["peer_width"] in (8, 16, 24) and r["parameters"]["genzoo"] > 0 and r["parameters"]["peer"] > 0
    for side in ("genzoo", "peer_side"):
        assert r[side]["flops_per_image"] > 0 and r[side]["seconds"]["median"] > 0


@needs("diffusers")
def test_diffusers_ddim_at_every_timestep_is_our_sampler():
    """With as many DDIM steps as timesteps (where its rule for the next step, t - T // steps, is ours), diffusers'
    DDIMScheduler as the quality comparison sets it takes genzoo's sampler's path: the same noise, network and
    guided eps give the same samples. A planted fault in the settings (no clipping of x_0, eps not re-derived
    from it, guidance the other way round) moves them apart."""
    torch.manual_seed(0)
    ours = genzoo.create("ddpm", widths=(8, 16, 16), res_blocks=1, timesteps=20, sample_steps=20)
    with torch.no_grad():
        for p in ours.sampling_network().parameters():
            p.add_(0.3 * torch.randn_like(p))  # a network whose x_0 leaves [-1, 1], so that clipping matters
    y = torch.tensor([3, 7, 0])
    expected = ours.sample(3, y=y, generator=torch.Generator().manual_seed(5), guidance=2.0, steps=20)
    net = ours.sampling_network()
    x = torch.randn((3, 1, 28, 28), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        out = peers.diffusers_ddim(lambda x, t, labels: net(x, t.expand(len(x)), labels), x, y, 20, 2.0, 20)
    assert torch.allclose((out.clamp(-1, 1) + 1) / 2, expected, atol=1e-4)


@pytest.mark.parametrize("peer", [pytest.param("lucidrains", marks=needs("lucidrains")),
                                  pytest.param("diffusers", marks=needs("diffusers"))])
def test_ddpm_quality_comparison_runs_its_smallest_configuration(tiny, one_thread, peer, tmp_path):
    r = peers.compare_ddpm_quality(tiny, peer, steps=2, n_samples=10, sampler_steps=2, guidance=2.0, batch_size=4,
                                   overrides={"widths": (8, 16, 16), "res_blocks": 1}, widths=range(8, 25, 8),
                                   sample_batch=5, grid=str(tmp_path / "grid.png"))
    assert r["n_samples"] == 10 and r["references"] == len(tiny.test_x)
    for side in ("genzoo", "peer_side"):
        assert math.isfinite(r[side]["fid"]) and 0 <= r[side]["confident_share"] <= 1
        assert r[side]["train_cpu_seconds"] > 0 and r[side]["sample_seconds"] > 0
        assert ("conditional_accuracy" in r[side]) == (peer == "diffusers")
    assert (tmp_path / "grid.png").stat().st_size > 0
    assert peers.quality_row(r).count("|") == 14


# ---------------------------------------------------------------------------- time to quality (issue 41)


@needs("pythae")
def test_time_to_quality_pythae_side_is_the_reproducibility_script(tiny, tmp_path):
    """benchmarks/time_to_quality.py's pythae side: the script's network sizes (counted by hand), batches of 20,
    Adam 1e-3 under MultiStepLR, each step a step of pythae's loss on the shared networks, and an epoch end that
    steps the scheduler; genzoo's IWAE scores the very networks pythae trains."""
    spec_ttq = importlib.util.spec_from_file_location("benchmark_time_to_quality", BENCHMARKS / "time_to_quality.py")
    ttq = importlib.util.module_from_spec(spec_ttq)
    sys.modules[spec_ttq.name] = ttq  # a dataclass looks its module up there
    spec_ttq.loader.exec_module(ttq)
    side = ttq.pythae_reproducibility_side(tiny, 0, tmp_path)
    networks = side.scorable()
    # Linear(784, 400) 314,000 + heads 400 -> 2 x 40: 32,080; Linear(40, 400) 16,400 + Linear(400, 784) 314,384
    assert networks.n_parameters() == 314_000 + 32_080 + 16_400 + 314_384
    before = [p.detach().clone() for p in networks.parameters()]
    per_epoch = -(-len(tiny.train_x) // 20)  # 256 digits: 13 batches of 20 (the last short one kept)
    side.train_until(1e-9)  # one step
    assert side.reading.steps == 1 and any(not torch.equal(a, b) for a, b in zip(before, networks.parameters()))
    for _ in range(per_epoch):  # past the first epoch's end
        side.step()
    trainer = side.trainer
    assert trainer.train_loader.batch_size == 20 and trainer.optimizer.defaults["lr"] == 1e-3
    assert isinstance(trainer.scheduler, torch.optim.lr_scheduler.MultiStepLR)
    assert sorted(trainer.scheduler.milestones) == [200, 350, 500, 750, 1000]
    assert side.epoch() == 2 and trainer.scheduler.last_epoch == 1  # the first epoch's end stepped it once
    test = tiny.test_x[:8].round()
    nll = ttq.likelihood_scorer(test, seed=0, batch=4)(side)["nll"]
    g = torch.Generator().manual_seed(0)
    networks.eval()
    with torch.no_grad():
        log_p = torch.cat([networks.log_prob(part, generator=g) for part in test.split(4)])
    assert nll == pytest.approx(-float(log_p.double().mean()), rel=1e-6)


def load_time_to_quality():
    spec_ttq = importlib.util.spec_from_file_location("benchmark_time_to_quality", BENCHMARKS / "time_to_quality.py")
    ttq = importlib.util.module_from_spec(spec_ttq)
    sys.modules[spec_ttq.name] = ttq  # a dataclass looks its module up there
    spec_ttq.loader.exec_module(ttq)
    return ttq


@needs("diffusers")
def test_time_to_quality_course_unet_is_the_courses_class_conditioned_unet():
    """The Hugging Face course's network: diffusers' UNet2DModel with 1 + 4 input channels, the label's embedding
    broadcast over the image as the 4 extra ones (recomputed here), and the course's block settings."""
    ttq = load_time_to_quality()
    torch.manual_seed(0)
    net = ttq.CourseUnet()
    c = net.model.config
    assert (c.sample_size, c.in_channels, c.out_channels, c.layers_per_block) == (28, 5, 1, 2)
    assert tuple(c.block_out_channels) == (32, 64, 64)
    assert tuple(c.down_block_types) == ("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D")
    assert tuple(c.up_block_types) == ("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D")
    x, t, y = torch.randn(3, 1, 28, 28), torch.tensor([5, 500, 998]), torch.tensor([0, 7, 3])
    planes = net.class_emb.weight[y].reshape(3, 4, 1, 1) * torch.ones(3, 4, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(net(x, t, y), net.model(torch.cat([x, planes], 1), t).sample)


@needs("diffusers")
def test_time_to_quality_course_step_is_the_courses_loss(tiny, monkeypatch):
    """One step of the diffusers side (at batch 16 here): MSE between the noise and the network's prediction at
    t < 999 on the images in [-1, 1], noised by the cosine DDPMScheduler, recomputed from the same draws; then Adam
    1e-3 moves the weights."""
    from diffusers import DDPMScheduler

    ttq = load_time_to_quality()
    assert ttq.DiffusersCourseSide.BATCH == 128
    monkeypatch.setattr(ttq.DiffusersCourseSide, "BATCH", 16)
    side = ttq.DiffusersCourseSide(tiny, seed=0, steps=2)
    assert side.opt.defaults["lr"] == 1e-3
    rng = torch.Generator().set_state(side.rng.get_state())
    idx = side.order[:16]
    x0 = tiny.train_x[idx] * 2 - 1
    noise = torch.randn(x0.shape, generator=rng)
    t = torch.randint(0, 999, (16,), generator=rng)
    alpha_bar = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2").alphas_cumprod[t]
    noisy = alpha_bar.sqrt().view(-1, 1, 1, 1) * x0 + (1 - alpha_bar).sqrt().view(-1, 1, 1, 1) * noise
    with torch.no_grad():
        expected = float(((side.net(noisy, t, tiny.train_y[idx]) - noise) ** 2).mean())
    before = [p.detach().clone() for p in side.net.parameters()]
    assert side.step() == pytest.approx(expected, rel=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(before, side.net.parameters()))


@pytest.mark.parametrize("peer", [pytest.param("diffusers", marks=needs("diffusers")),
                                  pytest.param("lucidrains", marks=needs("lucidrains"))])
def test_time_to_quality_diffusion_row_runs_at_tiny_budgets(tmp_path, monkeypatch, one_thread, peer):
    """The diffusion row end to end against one peer: genzoo's ddpm cpu recipe (at batch 16, without its
    end-of-session pictures) and the peer's recipe (diffusers' at batch 16, denoising-diffusion-pytorch's at a
    width of 8 and batch 4, their other settings kept) trained to each budget, sampled by DDIM (2 steps here) and
    scored; the conditional accuracy only against diffusers, whose side is class-conditional."""
    from genzoo.training.loop import Loop

    ttq = load_time_to_quality()
    monkeypatch.setattr(Loop, "make_pictures", lambda self, stops: None)
    monkeypatch.setattr(ttq, "GenzooSide", functools.partial(
        ttq.GenzooSide, sets=("sample_every=0", "test_every=0", "batch_size=16")))
    assert ttq.LUCIDRAINS_README["unet"] == {"dim": 64, "dim_mults": (1, 2, 4, 8), "flash_attn": True}
    assert (ttq.LUCIDRAINS_README["batch_size"], ttq.LUCIDRAINS_README["accumulate"],
            ttq.LUCIDRAINS_README["lr"], ttq.LUCIDRAINS_README["ema_decay"]) == (32, 2, 8e-5, 0.995)
    monkeypatch.setitem(ttq.LUCIDRAINS_README, "unet", {"dim": 8, "dim_mults": (1, 2, 4, 8), "flash_attn": True})
    monkeypatch.setitem(ttq.LUCIDRAINS_README, "batch_size", 4)
    monkeypatch.setattr(ttq.DiffusersCourseSide, "BATCH", 16)
    result = ttq.main(["diffusion", "--data", "embedded", "--budgets", "0.001,0.002", "--samples", "10",
                       "--real", "40", "--sampler-steps", "2", "--only", peer, "--out-dir", str(tmp_path),
                       "--work", str(tmp_path / "work")])
    entry = result["comparisons"][peer]
    assert list(result["comparisons"]) == [peer] and entry["key"] == "fid"
    assert entry["peer_version"].startswith("diffusers" if peer == "diffusers" else "denoising-diffusion-pytorch")
    assert "2 steps" in entry["genzoo_sampler"] and "2 steps" in entry["peer_sampler"]
    for side, points in entry["checkpoints"].items():
        assert [p["budget_minutes"] for p in points] == [0.001, 0.002]
        for p in points:
            assert math.isfinite(p["fid"]) and p["n_samples"] == 10 and p["n_real"] == 40 and p["steps"] > 0
            assert ("conditional_accuracy" in p) == (peer == "diffusers"), side
    assert (tmp_path / "time-to-quality-diffusion.png").stat().st_size > 0
