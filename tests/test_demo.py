"""`genzoo demo`: every registered family trained, evaluated and reported; the DAE's Markov chain; the page offline."""

import html
import json
import os
import pickle
import re
from pathlib import Path

import pytest
import torch
from test_demo_shipped import shipped, zoo  # noqa: F401 - the tiny packed zoo, installed as genzoo's shipped models
from test_report import CHROMIUM, chromium_check, parse

from genzoo import catalog, commands, registry, runs
from genzoo.config import ConfigError
from genzoo.data import Dataset
from genzoo.metrics import confident_share
from genzoo.models.base import CapabilityError
from genzoo.models.dae import DenoisingAutoencoder, corrupt
from genzoo.runs import RunError
from genzoo.showcase.demo import (
    END_RESERVE,
    MIN_SAMPLES,
    MIN_TRAIN_SECONDS,
    check_models,
    fit_subset,
    plan_slice,
    run_demo,
    samples_within,
    sampling_cost,
    train_slice,
)
from genzoo.showcase.demo_report import COLLAPSED_BITS, RECOGNISABLE_SHARE, not_there_note, objective_source
from genzoo.showcase.zoo import RECIPES, taxonomy_leaves


def test_every_registered_model_has_a_leaf_and_the_demo_runs_those_with_a_recipe(monkeypatch):
    assert sorted(taxonomy_leaves()) == sorted(registry.MODELS)  # each once, drawn from the model table
    assert set(RECIPES) <= set(registry.MODELS)
    assert all(RECIPES[name] is catalog.MODELS[name].demo for name in RECIPES)  # the table's row is the one place
    assert [name for name, entry in catalog.MODELS.items() if entry.demo is not None] == list(RECIPES)
    assert all(r.share > 0 for r in RECIPES.values())  # relative shares, normalised over the models run
    assert all(callable(getattr(commands, extra)) for r in RECIPES.values() for extra in r.extras)
    assert check_models(None) == [name for name in registry.MODELS if name in RECIPES]
    with monkeypatch.context() as m:  # a model registered without a recipe is left out, and refused by name
        m.delitem(RECIPES, "rbm")
        assert "rbm" not in check_models(None) and check_models(["gmm"]) == ["gmm"]
        with pytest.raises(ConfigError, match=r"--models rbm: no demo recipe yet; give its row of "
                                              r"genzoo.catalog.MODELS a demo \(docs/CONTRIBUTING.md\)"):
            check_models(["gmm", "rbm"])
    with pytest.raises(ConfigError, match=r"--models nope: unknown; known models: gmm, bayes"):
        check_models(["nope"])


def test_slices_of_the_default_demo_add_up_to_the_budget_less_the_reserve():
    """Each model's slice is its share of what is left; run to plan, the slices fill the budget exactly."""
    budget, names = 840.0, list(registry.MODELS)
    left, slices = budget, []
    for i, name in enumerate(names):
        whole, train = plan_slice(left, RECIPES[name].share, sum(RECIPES[m].share for m in names[i:]),
                                  RECIPES[name].eval_seconds)
        assert MIN_TRAIN_SECONDS <= train <= whole and train >= whole / 2, name
        slices.append(whole)
        left -= whole
    assert sum(slices) == pytest.approx(budget - END_RESERVE)
    # an overrun of the first models shrinks the later slices; nothing left still trains the minimum
    assert plan_slice(-30.0, 0.1, 0.5, 20.0) == (0.0, MIN_TRAIN_SECONDS)
    assert plan_slice(105.0, 0.1, 0.5, 20.0) == (20.0, 10.0)  # evaluation keeps at most half of the slice


def test_samples_within_the_slice():
    assert samples_within(60.0, (0.0, 0.01), 1000) == 1000  # time for all
    assert samples_within(6.0, (0.0, 0.02), 1000) == 300  # as many as 6 s allow
    assert samples_within(6.0, (2.0, 0.02), 1000) == 200  # less the call's fixed cost
    assert samples_within(0.5, (0.0, 0.02), 1000) == MIN_SAMPLES  # never fewer than the minimum
    assert samples_within(0.5, (0.0, 0.02), 64) == 64  # nor more than wanted


