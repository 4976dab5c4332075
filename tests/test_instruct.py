"""instruct: the paper's two-scale guidance written out plainly, the zero-initialised image channels, the loss
against a recomputation, dropping rates, a few steps that lower the loss, reproducible edits, resume; in pixel and
in latent space; semantic pairs mixed into the triples."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import genzoo
from genzoo.config import ConfigError
from genzoo.models.diffusion import UNet
from genzoo.models.instruct import InstructPix2Pix, edits

TINY = {"widths": (8, 16), "res_blocks": 1, "attn_heads": 2, "timesteps": 50, "sample_steps": 4, "text_dim": 16,
        "text_layers": 1, "text_heads": 2, "trigram_buckets": 64}
TINY_LATENT = {**TINY, "space": "latent", "ae_widths": (8, 8), "latent_channels": 2, "first_stage_steps": 0}
SPACES = {"pixel": TINY, "latent": TINY_LATENT}


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    yield


def scrambled(model: InstructPix2Pix, seed: int = 0) -> InstructPix2Pix:
    """Every parameter redrawn: the zero-initialised layers would make the guidance checks trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return model.eval()


@pytest.mark.parametrize("space", SPACES)
def test_dual_guidance_is_the_papers_formula(space):
    model = scrambled(InstructPix2Pix(**SPACES[space], ema_decay=0.0))
    g = torch.Generator().manual_seed(1)
    xt, image = torch.randn(3, *model.shape, generator=g), torch.rand(3, *model.shape, generator=g) * 2 - 1
    t = torch.tensor([0, 20, 49])
    with torch.no_grad():
        text = model.encode_text(["mirror it", "make it bold", "zoom out"])
        net = model.unet
        null = model.null_text.expand(3, -1)
        e_it = net(torch.cat([xt, image], 1), t, cond=text)  # image and text
        e_i0 = net(torch.cat([xt, image], 1), t, cond=null)  # image, no text
        e_00 = net(torch.cat([xt, torch.zeros_like(image)], 1), t, cond=null)  # neither
        assert not torch.allclose(e_it, e_i0) and not torch.allclose(e_i0, e_00)
        # Brooks et al. eq. 3
        for s_i, s_t in ((1.5, 4.0), (0.0, 2.0), (3.0, 0.0)):
            expected = e_00 + s_i * (e_i0 - e_00) + s_t * (e_it - e_i0)
            got = model.guided_output(net, xt, t, image, text, s_i, s_t)
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(model.guided_output(net, xt, t, image, text, 1.0, 1.0), e_it, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(model.guided_output(net, xt, t, image, text, 0.0, 0.0), e_00, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("batch", [4, 5])
def test_dual_guidance_splits_its_three_passes_at_any_batch_size(batch):
    """The 3B outputs of the one network call are split back into their three passes by position: at batch sizes
    that 3B does not share a divisor with (3 divides every 3B, so a batch of 3 hides a split into the wrong count)."""
    model = scrambled(InstructPix2Pix(**TINY, ema_decay=0.0))
    g = torch.Generator().manual_seed(3)
    xt, image = torch.randn(batch, *model.shape, generator=g), torch.rand(batch, *model.shape, generator=g) * 2 - 1
    t = torch.arange(batch) * 9
    with torch.no_grad():
        text, null, net = model.encode_text(["zoom out"] * batch), model.null_text.expand(batch, -1), model.unet
        e_it, e_i0, e_00 = (net(torch.cat([xt, im], 1), t, cond=c)
                            for im, c in ((image, text), (image, null), (torch.zeros_like(image), null)))
        got = model.guided_output(net, xt, t, image, text, 2.0, 0.5)
    torch.testing.assert_close(got, e_00 + 2.0 * (e_i0 - e_00) + 0.5 * (e_it - e_i0), rtol=1e-4, atol=1e-5)


def test_guidance_of_v_outputs_is_the_guidance_of_their_noise_predictions():
    """With v-prediction the editor combines the three v outputs by eq. 3: the same as combining the three eps they
    stand for (eps = sqrt(1 - abar) x_t + sqrt(abar) v), which is what DDIM then steps with."""
    model = scrambled(InstructPix2Pix(**TINY, ema_decay=0.0, prediction="v"))
    g = torch.Generator().manual_seed(2)
    xt, image = torch.randn(3, *model.shape, generator=g), torch.rand(3, *model.shape, generator=g) * 2 - 1
    t = torch.tensor([1, 25, 48])
    a = model.schedule.alpha_bar[t].float().view(-1, 1, 1, 1)
    with torch.no_grad():
        text, null, net = model.encode_text(["mirror it"] * 3), model.null_text.expand(3, -1), model.unet
        eps = [(1 - a).sqrt() * xt + a.sqrt() * net(torch.cat([xt, im], 1), t, cond=c)
               for im, c in ((image, text), (image, null), (torch.zeros_like(image), null))]
        expected = eps[2] + 1.5 * (eps[1] - eps[2]) + 3.0 * (eps[0] - eps[1])
        got, _ = model.schedule.split(model.guided_output(net, xt, t, image, text, 1.5, 3.0), xt, t, "v")
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("space", SPACES)
def test_a_new_editor_predicts_what_the_unet_without_the_image_channels_would(space):
    torch.manual_seed(0)
    model = InstructPix2Pix(**SPACES[space])
    c, size = model.shape[0], model.shape[-1]  # (1, 28) on pixels, (latent_channels, 7) on latents
    assert (c, size) == ((1, 28) if space == "pixel" else (2, 7))
    with torch.no_grad():  # the rest redrawn (the zero output layers would hide everything), the image channels kept
        for name, p in model.unet.named_parameters():
            if name != "stem.weight":
                p.copy_(0.2 * torch.randn_like(p))
        model.unet.stem.weight[:, :c].copy_(0.2 * torch.randn_like(model.unet.stem.weight[:, :c]))
    assert model.unet.stem.weight.shape[1] == 2 * c and (model.unet.stem.weight[:, c:] == 0).all()
    plain = UNet(c, size, TINY["widths"], 1, 7, 2, 0.0)
    state = {k: (v[:, :c] if k == "stem.weight" else v) for k, v in model.unet.state_dict().items()}
    plain.load_state_dict(state)
    g = torch.Generator().manual_seed(0)
    xt, image, t = torch.randn(2, c, size, size, generator=g), torch.rand(2, c, size, size, generator=g), \
        torch.tensor([3, 40])
    cond = torch.randn(2, model.unet.emb_dim, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(model.unet(torch.cat([xt, image], 1), t, cond=cond), plain(xt, t, cond=cond))


@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("space", SPACES)
def test_loss_against_a_plain_recomputation_and_the_drop_rates(space, prediction):
    model = scrambled(InstructPix2Pix(**SPACES[space], noise_schedule="linear", prediction=prediction)).train()
    x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    inputs, outputs = x.flip(-1), x
    texts = ["mirror it"] * 3 + ["make it bold"] * 3
    torch.manual_seed(7)
    got = model.triple_loss(inputs, texts, outputs)["loss"]
    torch.manual_seed(7)  # the same draws in the same order: the drops, t, the noise
    u = torch.rand(6)
    drop_text = (u < 0.05) | ((u >= 0.10) & (u < 0.15))
    drop_image = (u >= 0.05) & (u < 0.15)
    t = torch.randint(0, 50, (6,))
    if space == "pixel":  # pixels in [-1, 1]
        x0, image = 2 * outputs - 1, 2 * inputs - 1
    else:  # the encoder's means (its first latent_channels outputs), scaled to unit std on this first batch
        with torch.no_grad():
            mu_out = model.first_stage.encoder(2 * outputs - 1)[:, :2]
            mu_in = model.first_stage.encoder(2 * inputs - 1)[:, :2]
        x0, image = mu_out / mu_out.std(), mu_in / mu_out.std()
        torch.testing.assert_close(model.latent_scale, 1 / mu_out.std())
    noise = torch.randn(6, *x0.shape[1:])
    alpha_bar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 50, dtype=torch.float64), 0)
    a = alpha_bar[t].float().view(-1, 1, 1, 1)
    xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
    image = torch.where(drop_image.view(-1, 1, 1, 1), torch.zeros_like(image), image)
    text = torch.where(drop_text[:, None], model.null_text.expand(6, -1), model.encode_text(texts))
    # the noise, or Salimans & Ho's v = sqrt(abar) eps - sqrt(1 - abar) x_0
    target = noise if prediction == "eps" else a.sqrt() * noise - (1 - a).sqrt() * x0
    expected = ((model.unet(torch.cat([xt, image], 1), t, cond=text) - target) ** 2).mean()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    drop_text, drop_image = model.drops(40_000)
    for observed, rate in (((drop_text & ~drop_image).float().mean(), 0.05),
                           ((drop_image & ~drop_text).float().mean(), 0.05),
                           ((drop_text & drop_image).float().mean(), 0.05)):
        assert abs(observed.item() - rate) < 0.006


def test_word_noise_is_applied_in_training_only(monkeypatch):
    from genzoo.models.instruct import editor

    seen = []
    monkeypatch.setattr(editor, "corrupt", lambda texts, p: seen.append((list(texts), p)) or ["qqq"] * len(texts))
    model = InstructPix2Pix(**TINY, word_noise=0.3)
    x = torch.rand(2, 1, 28, 28)
    model.train().triple_loss(x, ["mirror it", "invert it"], x)
    assert seen == [(["mirror it", "invert it"], 0.3)]
    model.eval().triple_loss(x, ["mirror it", "invert it"], x)
    assert len(seen) == 1  # evaluation reads the instructions as given
    with pytest.raises(ConfigError, match="word_noise"):
        InstructPix2Pix(**TINY, word_noise=1.5)


@pytest.mark.parametrize("space", SPACES)
def test_a_tiny_editor_learns_in_a_few_steps(tiny, space):
    torch.manual_seed(0)
    model = InstructPix2Pix(**SPACES[space]).train()
    x = tiny.train_x[:16]
    triples = edits.make_triples(x, torch.Generator().manual_seed(0), kinds=["flip-horizontal", "invert"] * 8)
    opt = torch.optim.Adam([p for n, p in model.named_parameters() if not n.startswith("ema.")], lr=3e-3)

    def mean_loss():
        with torch.random.fork_rng(), torch.no_grad():
            torch.manual_seed(123)
            return sum(float(model.triple_loss(triples.inputs, triples.instructions, triples.outputs)["loss"])
                       for _ in range(4)) / 4

    before = mean_loss()
    for step in range(25):
        opt.zero_grad(set_to_none=True)
        model.triple_loss(triples.inputs, triples.instructions, triples.outputs)["loss"].backward()
        opt.step()
        model.after_optimizer_step(step)
    assert mean_loss() < 0.8 * before
    changed = [n for n, p in model.text.named_parameters() if not torch.equal(p, model.ema["text"].get_parameter(n))]
    assert changed, "the EMA follows the text encoder too"


def test_same_generator_same_edit_and_inputs_are_checked():
    model = scrambled(InstructPix2Pix(**TINY))
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    texts = ["mirror it", "zzz unknown words", "make it bold"]
    a = model.edit(x, texts, image_guidance=1.5, text_guidance=3.0, steps=3, generator=torch.Generator().manual_seed(2))
    b = model.edit(x, texts, image_guidance=1.5, text_guidance=3.0, steps=3, generator=torch.Generator().manual_seed(2))
    c = model.edit(x, texts, image_guidance=1.5, text_guidance=3.0, steps=3, generator=torch.Generator().manual_seed(3))
    d = model.edit(x, texts, image_guidance=1.5, text_guidance=0.0, steps=3, generator=torch.Generator().manual_seed(2))
    assert a.shape == (3, 1, 28, 28) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, d)
    with pytest.raises(ConfigError, match=r"instruct: instruction '  ' is empty"):
        model.edit(x[:1], ["  "])
    with pytest.raises(ConfigError, match=r"give one instruction per image, a list of 3; got 2 instructions"):
        model.edit(x, texts[:2])
    with pytest.raises(ConfigError, match=r"images must be a \(B, 1, 28, 28\) tensor, got \(3, 28, 28\)"):
        model.edit(x[:, 0], texts)
    with pytest.raises(ConfigError, match=r"images must be floats in \[0, 1\], got torch.float32 in \[0, 255\]"):
        model.edit(torch.zeros_like(x).index_fill_(3, torch.tensor([5]), 255.0), texts)
    with pytest.raises(ConfigError, match=r"image_guidance=-1, text_guidance=3: both must be >= 0"):
        model.edit(x, texts, image_guidance=-1.0)
    blind = scrambled(InstructPix2Pix(**TINY, use_text=False))
    e = blind.edit(x, texts, steps=3, text_guidance=3.0, generator=torch.Generator().manual_seed(2))
    f = blind.edit(x, ["a", "b", "c"], steps=3, text_guidance=0.0, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(e, f)  # the baseline never reads the text


def test_evaluation_scores_edits_against_their_exact_outputs():
    """`genzoo evaluate`'s edit metrics: the kinds in turn, the run's guidance, PSNR and evaluator agreement written
    out plainly here (PSNR = -10 log10 of the mean squared error per image, averaged)."""
    from genzoo.evaluation.evaluate import editing_metrics
    from genzoo.evaluation.evaluator import load_evaluator

    model = scrambled(InstructPix2Pix(**TINY))
    x = torch.rand(30, 1, 28, 28, generator=torch.Generator().manual_seed(4))
    got = editing_metrics(model, x, 30, seed=5)
    g = torch.Generator().manual_seed(5)
    kinds = list(edits.KINDS)
    triples = edits.make_triples(x, g, kinds=[kinds[i % len(kinds)] for i in range(30)])
    edited = model.edit(triples.inputs, triples.instructions, generator=g)
    mse = ((edited - triples.outputs) ** 2).mean(dim=(1, 2, 3))
    assert got["edit_psnr"]["value"] == pytest.approx((-10 * torch.log10(mse)).mean().item(), rel=1e-5)
    nothing = ((triples.inputs - triples.outputs) ** 2).mean(dim=(1, 2, 3))
    assert got["edit_psnr_input"]["value"] == pytest.approx((-10 * torch.log10(nothing)).mean().item(), rel=1e-5)
    assert got["edit_success"]["value"] == pytest.approx((-10 * torch.log10(mse) >= 18).float().mean().item())
    evaluator = load_evaluator("cpu")
    same = evaluator.predict(edited) == evaluator.predict(triples.outputs)
    assert got["edit_label_agreement"]["value"] == pytest.approx(same.float().mean().item())
    assert got["edit_psnr"]["n"] == 30 and got["edit_psnr"]["text_guidance"] == model.config.text_guidance
    per_kind = {kind: (-10 * torch.log10(mse[[i for i in range(30) if i % len(kinds) == k]])).mean().item()
                for k, kind in enumerate(kinds)}  # edits k, k + 23, ... are of kind k
    assert got["edit_kinds_at_18db"]["by_kind"] == pytest.approx(per_kind, rel=1e-5)
    assert got["edit_kinds_at_18db"]["value"] == sum(v >= 18 for v in per_kind.values())
    assert "semantic_edit_accuracy" not in got  # no labels given
    from genzoo.pretrained.build import HEADLINE
    from genzoo.showcase.shipped import FIGURES
    shown = {key: form for key, _, form in FIGURES}  # what the manifest and the demo report print of the count
    assert HEADLINE["edit_kinds_at_18db"][1] == shown["edit_kinds_at_18db"] == "{:.0f} of " + str(len(kinds))


def test_semantic_edits_are_read_as_the_digit_asked_for():
    """`genzoo evaluate`'s semantic edits: one test digit per 23 edits, each asked to become another digit drawn
    from the seed, scored as the share the evaluator reads as that digit (recomputed plainly here)."""
    from genzoo.evaluation.evaluate import editing_metrics
    from genzoo.evaluation.evaluator import load_evaluator

    model = scrambled(InstructPix2Pix(**TINY))
    x = torch.rand(50, 1, 28, 28, generator=torch.Generator().manual_seed(4))
    y = torch.arange(50) % 10
    got = editing_metrics(model, x, 46, seed=5, test_y=y)["semantic_edit_accuracy"]
    g = torch.Generator().manual_seed(6)
    targets = (y[:2] + torch.randint(1, 10, (2,), generator=g)) % 10
    assert (targets != y[:2]).all()
    texts = edits.semantic_instructions(y[:2].tolist(), targets.tolist(), g)
    assert all(str(t) in text or edits.DIGIT_WORDS[t] in text for t, text in zip(targets.tolist(), texts))
    edited = model.edit(x[:2], texts, generator=g)
    read = load_evaluator("cpu").predict(edited)
    assert got["n"] == 2 and got["value"] == pytest.approx((read == targets).float().mean().item())


def test_semantic_edit_accuracy_counts_the_digits_asked_for_across_batches():
    """A stand-in editor draws the digit each instruction names (as a numeral or a word), except on every
    third image, where it leaves the input's own digit; a stand-in evaluator reads the digit back. 300 edits
    cross the 256-edit batches."""
    from genzoo.evaluation.evaluate import semantic_edit_metrics

    def named_digit(text: str) -> int:
        last = text.split()[-1]
        return int(last) if last.isdigit() else edits.DIGIT_WORDS.index(last)

    class Editor:
        name = "stand-in"

        def edit(self, images, instructions, generator=None):
            assert len(images) == len(instructions) <= 256
            return torch.stack([torch.full((1, 28, 28), named_digit(t) / 10) for t in instructions])

        def edit_settings(self):
            return {"steps": 1}

    class Evaluator:
        def predict(self, images):
            return (images.mean(dim=(1, 2, 3)) * 10).round().long()

    x = torch.zeros(400, 1, 28, 28)
    y = torch.arange(400) % 10
    keep_own = torch.arange(300) % 3 == 0

    class Stubborn(Editor):  # every third edit keeps the source digit
        def edit(self, images, instructions, generator=None):
            out = super().edit(images, instructions, generator)
            start = self.done
            self.done += len(images)
            own = y[start:self.done].float().div(10).view(-1, 1, 1, 1).expand_as(out)
            return torch.where(keep_own[start:self.done].view(-1, 1, 1, 1), own, out)

    assert semantic_edit_metrics(Editor(), x, y, 300, 7, Evaluator())["semantic_edit_accuracy"]["value"] == 1.0
    stubborn = Stubborn()
    stubborn.done = 0
    got = semantic_edit_metrics(stubborn, x, y, 300, 7, Evaluator())["semantic_edit_accuracy"]
    assert got["n"] == 300 and got["value"] == pytest.approx(200 / 300)  # the targets always differ from the source


@pytest.mark.parametrize("space", SPACES)
def test_resume_gives_the_same_weights(tiny, tmp_path, space, pairs_file):
    train = {"steps": 6, "epochs": 0, "batch_size": 16, "log_every": 3, "n_grid": 4, "sample_every": 0,
             "test_every": 0, "warmup_steps": 0}
    # the latent run stops inside its autoencoder's stage (3 of 4 steps) and resumes; semantic pairs mixed in
    hparams = TINY if space == "pixel" else {**TINY_LATENT, "first_stage_steps": 4, "semantic_pairs": str(pairs_file),
                                             "semantic_fraction": 0.5}
    kw = {"data": tiny, "device": "cpu", "seed": 0, "progress": False, "model_overrides": hparams}
    genzoo.train("instruct", out=tmp_path / "full", train_overrides=train, **kw)
    run = tmp_path / "stopped"
    genzoo.train("instruct", out=run, train_overrides={**train, "steps": 3}, **kw)
    genzoo.train("instruct", out=run, resume=True, train_overrides={"steps": 6},
                 **{k: v for k, v in kw.items() if k != "model_overrides"})
    a, b = load_file(str(tmp_path / "full" / "model.safetensors")), load_file(str(run / "model.safetensors"))
    assert set(a) == set(b) and any(k.startswith("ema.") for k in a)
    assert ("latent_scale" in a) == (space == "latent") and any(k.startswith("first_stage.") for k in a) == \
        (space == "latent")
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert (tmp_path / "full" / "edits.png").exists()
    model = genzoo.load(tmp_path / "full")
    assert model.config.vocabulary == InstructPix2Pix(**TINY).config.vocabulary  # read back from config.json
    if space == "latent":
        assert model.latent_scale.item() > 0  # measured on the first diffusion batch (step 4)
        assert model.edit(tiny.test_x[:2], ["mirror it", "turn this 3 into a 8"], steps=2).shape == (2, 1, 28, 28)


@pytest.fixture
def pairs_file(tmp_path):
    """Five made-up semantic pairs in the format of `genzoo semantic-pairs`."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    path = tmp_path / "pairs.safetensors"
    save_file({"inputs": torch.rand(5, 1, 28, 28, generator=g), "outputs": torch.rand(5, 1, 28, 28, generator=g),
               "sources": torch.tensor([1, 2, 3, 4, 5]), "targets": torch.tensor([7, 0, 9, 8, 6])}, str(path))
    return path


def test_semantic_pairs_replace_their_share_of_the_triples(pairs_file, tmp_path):
    from safetensors.torch import load_file as read

    pairs = read(str(pairs_file))
    x = torch.rand(400, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    triples = edits.make_triples(x, torch.Generator().manual_seed(2))
    model = InstructPix2Pix(**TINY, semantic_pairs=str(pairs_file), semantic_fraction=0.25)
    torch.manual_seed(0)
    inputs, texts, outputs = model.mix_semantic(triples.inputs, triples.instructions, triples.outputs)
    replaced = [i for i in range(400) if texts[i] != triples.instructions[i]]
    assert 70 <= len(replaced) <= 130  # a quarter of 400, give or take 3 standard deviations
    for i in range(400):
        if i not in replaced:
            assert torch.equal(inputs[i], triples.inputs[i]) and torch.equal(outputs[i], triples.outputs[i])
            continue
        # a pair: its input and output from the same row of the file, its instruction naming that row's target
        k = [j for j in range(5) if torch.equal(pairs["inputs"][j], inputs[i])]
        assert len(k) == 1 and torch.equal(pairs["outputs"][k[0]], outputs[i])
        target = int(pairs["targets"][k[0]])
        assert str(target) in texts[i] or edits.DIGIT_WORDS[target] in texts[i], texts[i]
        assert texts[i] in edits.semantic_instructions([int(pairs["sources"][k[0]])] * 40, [target] * 40,
                                                       torch.Generator().manual_seed(0))
    assert model.mix_semantic(triples.inputs, triples.instructions, triples.outputs)[1] != texts  # new draws
    unmixed = InstructPix2Pix(**TINY).mix_semantic(triples.inputs, triples.instructions, triples.outputs)
    assert unmixed[1] == triples.instructions
    with pytest.raises(ConfigError, match=r"semantic_pairs='.*nothing.safetensors': cannot read it .*genzoo "
                                          r"semantic-pairs DDPM_RUN --out DIR"):
        InstructPix2Pix(**TINY, semantic_pairs=str(tmp_path / "nothing.safetensors")).loss(x[:4])


def test_config_errors_name_the_value():
    with pytest.raises(ConfigError, match=r"p_drop_text \+ p_drop_image \+ p_drop_both = 1.2: must be <= 1"):
        InstructPix2Pix(**TINY, p_drop_text=0.4, p_drop_image=0.4, p_drop_both=0.4)
    with pytest.raises(ConfigError, match=r"text_heads=3: must divide text_dim=16"):
        InstructPix2Pix(**{**TINY, "text_heads": 3})


def test_the_first_stage_can_start_from_a_latent_ddpm_run(tmp_path):
    from safetensors.torch import save_file

    from genzoo.models.ddpm import DDPM
    from genzoo.train_config import TrainConfig

    ddpm = DDPM(space="latent", widths=(8, 16), res_blocks=1, attn_heads=2, timesteps=50, ae_widths=(8, 8),
                latent_channels=2)
    save_file({k: v.contiguous() for k, v in ddpm.state_dict().items()}, str(tmp_path / "model.safetensors"))
    model = InstructPix2Pix(**TINY_LATENT, first_stage_from=str(tmp_path))
    theirs = ddpm.first_stage.state_dict()
    assert not all(torch.equal(v, theirs[k]) for k, v in model.first_stage.state_dict().items())
    model.configure_optimizers(TrainConfig())
    for k, v in model.first_stage.state_dict().items():
        assert torch.equal(v, theirs[k]), k
    with pytest.raises(ConfigError, match=r"its first stage does not fit this one \(ae_widths=\(8, 16\)"):
        InstructPix2Pix(**{**TINY_LATENT, "ae_widths": (8, 16)}, first_stage_from=str(tmp_path)).configure_optimizers(
            TrainConfig())
    with pytest.raises(ConfigError, match=r"only a latent editor has a first stage"):
        InstructPix2Pix(**TINY, first_stage_from=str(tmp_path)).configure_optimizers(TrainConfig())