def test_sampling_cost_separates_the_call_from_the_samples(monkeypatch):
    """A sequential sampler costs mostly per call: the probe's line through two batch sizes finds both parts,
    where the small batch alone would charge the call to its samples (0.4 s / 8 = 0.05 s each, not 0.01)."""
    import time

    from genzoo.showcase import demo

    class Slow:
        conditional = False

        def sample(self, n, y=None, generator=None):
            time.sleep(0.32 + 0.01 * n)

    monkeypatch.setattr(demo.runs, "load", lambda run_dir, device: Slow())
    fixed, per_image = sampling_cost(Path("run"), torch.device("cpu"), 0)
    assert fixed == pytest.approx(0.32, abs=0.05) and per_image == pytest.approx(0.01, abs=0.003)


def test_closed_form_fits_take_a_seeded_subset_of_a_large_training_set_on_a_cpu():
    n = RECIPES["gmm"].cpu_fit_images
    big = Dataset("mnist", "here", torch.arange(n + 7.0).view(-1, 1, 1, 1), torch.arange(n + 7) % 10,
                  torch.zeros(3, 1, 1, 1), torch.zeros(3, dtype=torch.long))
    subset, said = fit_subset("gmm", big, "cpu", seed=0)
    assert len(subset.train_x) == n and said == f", fitted on a random {n:,} of the {n + 7:,} training digits (seed 0)"
    assert subset.train_x.flatten().unique().numel() == n  # distinct images, labels kept with them
    assert torch.equal(subset.train_y, subset.train_x.flatten().long() % 10)
    assert torch.equal(fit_subset("gmm", big, "cpu", seed=0)[0].train_x, subset.train_x)  # seeded
    assert subset.test_x is big.test_x  # evaluated on the whole test set
    for name, scale in (("gmm", "gpu"), ("vae", "cpu")):  # the full set on a GPU; trained models see every digit
        data, said = fit_subset(name, big, scale, seed=0)
        assert data is big and said == ""


def test_a_continued_run_reads_its_checkpoint_through_the_checked_loader(tmp_path, tiny):
    """A checkpoint that is not genzoo's (here a bare pickle) is refused before anything in it runs."""
    run_dir = tmp_path / "vae"
    run_dir.mkdir()
    (run_dir / "checkpoint.pt").write_bytes(pickle.dumps({"step": 3, "model": {}}))
    with pytest.raises(RunError, match=r"checkpoint.pt: not a genzoo checkpoint: it is not a torch archive"):
        train_slice("vae", tiny, run_dir, 0, torch.device("cpu"), "tiny", 5.0, progress=False)


def test_confident_share_counts_probabilities_at_or_above_the_threshold():
    probs = torch.tensor([[0.95, 0.05], [0.5, 0.5], [0.1, 0.9], [0.89, 0.11]])
    assert confident_share(probs) == 0.5  # 0.95 and exactly 0.9 count; 0.5 and 0.89 do not
    with pytest.raises(ValueError, match=r"\(N, n_classes\) with N >= 1, got shape \(3,\)"):
        confident_share(torch.ones(3))


def test_a_family_short_of_recognisable_digits_says_so_from_its_measured_share():
    """The note comes from the measured confident share, not a list of models: under RECOGNISABLE_SHARE it says
    what the samples reached, how each demo run moved it, the command that continues it and the full recipe."""
    assert RECOGNISABLE_SHARE == 0.5
    sessions = [{"what": "new run", "confident_share": 0.22, "n_samples": 100, "fid": 650.0},
                {"what": "continued from step 72", "confident_share": 0.29, "n_samples": 100, "fid": 540.0}]
    floor = {"confident_share": 0.991}
    short = {"confident_share": {"value": 0.29, "n": 100}, "train_seconds": 64.2}
    note = html.unescape(not_there_note("pixelrnn", Path("/tmp/d"), short, sessions, floor))
    assert "Not recognisable digits yet" in note and "29.0% of its 100 samples" in note and "after 64 s" in note
    assert "(real digits: 99%)" in note and "went 22.0% → 29.0% (FID-style 650 → 540)" in note
    # two standard errors of the difference of two shares of 100 samples: 2 sqrt(.22 .78 / 100 + .29 .71 / 100)
    assert "the last change, +7.0 points, is within the sampling noise of 100 and 100 samples (±12.3 points" in note
    assert "genzoo demo --out /tmp/d" in note and "--models pixelrnn" in note
    assert RECIPES["pixelrnn"].full_recipe in note
    there = {"confident_share": {"value": RECOGNISABLE_SHARE, "n": 1000}}
    assert not_there_note("vae", Path("/tmp/d"), there, sessions[:1], floor) == ""  # at the threshold: there
    assert not_there_note("bayes", Path("/tmp/d"), {"confident_share": {"value": 0.1, "n": 9}}, [], floor) != ""
    assert not_there_note("instruct", Path("/tmp/d"), {}, [], floor) == ""  # no samples scored: nothing to say
    # confident but collapsed (noise the evaluator calls an 8): not digits either
    assert COLLAPSED_BITS == 1.0
    blob = {"confident_share": {"value": 1.0, "n": 100}, "class_entropy_bits": {"value": 0.0}}
    assert "almost one class (0.00 bits" in not_there_note("gan", Path("/tmp/d"), blob, [], floor)
    spread = {"confident_share": {"value": 0.9, "n": 100}, "class_entropy_bits": {"value": COLLAPSED_BITS}}
    assert not_there_note("gan", Path("/tmp/d"), spread, [], floor) == ""


def test_an_editor_is_judged_by_its_edits_not_its_samples():
    """instruct's outputs are edits: its note follows the share of edits the evaluator reads as the exact output's
    digit, with the edit PSNR beside doing nothing, and how each demo run moved them; its unconditional samples
    (confident or not) do not decide it."""
    floor = {"confident_share": 0.991}
    sessions = [{"what": "new run", "confident_share": 0.9, "edit_label_agreement": 0.2, "edit_psnr": 9.5},
                {"what": "continued from step 90", "confident_share": 0.8, "edit_label_agreement": 0.35,
                 "edit_psnr": 11.25}]
    short = {"confident_share": {"value": 0.8, "n": 200}, "edit_label_agreement": {"value": 0.35, "n": 230},
             "edit_psnr": {"value": 11.25}, "edit_psnr_input": {"value": 10.5}}
    note = html.unescape(not_there_note("instruct", Path("/tmp/d"), short, sessions, floor))
    assert "Not recognisable edits yet" in note and "35.0% of its 230 edits" in note
    assert "edit PSNR 11.25 dB" in note and "doing nothing: 10.5 dB" in note
    assert "went 20.0% (9.5 dB) → 35.0% (11.25 dB)" in note and RECIPES["instruct"].full_recipe in note
    there = {**short, "confident_share": {"value": 0.1, "n": 200},
             "edit_label_agreement": {"value": RECOGNISABLE_SHARE, "n": 230}}
    assert not_there_note("instruct", Path("/tmp/d"), there, sessions, floor) == ""


# ---------------------------------------------------------------------------- the DAE as a Markov chain


@pytest.fixture(scope="module")
def dae():
    torch.manual_seed(0)
    model = DenoisingAutoencoder(channels=4, latent_dim=4, chain_steps=4, noise="salt-and-pepper", noise_level=0.3)
    return model.eval()


def test_dae_chain_shape_range_and_every_step_changes_the_image(dae):
    frames = dae.markov_chain(3, [0, 1, 2, 3, 4], torch.Generator().manual_seed(0))
    assert frames.shape == (3, 5, 1, 28, 28)
    assert frames.min() >= 0 and frames.max() <= 1
    for t in range(4):
        assert (frames[:, t + 1] - frames[:, t]).abs().amax((1, 2, 3)).min() > 1e-3, f"step {t + 1} left an image"
    samples = dae.sample(3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(samples, frames[:, -1])  # a sample is the chain's last step, chain_steps = 4
    assert dae.sample(2, generator=torch.Generator().manual_seed(0), steps=1).shape == (2, 1, 28, 28)
    with pytest.raises(ConfigError, match=r"dae: steps=0 chain steps; give a whole number >= 1"):
        dae.sample(2, steps=0)


def test_dae_chain_step_is_corrupt_then_draw_from_the_reconstruction(dae):
    """Bengio et al. 2013: X~ ~ C(X~ | X), then X ~ P(X | X~), computed here step by step from the same draws."""
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    state, probs = dae.chain_step(x, torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(2)
    noisy = corrupt(x, "salt-and-pepper", 0.3, g)
    expected = torch.sigmoid(dae.decoder(dae.encoder(noisy)))
    assert torch.allclose(probs, expected, atol=1e-6)
    assert torch.equal(state, (torch.rand(x.shape, generator=g) < expected).float())


# ---------------------------------------------------------------------------- the demo end to end


@pytest.fixture(scope="module")
def demo(tmp_path_factory, tiny, one_thread):
    """The demo at test size: every family, 3 training steps each, 64 samples, on 256 / 64 digits."""
    os.environ.setdefault("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    out = tmp_path_factory.mktemp("demo")
    index = run_demo(out, data=tiny, budget=30, device="cpu", scale="tiny", progress=False)
    return out, index


@pytest.mark.slow
def test_demo_trains_evaluates_and_reports_every_family(demo):
    out, index = demo
    page_text = index.read_text()
    page = parse(index)
    assert not re.search(r"https?://", page_text), "the page must not load or link anything off the machine"
    for name in registry.MODELS:
        assert f'<h2 id="{name}">' in page_text, f"no section for {name}"
        assert f'href="#{name}"' in page_text, f"no taxonomy leaf linking to {name}"
        metrics = json.loads((out / name / "metrics.json").read_text())
        assert 0 <= metrics["confident_share"]["value"] <= 1 and metrics["confident_share"]["n"] == 64
        assert metrics["class_entropy_bits"]["value"] <= 3.3220
        assert any(src.startswith(f"formulas/{name}-") for src in page.imgs), f"no formula for {name}"
    for src in page.imgs:
        assert (index.parent / src).stat().st_size > 0, src
    # The snippets are the installed source of the functions that compute each objective.
    snippets = dict(re.findall(r'<pre class="snippet" data-source="([^"]+)">(.*?)</pre>', page_text, re.S))
    assert set(snippets) == {spec for r in RECIPES.values() for spec in r.code}
    for spec, shown in snippets.items():
        assert html.unescape(shown) == objective_source(spec)
    assert "def elbo_terms(self, x" in html.unescape(snippets["genzoo.models.vae:VAE.elbo_terms"])
    # Teaching items: the VAE's KL per dimension, the RBM's chain and AIS spread, the DAE's chain.
    assert "runs/vae/kl_per_dimension.png" in page.imgs and "runs/rbm/gibbs_chain.png" in page.imgs
    assert "runs/dae/markov_chain.png" in page.imgs
    assert json.loads((out / "rbm" / "metrics.json").read_text())["log_z"]["se"] >= 0
    assert 'class="coverage"' in page_text and "log2 10 = 3.32" in page_text
    assert "real training digits (floor)" in page_text
    # each section's note on recognisable digits follows its measured share, with the model's full recipe
    sections = dict(re.findall(r'<h2 id="([a-z]+)">(.*?)(?=<h2 id=|</body>)', page_text, re.S))
    for name in registry.MODELS:
        metrics = json.loads((out / name / "metrics.json").read_text())
        if registry.get(name).can_edit:  # an editor is read by its edits of test digits, one per kind
            assert metrics["edit_psnr"]["n"] == 23 and metrics["settings"]["n_edits"] == 23
            short = metrics["edit_label_agreement"]["value"] < RECOGNISABLE_SHARE
            assert ("Not recognisable edits yet" in sections[name]) == short, name
            assert "Not recognisable digits yet" not in sections[name]
            continue
        assert "edit_psnr" not in metrics
        short = metrics["confident_share"]["value"] < RECOGNISABLE_SHARE
        collapsed = metrics["class_entropy_bits"]["value"] < COLLAPSED_BITS
        assert ("Not recognisable digits yet" in sections[name]) == (short or collapsed), name
        assert html.escape(RECIPES[name].full_recipe) in sections[name], name
    # the latent editor's first stage starts from the demo's ddpm run (trained before it), then is fine-tuned
    sessions = json.loads((out / "demo.json").read_text())
    assert sessions["instruct"][0]["what"] == "new run, its first stage from the ddpm run's, fine-tuned for 2 steps"
    hparams = json.loads((out / "instruct" / "config.json").read_text())["hparams"]
    assert hparams["first_stage_from"] == str((out / "ddpm").resolve()) and hparams["space"] == "latent"
    # `genzoo sample RUN --chain` on the DAE run; a run of another family is refused.
    chain = commands.sample(out / "dae", 3, chain=True, seed=1, out=out / "chain.png")
    assert chain.stat().st_size > 0
    with pytest.raises(CapabilityError, match=r"vae: --chain alternates corruption and denoising; it needs a dae run"):
        commands.sample(out / "vae", 3, chain=True)


@pytest.mark.slow
def test_demo_again_continues_each_run(demo, tiny, one_thread):
    out, _ = demo
    before = json.loads((out / "vae" / "metrics.json").read_text())["train_seconds"]
    run_demo(out, data=tiny, budget=10, models=["vae", "gmm"], device="cpu", scale="tiny", progress=False)
    sessions = json.loads((out / "demo.json").read_text())
    assert [s["what"].split(" (")[0] for s in sessions["vae"]] == ["new run", "continued from step 3"]
    assert sessions["gmm"][-1]["what"].startswith("already fitted")
    config = json.loads((out / "vae" / "config.json").read_text())
    assert config["train"]["steps"] == 6  # finished at 3 steps: twice as long
    after = json.loads((out / "vae" / "metrics.json").read_text())["train_seconds"]
    assert after > before
    page = (out / "report" / "index.html").read_text()
    assert "over 2 demo runs" in page
    # the continued model's section has one row of sample scores per demo run, from demo.json
    history = re.findall(r'<table class="history">(.*?)</table>', page, re.S)
    assert len(history) == 1  # vae, the one model run twice
    rows = re.findall(r"<tr><td class=\"name\">\d+ \([^)]*\)</td>(.*?)</tr>", history[0])
    shown = [float(re.findall(r"<td>([^<]*)</td>", row)[2]) for row in rows]
    assert shown == [pytest.approx(s["confident_share"], abs=1e-3) for s in sessions["vae"]]


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (Debian: apt-get install chromium); "
                                             ".ci/run installs it so this test runs in CI")
@pytest.mark.slow
def test_demo_report_in_headless_chromium(demo, tmp_path):
    _, index = demo
    result, screenshot = chromium_check(index, tmp_path)
    assert result["broken"] == [] and result["images"] == len(parse(index).imgs)
    # every formula drawn (another test may have rewritten the page for fewer models: count the page's own)
    assert result["formulas"] == index.read_text().count('class="formula"') >= 1
    shots = Path(os.environ.get("GENZOO_SCREENSHOT_DIR", tmp_path))
    for name, size in (("demo-report.png", "1200,2400"), ("demo-report-400px.png", "400,2400")):
        screenshot(shots / name, size)


@pytest.mark.usefixtures("shipped")
def test_the_shipped_phase_alone_and_training_alone(tiny, tmp_path, capsys):
    """phases="shipped": the tiny zoo's pictures and figures in the report, its first picture the zoo, nothing
    trained, no training budget announced; phases="scratch": nothing drawn from the shipped models."""
    out = tmp_path / "shipped-only"
    index = run_demo(out, data=tiny, budget=30, models=["ae", "cgan"], device="cpu", scale="tiny", progress=True,
                     phases="shipped")
    said = capsys.readouterr().err
    assert "genzoo demo: the shipped models, drawn on" in said and "s in all" not in said
    page = index.read_text()
    first = page.index("<img")
    assert page[first:first + 40].startswith('<img src="shipped/zoo.png"')
    for name in ("ae", "cgan"):
        assert f'<h3 id="shipped-{name}">' in page and not (out / name / runs.CONFIG).exists()
    assert "not trained from scratch in this demo | shipped, 1.50 CPU-hours" in page
    assert "640 samples against 1,000 test digits" in page  # each figure with what it rests on
    # the shipped models' data named apart from the demo's own (here the small embedded set)
    assert "Shipped models: trained and scored on mnist (60,000 train / 10,000 test" in page
    assert f"Pictures drawn here from test digits: {html.escape(tiny.describe())}" in page
    assert (index.parent / "shipped" / "ae" / "samples.png").is_file()
    out = tmp_path / "scratch-only"
    run_demo(out, data=tiny, budget=10, models=["ae"], device="cpu", scale="tiny", progress=False, phases="scratch")
    assert (out / "ae" / runs.WEIGHTS).exists() and not (out / "shipped").exists()
    with pytest.raises(ConfigError, match=r"phases='all': must be one of both, shipped, scratch"):
        run_demo(tmp_path / "x", data=tiny, budget=10, phases="all", progress=False)


def test_the_two_halves_from_the_command_line(monkeypatch, capsys):
    from genzoo import cli
    from genzoo.showcase import demo

    seen = []
    monkeypatch.setattr(demo, "run_demo", lambda **kwargs: seen.append(kwargs["phases"]) or 0)
    for flags, phases in (([], "both"), (["--shipped-only"], "shipped"), (["--from-scratch-only"], "scratch")):
        cli.main(["demo", *flags])
        assert seen.pop() == phases
    with pytest.raises(SystemExit):
        cli.main(["demo", "--shipped-only", "--from-scratch-only"])
    assert "not allowed with argument" in capsys.readouterr().err
