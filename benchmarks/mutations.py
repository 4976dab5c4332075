"""Plant faults in genzoo one at a time and report which the test suite catches.

    python benchmarks/mutations.py                 # every mutation; a Markdown table on stdout
    python benchmarks/mutations.py --only vae-kl-sign,gan-wgan-critic-sign
    python benchmarks/mutations.py --list          # the mutations, without running anything
    python benchmarks/mutations.py --check         # only check that every old text is still found

Each mutation is (file under src/genzoo, exact old text, new text, test files). The source tree is
copied to a temporary folder once; for each mutation the one file is rewritten there, the mutation's
test files run with PYTHONPATH pointing at the copy (`pytest -x`: the first failure is enough; the
reference tests first, the family's other tests only if those pass), and the file is restored. The
working tree is never touched, so a crash or Ctrl-C cannot leave a fault behind.

An old text must occur exactly once in its file: if the code has moved or changed so that it does
not, the script stops with the mutation's name before running anything (update the mutation).
Before the mutations, the reference test files run on the unmutated copy and must pass (with
--baseline-all, the family test files too; the suite itself checks those).

Exit status: 0 when every mutation is caught, 1 when one survives, 2 when an old text is not found
(or found more than once) or the unmutated suite fails.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The test files each family's faults should be caught by: the reference tests first (fast, and the
# ones written to catch them), then the family's own tests.
TESTS = {
    "pixelcnn": ["tests/test_reference_pixel.py", "tests/test_pixelcnn.py"],
    "pixelrnn": ["tests/test_reference_pixel.py", "tests/test_pixelrnn.py"],
    "gan": ["tests/test_reference_gan.py", "tests/test_gan.py"],
    "rbm": ["tests/test_reference_rbm.py", "tests/test_rbm.py"],
    "vae": ["tests/test_reference_vae.py", "tests/test_vae.py"],
    "evaluate": ["tests/test_reference_evaluate.py", "tests/test_evaluate.py"],
    "metrics": ["tests/test_reference_evaluate.py", "tests/test_metrics.py"],
    "ddpm": ["tests/test_ddpm.py"],
    "instruct": ["tests/test_instruct.py"],
    "edits": ["tests/test_edits.py"],
    "text": ["tests/test_text.py"],
    "dae": ["tests/test_dae.py", "tests/test_demo.py"],
    "ae": ["tests/test_ae.py"],
    "trainer": ["tests/test_trainer.py"],
    "mixture": ["tests/test_mixture.py"],
    "bayes": ["tests/test_bayes.py"],
    "semantic": ["tests/test_instruct_cli.py"],
    "diffusion": ["tests/test_reference_diffusion.py", "tests/test_ddpm.py"],
    "instruct-drops": ["tests/test_reference_diffusion.py", "tests/test_instruct.py"],
    "edits-ref": ["tests/test_reference_edits.py", "tests/test_edits.py"],
    "mixture-ref": ["tests/test_reference_mixture.py", "tests/test_mixture.py"],
    "metrics-ref": ["tests/test_reference_metrics.py", "tests/test_metrics.py"],
    "trainer-ref": ["tests/test_reference_trainer.py", "tests/test_trainer.py"],
    "serve": ["tests/test_reference_serve.py", "tests/test_serve.py"],
    "shipped": ["tests/test_demo_shipped.py"],
    "pretrained": ["tests/test_pretrained.py"],
}


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str  # under src/genzoo
    old: str  # must occur exactly once in the file
    new: str
    tests: str  # a key of TESTS
    what: str


MUTATIONS = [
    # PixelCNN
    Mutation("pixelcnn-residual-doubled", "models/pixelcnn.py", "h = block(h, cond)", "h = h + block(h, cond)",
             "pixelcnn", "the model adds the block's input again (pytorch-generative's doubled skip)"),
    Mutation("pixelcnn-mask-a-in-3x3", "models/pixelcnn.py", '(kernel, kernel), "B")', '(kernel, kernel), "A")',
             "pixelcnn", "mask A instead of B in the residual blocks' kxk convolutions"),
    Mutation("pixelcnn-class-bias-dropped", "models/pixelcnn.py", "h = self.conv_in(x) + conds[0]",
             "h = self.conv_in(x)", "pixelcnn", "plain PixelCNN: no class bias on the input convolution"),
    Mutation("gated-horizontal-residual-removed", "models/pixelcnn.py", "h_new if self.first else h + h_new",
             "h_new", "pixelcnn", "gated PixelCNN: the horizontal stack's residual removed"),
    Mutation("gated-vertical-class-bias-dropped", "models/pixelcnn.py", "return gate(v_pre + cond_v)",
             "return gate(v_pre)", "pixelcnn", "gated PixelCNN: the vertical stack's class bias dropped"),
    # PixelRNN
    Mutation("diagonal-residual-removed", "models/pixelrnn.py", "return x + self.out(left_to_right + right_to_left)",
             "return self.out(left_to_right + right_to_left)", "pixelrnn", "Diagonal BiLSTM: its residual removed"),
    Mutation("row-lstm-residual-removed", "models/pixelrnn.py", "return x + self.out(torch.stack(rows, dim=2))",
             "return self.out(torch.stack(rows, dim=2))", "pixelrnn", "Row LSTM: its residual removed"),
    Mutation("lstm-gates-swapped", "models/pixelrnn.py",
             "c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)",
             "c = torch.sigmoid(i) * c + torch.sigmoid(f) * torch.tanh(g)", "pixelrnn",
             "LSTM cell: input and forget gates swapped"),
    Mutation("row-lstm-recurrence-dropped", "models/pixelrnn.py", "lstm_update(gates_in + self.state_to_state(h), c)",
             "lstm_update(gates_in, c)", "pixelrnn", "Row LSTM: the state-to-state convolution dropped"),
    # GAN losses
    Mutation("gan-wgan-critic-sign", "models/gan.py", "return fake.mean() - real.mean()",
             "return real.mean() - fake.mean()", "gan", "WGAN critic loss sign flipped"),
    Mutation("gan-hinge-wgan-generator-sign", "models/gan.py", "return -fake.mean()", "return fake.mean()", "gan",
             "hinge / WGAN generator loss sign flipped"),
    Mutation("gan-hinge-critic-margins", "models/gan.py", "F.relu(1 - real).mean() + F.relu(1 + fake).mean()",
             "F.relu(1 + real).mean() + F.relu(1 - fake).mean()", "gan", "hinge discriminator margins swapped"),
    Mutation("gan-nonsaturating-generator-sign", "models/gan.py", "return F.softplus(-fake).mean()",
             "return F.softplus(fake).mean()", "gan", "non-saturating generator minimises log D(G(z))"),
    Mutation("gan-nonsaturating-fake-term", "models/gan.py", "real_term.mean() + F.softplus(fake).mean()",
             "real_term.mean() + F.softplus(-fake).mean()", "gan", "discriminator told fakes are real"),
    Mutation("gan-gradient-penalty-no-minus-one", "models/gan.py", "((grad.flatten(1).norm(2, dim=1) - 1) ** 2)",
             "((grad.flatten(1).norm(2, dim=1)) ** 2)", "gan",
             "WGAN-GP penalises ||grad||^2 instead of (||grad|| - 1)^2"),
    # RBM
    Mutation("rbm-visible-bias-sign", "models/rbm.py", "self.b.grad = -(v0.mean(0) - vk.mean(0))",
             "self.b.grad = (v0.mean(0) - vk.mean(0))", "rbm", "sign of the visible-bias CD gradient flipped"),
    Mutation("rbm-hidden-bias-sign", "models/rbm.py", "self.c.grad = -(ph0.mean(0) - phk.mean(0))",
             "self.c.grad = -(phk.mean(0) - ph0.mean(0))", "rbm", "sign of the hidden-bias CD gradient flipped"),
    Mutation("rbm-weight-negative-phase", "models/rbm.py", "vk.T @ phk / len(vk)", "vk.T @ ph0 / len(vk)", "rbm",
             "negative statistics use the data's hidden probabilities"),
    # VAE
    Mutation("vae-kl-sign", "models/vae.py", "logvar.exp() - 1 - logvar)", "logvar.exp() - 1 + logvar)", "vae",
             "KL: sign of the log-variance term flipped"),
    Mutation("vae-reconstruction-sign", "models/vae.py", 'recon, kl = -terms["log_px_z"].mean()',
             'recon, kl = terms["log_px_z"].mean()', "vae", "loss adds +log p(x|z) instead of -log p(x|z)"),
    Mutation("vae-iwae-no-log-k", "models/vae.py", "torch.logsumexp(torch.cat(chunks), dim=0) - math.log(k)",
             "torch.logsumexp(torch.cat(chunks), dim=0)", "vae", "IWAE: the 1/K of the average dropped"),
    Mutation("vae-iwae-proposal-sign", "models/vae.py", "- gaussian_log_density(z, mu, logvar))",
             "+ gaussian_log_density(z, mu, logvar))", "vae", "IWAE weight multiplies by q(z|x) instead of dividing"),
    # (VAE.log_prob and sample_cached are decorated with torch.no_grad: mutmut 3 reaches them only with --undecorate)
    Mutation("vae-iwae-last-chunk-whole", "models/vae.py", "m = min(self.config.iwae_chunk, k - start)",
             "m = self.config.iwae_chunk", "vae", "IWAE estimate: the last chunk drawn whole, more than k samples"),
    # diffusion
    Mutation("ddpm-noising-sign", "models/diffusion.py", "* x0 + _as(self.sqrt_one_minus_alpha_bar, t, x0) * noise",
             "* x0 - _as(self.sqrt_one_minus_alpha_bar, t, x0) * noise", "ddpm",
             "q(x_t given x_0): the noise subtracted instead of added"),
    Mutation("ddpm-posterior-coefficients-swapped", "models/diffusion.py",
             "mean = _as(self.coef_x0, t, xt) * x0 + _as(self.coef_xt, t, xt) * xt",
             "mean = _as(self.coef_xt, t, xt) * x0 + _as(self.coef_x0, t, xt) * xt", "ddpm",
             "posterior mean of x_{t-1} given x_t, x_0: the two coefficients swapped"),
    Mutation("ddpm-loss-target", "models/ddpm.py", 'target = noise if self.config.prediction == "eps"',
             'target = x0 if self.config.prediction == "eps"', "ddpm", "eps-prediction loss regresses x_0, not eps"),
    Mutation("ddpm-guidance-base", "models/ddpm.py", "return uncond + guidance * (cond - uncond)",
             "return cond + guidance * (cond - uncond)", "ddpm", "classifier-free guidance extrapolates from cond"),
    Mutation("ddim-sigma-dropped", "models/diffusion.py", "math.sqrt(max(1 - abar_prev - sigma**2, 0.0)) * eps",
             "math.sqrt(max(1 - abar_prev, 0.0)) * eps", "ddpm", "DDIM step: sigma^2 left out of the eps term"),
    # the editor, its triples and its text encoder
    Mutation("instruct-guidance-scales-swapped", "models/instruct/editor.py",
             "e_00 + image_guidance * (e_i0 - e_00) + text_guidance * (e_it - e_i0)",
             "e_00 + text_guidance * (e_i0 - e_00) + image_guidance * (e_it - e_i0)", "instruct",
             "dual guidance: s_I and s_T swapped between the image and the text term"),
    Mutation("instruct-unconditional-keeps-the-image", "models/instruct/editor.py",
             "images = torch.cat([image, image, torch.zeros_like(image)])", "images = torch.cat([image, image, image])",
             "instruct", "dual guidance: eps(0, 0) still sees the input image"),
    Mutation("instruct-image-channels-not-zeroed", "models/instruct/editor.py",
             "self.unet.stem.weight[:, channels:].zero_()", "self.unet.stem.weight[:, channels:].mul_(1.0)",
             "instruct", "a new editor's image channels keep their random first-layer weights"),
    Mutation("instruct-drop-both-overlaps-image", "models/instruct/editor.py",
             "both = (u >= cfg.p_drop_text + cfg.p_drop_image) &", "both = (u >= cfg.p_drop_text) &", "instruct",
             "training drops: 'both' overlaps 'image only' (the drop rates are off)"),
    Mutation("edits-rotation-clockwise", "models/instruct/edits.py", "torch.rot90(x, quarter_turns, dims=(-2, -1))",
             "torch.rot90(x, quarter_turns, dims=(-1, -2))", "edits",
             "'rotate it 90 degrees to the left' turns the digit clockwise"),
    Mutation("edits-flips-swapped", "models/instruct/edits.py", 'dims=(-1,) if axis == "horizontal" else (-2,)',
             'dims=(-2,) if axis == "horizontal" else (-1,)', "edits", "horizontal and vertical flips swapped"),
    Mutation("edits-shift-left-goes-right", "models/instruct/edits.py", '"left": (0, -1)', '"left": (0, 1)', "edits",
             "'move it left' moves the digit right"),
    Mutation("edits-thin-thickens", "models/instruct/edits.py",
             "return neighbours.amin(0)", "return neighbours.amax(0)", "edits",
             "thinning takes the neighbourhood's maximum (a plus-shaped dilation)"),
    Mutation("text-unknown-word-embedded", "models/instruct/text.py",
             "h = self.words(ids) * (ids != 1).unsqueeze(-1) + gram_mean",
             "h = self.words(ids) + gram_mean", "text",
             "an unknown word gets the <unk> embedding on top of its trigrams"),
    Mutation("text-padding-pooled", "models/instruct/text.py",
             "pooled = (h * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)",
             "pooled = h.mean(1)", "text", "the encoder's mean over tokens counts the padding"),
    Mutation("text-case-kept", "models/instruct/text.py",
             "return WORD.findall(text.lower())", "return WORD.findall(text)", "text",
             "instructions are not lower-cased: 'Mirror it' loses its first word"),
    Mutation("edits-scale-inverted", "models/instruct/edits.py", "cos, sin = math.cos(a) / scale, math.sin(a) / scale",
             "cos, sin = math.cos(a) * scale, math.sin(a) * scale", "edits",
             "'make it bigger' shrinks the digit (the zoom applied the wrong way round)"),
    Mutation("edits-hide-pixels-rate", "models/instruct/edits.py",
             "(_rand(x.shape, generator, x.device) >= fraction, x, value)",
             "(_rand(x.shape, generator, x.device) < fraction, x, value)", "edits",
             "'fill in the missing part': 40% of the pixels hidden, not 60%"),
    Mutation("semantic-pairs-filter-one-side", "models/instruct/pairs.py",
             "keep = (p_in[torch.arange(n), sources] >= threshold) & (p_out[torch.arange(n), targets] >= threshold)",
             "keep = p_out[torch.arange(n), targets] >= threshold", "semantic",
             "semantic pairs kept when the evaluator is sure of the output alone (the paper's filter checks both)"),
    # the pixel models' samplers
    Mutation("pixel-sampler-draws-one-minus-p", "models/autoregressive.py",
             "(u[:, 0, i, j] < torch.sigmoid(logit.float()))", "(u[:, 0, i, j] > torch.sigmoid(logit.float()))",
             "pixelcnn", "a pixel drawn as 1 with probability 1 - p"),
    Mutation("completion-ignores-the-visible-pixels", "models/autoregressive.py",
             "pixel = torch.where(visible[:, 0, i, j], x_known[:, 0, i, j], pixel)", "pixel = pixel", "pixelcnn",
             "completions redraw the pixels they were given"),
    Mutation("pixel-fast-sampler-runs-the-whole-network", "models/autoregressive.py",
             "return _raster_sample(model, u, y, x_known, visible, cached=True)",
             "return _raster_sample(model, u, y, x_known, visible, cached=False)", "pixelcnn",
             "the fast sampler runs the whole network once per pixel (the same images, H * W times the work)"),
    Mutation("pixel-fast-sampler-drops-the-labels", "models/autoregressive.py",
             "return _raster_sample(model, u, y, x_known, visible, cached=True)",
             "return _raster_sample(model, u, None, x_known, visible, cached=True)", "pixelcnn",
             "the fast sampler leaves out the labels it was given"),
    Mutation("rbm-gibbs-mean-field-hidden", "models/rbm.py",
             "h = torch.bernoulli(self.hidden_probs(v), generator=generator)", "h = self.hidden_probs(v)", "rbm",
             "Gibbs sampling: the hidden units' probabilities passed on instead of a draw from them"),
    # the denoising autoencoder and its chain; the autoencoder's code Gaussian
    Mutation("dae-trains-on-clean-input", "models/dae.py", "z = self.encode(noisy)", "z = self.encode(x)", "dae",
             "the denoiser is trained on clean digits (a plain autoencoder)"),
    Mutation("dae-chain-skips-corruption", "models/dae.py",
             "noisy = corrupt(x, self.config.noise, self.config.noise_level, generator)  # X~_t",
             "noisy = x  # X~_t", "dae", "the chain denoises its state without corrupting it first"),
    Mutation("dae-chain-keeps-probabilities", "models/dae.py",
             "return (self.rand(*probs.shape, generator=generator) < probs).to(probs.dtype), probs",
             "return probs, probs", "dae", "the chain's next state is the pixel probabilities, not a draw from them"),
    Mutation("ae-code-cholesky-untransposed", "models/ae.py", "generator=generator) @ chol.T",
             "generator=generator) @ chol", "ae",
             "prior samples' codes drawn with L^T, not L: the wrong covariance (L^T L, not L L^T)"),
    # the trainer, the diffusion models' moving average, the mixtures
    Mutation("trainer-gradient-clip-skipped", "training/loop.py", "        if self.cfg.grad_clip:\n",
             "        if False:\n", "trainer", "grad_clip is accepted and never applied"),
    Mutation("ema-decay-inverted", "models/diffusion.py",
             "list(net.parameters()), 1 - decay)", "list(net.parameters()), decay)", "ddpm",
             "the weights' moving average keeps 1 - decay of itself, not decay"),
    Mutation("mixture-responsibilities-unnormalised", "mixture/em.py",
             "return log_prob_norm, weighted - log_prob_norm[:, None]", "return log_prob_norm, weighted", "mixture",
             "E-step: responsibilities not divided by p(x_n)"),
    Mutation("bayes-class-prior-dropped", "models/bayes.py",
             "for density in self.classes], 1) + self.log_prior", "for density in self.classes], 1)", "bayes",
             "Bayes classifier: p(x, y) without the class prior p(y)"),
    # evaluation and metrics
    Mutation("precision-recall-swapped", "metrics.py",
             "return float(fake_in_real.float().mean()), float(real_in_fake.float().mean())",
             "return float(real_in_fake.float().mean()), float(fake_in_real.float().mean())", "metrics",
             "improved precision and recall returned in each other's place"),
    Mutation("class-entropy-in-nats", "evaluation/scoring.py",
             '"class_entropy_bits": coverage_entropy(shares) / math.log(2),',
             '"class_entropy_bits": coverage_entropy(shares),', "metrics",
             "the class entropy reported in bits is in nats (log2 10 would read 2.30)"),
    Mutation("ais-base-partition-hidden-units", "models/rbm.py", "+ n_hid * math.log(2))", ")", "rbm",
             "AIS: the base-rate RBM's log Z leaves out the hidden units' log 2 each"),
    Mutation("ais-mean-weight-not-averaged", "models/rbm.py", "torch.logsumexp(log_w, 0) - math.log(n_runs))",
             "torch.logsumexp(log_w, 0))", "rbm", "AIS: the importance weights summed, not averaged"),
    Mutation("knn-radius-counts-the-point-itself", "metrics.py", "largest=False).values[:, k])",
             "largest=False).values[:, k - 1])", "metrics",
             "k-NN radius: the point itself counted as its first neighbour"),
    Mutation("bits-per-dim-binary-no-ln2", "metrics.py", "return nll_nats / (n_dims * math.log(2))",
             "return nll_nats / n_dims", "evaluate", "binary bits/dim divided by 784 only (ln 2 dropped)"),
    Mutation("bits-per-dim-dequantized-sign", "metrics.py", "(nll_nats / n_dims + math.log(256))",
             "(nll_nats / n_dims - math.log(256))", "evaluate", "dequantized bits/dim: the 8-bit offset's sign"),
    Mutation("marginal-nll-prior-dropped", "evaluation/evaluate.py", "log_prior[:, None] + log_p_given", "log_p_given",
             "evaluate", "conditional model's marginal NLL sums p(x|y) without the prior p(y)"),
    Mutation("conditional-nll-default-labels", "models/autoregressive.py", "if self.conditional and y is None:",
             "if self.conditional and y is None and False:", "evaluate",
             "a conditional PixelCNN's log_prob fills in default labels again (defect 1)"),
    Mutation("frechet-trace-factor", "metrics.py", "- 2 * tr_sqrt", "- tr_sqrt", "metrics",
             "Fréchet distance: the 2 of -2 tr((A B)^1/2) dropped"),
    Mutation("psnr-20-log10", "metrics.py", "return -10 * torch.log10(mse)", "return -20 * torch.log10(mse)",
             "metrics", "PSNR with 20 log10 of the MSE (an amplitude formula on a power)"),
    # conversions, steps and reports that a falling loss or an end-to-end run never exercises
    Mutation("ddpm-v-to-eps-sign", "models/diffusion.py", "return s * xt + a * output, a * xt - s * output",
             "return s * xt - a * output, a * xt - s * output", "diffusion",
             "v-prediction read back as eps with the sign of the v term flipped (sampling only)"),
    Mutation("ddpm-eps-from-x0-coefficients-swapped", "models/diffusion.py",
             "(xt - _as(self.sqrt_alpha_bar, t, xt) * x0) / _as(self.sqrt_one_minus_alpha_bar, t, xt)",
             "(xt - _as(self.sqrt_one_minus_alpha_bar, t, xt) * x0) / _as(self.sqrt_alpha_bar, t, xt)", "diffusion",
             "eps from the clipped x_0 with sqrt(abar) and sqrt(1 - abar) swapped (sampling only)"),
    Mutation("ddim-previous-abar-of-the-next-index", "models/diffusion.py",
             "abar_prev = float(s.alpha_bar[t_prev]) if t_prev >= 0 else 1.0",
             "abar_prev = float(s.alpha_bar_prev[t])", "diffusion",
             "DDIM with fewer steps than timesteps: abar of t - 1, not of the next timestep sampled"),
    Mutation("instruct-text-drop-rate-reads-image-rate", "models/instruct/editor.py", "text_only = u < cfg.p_drop_text",
             "text_only = u < cfg.p_drop_image", "instruct-drops",
             "training drops: the text alone dropped at p_drop_image (equal default rates hide it)"),
    Mutation("instruct-text-dropped-where-the-image-is", "models/instruct/editor.py",
             "text = torch.where(drop_text[:, None]", "text = torch.where(drop_image[:, None]", "instruct-drops",
             "training drops: the instruction replaced where the image is dropped"),
    Mutation("edits-combo-steps-reversed", "models/instruct/edits.py",
             'STEPS[f["steps"][1]][0](STEPS[f["steps"][0]][0](x[i:i + 1]))',
             'STEPS[f["steps"][0]][0](STEPS[f["steps"][1]][0](x[i:i + 1]))', "edits-ref",
             "'A and then B' applies B first"),
    Mutation("mixture-converged-of-the-last-start", "mixture/estimator.py",
             "best_iter, self.converged_ = n_iter, converged",
             "best_iter = n_iter\n            self.converged_ = converged", "mixture-ref",
             "a multi-start fit reports the last start's converged_, not the kept one's"),
    Mutation("mixture-warm-start-from-minus-infinity", "mixture/estimator.py",
             'start = getattr(self, "lower_bound_", -math.inf) if continuing else -math.inf', "start = -math.inf",
             "mixture", "warm_start: each fit's first change measured against -inf (converged_ never set)"),
    Mutation("metrics-precision-recall-sides-swapped", "evaluation/scoring.py",
             "precision_recall(real_features, fake_feats, k=k)", "precision_recall(fake_feats, real_features, k=k)",
             "metrics-ref", "sample_quality passes the fake features as the real ones"),
    Mutation("metrics-confident-share-of-real-digits", "evaluation/scoring.py",
             "confident_share(evaluator.class_probabilities(fake_feats))",
             "confident_share(evaluator.class_probabilities(real_features))", "metrics-ref",
             "the confident share computed on the real digits, not the samples"),
    Mutation("trainer-ema-before-the-step", "training/loop.py",
             "        opt.step()\n        self.model.after_optimizer_step(self.step)",
             "        self.model.after_optimizer_step(self.step)\n        opt.step()", "trainer-ref",
             "the moving average taken before the optimizer step"),
    Mutation("trainer-rate-of-the-step-done", "training/loop.py", "self.rates.set(self.step)  # the rate of",
             "self.rates.set(self.step - 1)  # the rate of", "trainer-ref",
             "each step after the first runs at the previous step's learning rate"),
    Mutation("serve-absolute-picture-path", "serve/inputs.py", "if not relative or Path(relative).is_absolute() or",
             "if not relative or", "serve", "an absolute path into the run folder is served"),
    Mutation("serve-symlinked-picture", "serve/inputs.py", " or path.is_symlink() or not real.is_file()",
             " or not real.is_file()", "serve", "a symlinked picture inside the run is served"),
    Mutation("serve-report-reads-symlinked-metrics", "serve/app.py",
             "return not path.is_symlink() and path.resolve().is_relative_to(folder.resolve())", "return True",
             "serve", "the report reads metrics.json through a symlink out of RUN_ROOT"),
    Mutation("zoo-picture-seed-ignored", "showcase/shipped.py",
             'samples_of(runs.load(pretrained.PREFIX + name, "cpu"), ZOO_COLUMNS, seed)',
             'samples_of(runs.load(pretrained.PREFIX + name, "cpu"), ZOO_COLUMNS, 0)', "shipped",
             "README's zoo picture drawn at a fixed seed, not the one asked for"),
    Mutation("zoo-picture-conditional-labels", "showcase/shipped.py",
             "labels = torch.arange(n) % N_CLASSES if model.conditional else None",
             "labels = torch.randint(N_CLASSES, (n,)) if model.conditional else None", "shipped",
             "conditional models in the zoo picture and the demo draw random digits, not 0-9 in turn"),
    Mutation("recipe-drift-model-settings-only", "recipes.py", 'for part in ("hparams", "train")',
             'for part in ("hparams",)', "pretrained",
             "a shipped stage trained for fewer steps than its recipe now asks passes for the recipe's run"),
]


# mutmut targets (docs/TESTING.md, section 2): per module, the files mutated, the tests run against each mutant
# (narrow: the tests that check that code against an independent computation; pytest's -k drops slow ones a
# fast test duplicates) and the functions mutated, as mutmut's name patterns.
@dataclass(frozen=True)
class MutmutTarget:
    files: tuple[str, ...]  # under src/genzoo
    tests: tuple[str, ...]  # pytest arguments selecting the tests
    functions: tuple[str, ...]  # mutmut name patterns
    # decorated methods ("Class.method", the class in one of the files) that mutmut 3 would skip: `--undecorate`
    # rewrites them in a private copy so that the decorator wraps them after their class (the same method)
    undecorate: tuple[str, ...] = ()


MUTMUT_TARGETS = {
    "metrics": MutmutTarget(
        ("metrics.py", "evaluation/scoring.py"),
        ("tests/test_reference_metrics.py", "tests/test_metrics.py", "-k",
         "not unlike_the_real and not precomputed_real and not model_sample_quality"),
        ("genzoo.evaluation.scoring.x_sample_quality*", *(f"genzoo.metrics.x_{f}*" for f in (
            "psnr", "precision_recall", "knn_radii", "frechet_distance", "gaussian_stats",
            "class_coverage", "coverage_entropy", "confident_share", "conditional_accuracy")))),
    "diffusion": MutmutTarget(
        ("models/diffusion.py", "models/ddpm.py"),
        ("tests/test_reference_diffusion.py", "tests/test_ddpm.py", "-k",
         "not learns and not resume and not evaluation and not semantic and not first_stage and not config_errors "
         "and not same_generator and not channels_last and not self_attention"),
        ("genzoo.models.diffusion.xǁNoiseScheduleǁ*", "genzoo.models.diffusion.xǁSamplerǁstep*",
         "genzoo.models.ddpm.xǁDDPMǁguided_output*", "genzoo.models.ddpm.xǁDDPMǁpredictor*",
         "genzoo.models.ddpm.xǁDDPMǁloss*")),
    "instruct": MutmutTarget(  # the editor's conditioning drops, training loss and two-scale guidance
        ("models/instruct/editor.py",),
        ("tests/test_instruct.py", "tests/test_reference_diffusion.py", "-k", "guidance or loss or drop or word_noise"),
        ("genzoo.models.instruct.editor.xǁInstructPix2Pixǁdrops*",
         "genzoo.models.instruct.editor.xǁInstructPix2Pixǁtriple_loss*",
         "genzoo.models.instruct.editor.xǁInstructPix2Pixǁguided_output*")),
    "edits": MutmutTarget(  # the edit kinds and the two composite makers (the instructions' words: test_edits)
        ("models/instruct/edits.py",), ("tests/test_reference_edits.py", "tests/test_edits.py"),
        tuple(f"genzoo.models.instruct.edits.x_{f}__*" for f in (
            "rotate90", "rotate", "scale", "_affine", "flip", "shift", "dilate", "erode", "thin", "invert",
            "downsample", "outline", "skeleton", "hide_box", "hide_half", "hide_pixels", "gaussian_noise",
            "salt_and_pepper", "_make_shift", "_make_combo"))),
    "serve": MutmutTarget(
        ("serve/inputs.py",), ("tests/test_reference_serve.py",),
        ("genzoo.serve.inputs.x_find_runs*", "genzoo.serve.inputs.x_run_picture*",
         "genzoo.serve.inputs.xǁCatalogǁruns*", "genzoo.serve.inputs.xǁCatalogǁfolder*")),
    "training": MutmutTarget(  # a step's order, the rate schedule, which examples a step sees, what a resume restores
        ("training/loop.py", "training/schedule.py", "training/batches.py", "training/checkpoint.py"),
        ("tests/test_reference_trainer.py", "tests/test_reference_training_parts.py", "tests/test_trainer.py", "-k",
         "reference_train or grad_clip or cosine_schedule or resuming_a_finished"),
        ("genzoo.training.loop.xǁLoopǁtrain_step*", "genzoo.training.schedule.x_*",
         "genzoo.training.schedule.xǁLearningRatesǁ*", "genzoo.training.batches.xǁBatchesǁ*",
         "genzoo.training.checkpoint.xǁCheckpointsǁsave*", "genzoo.training.checkpoint.xǁCheckpointsǁrestore*")),
    "vae": MutmutTarget(  # the test_vae tests of a trained model are left out: their fixture trains 150 steps
        ("models/vae.py",),
        ("tests/test_reference_vae.py", "tests/test_vae.py", "-k",
         "reference_vae or kl_warmup or generator_they_are_given"),
        ("genzoo.models.vae.xǁVAEǁloss*", "genzoo.models.vae.xǁVAEǁiwae_loss*",
         "genzoo.models.vae.xǁVAEǁlog_weights*", "genzoo.models.vae.xǁVAEǁlog_prob*",
         "genzoo.models.vae.x_gaussian_log_density*", "genzoo.models.vae.x_gaussian_kl*",
         "genzoo.models.vae.x_bernoulli_log_likelihood*", "genzoo.models.vae.xǁVAEǁencode*",
         "genzoo.models.vae.xǁVAEǁelbo*", "genzoo.models.vae.xǁVAEǁkl_weight*", "genzoo.models.vae.xǁVAEǁdecode_mean*",
         "genzoo.models.vae.xǁVAEǁsample_with_means*", "genzoo.models.vae.xǁVAEǁ_sample*",
         "genzoo.models.vae.xǁVAEǁreconstruct*"),
        undecorate=("VAE.log_prob", "VAE.elbo", "VAE.decode_mean", "VAE.sample_with_means", "VAE._sample",
                    "VAE.reconstruct")),
    "gan": MutmutTarget(  # the losses; the 1-D mixture that must be learnt trains for a while, so it is left out
        ("models/gan.py",),
        ("tests/test_reference_gan.py", "tests/test_gan.py", "-k",
         "reference_gan and not learns or nonsaturating_loss_matches or gradient_penalty"),
        ("genzoo.models.gan.x_discriminator_loss*", "genzoo.models.gan.x_generator_loss*",
         "genzoo.models.gan.xǁAdversarialModelǁd_losses*", "genzoo.models.gan.xǁAdversarialModelǁg_losses*")),
    "pixel": MutmutTarget(  # the pixel models' shared likelihood, loss and the raster loop of their samplers
        ("models/autoregressive.py",),
        ("tests/test_reference_pixel.py", "tests/test_pixelcnn.py", "-k",
         "pixelcnn and not samples_follow and not training_steps and not genzoo_complete"),
        # (sample_cached itself is decorated, which mutmut 3 leaves alone: the loop it runs is mutated)
        ("genzoo.models.autoregressive.xǁPixelModelǁlog_prob*", "genzoo.models.autoregressive.xǁPixelModelǁloss*",
         "genzoo.models.autoregressive.x__raster_sample*", "genzoo.models.autoregressive.x__draw*",
         "genzoo.models.autoregressive.x__start*")),
    "rbm": MutmutTarget(  # AIS against enumeration (1.5 minutes; AIS is replayed step by step instead) and CD's
        # 60 steps are left out
        ("models/rbm.py",),
        ("tests/test_reference_rbm.py", "tests/test_rbm.py", "-k", "not ais_log_z and not cd_lowers"),
        ("genzoo.models.rbm.x_free_energy*", "genzoo.models.rbm.x_ais_betas*", "genzoo.models.rbm.x_ais_log_partition*",
         "genzoo.models.rbm.x_exact_log_partition*", "genzoo.models.rbm.xǁRBMǁgibbs*",
         "genzoo.models.rbm.xǁRBMǁtrain_step*", "genzoo.models.rbm.xǁRBMǁlog_prob*",
         "genzoo.models.rbm.xǁRBMǁbase_bias*", "genzoo.models.rbm.xǁRBMǁestimate_log_z*",
         "genzoo.models.rbm.xǁRBMǁlog_z_uncertainty*", "genzoo.models.rbm.xǁRBMǁ_sample*",
         "genzoo.models.rbm.xǁRBMǁchain*"),
        undecorate=("RBM.train_step", "RBM.log_prob", "RBM.estimate_log_z", "RBM._sample", "RBM.chain")),
    "ae": MutmutTarget(  # the autoencoders' losses, the corruptions and the denoising chain's step
        ("models/ae.py", "models/dae.py"),
        ("tests/test_reference_ae.py", "tests/test_ae.py", "tests/test_dae.py"),
        ("genzoo.models.ae.x_reconstruction_error*", "genzoo.models.ae.xǁAutoencoderǁloss*",
         "genzoo.models.dae.x_corrupt*", "genzoo.models.dae.xǁDenoisingAutoencoderǁloss*",
         "genzoo.models.dae.xǁDenoisingAutoencoderǁchain_step*", "genzoo.models.ae.xǁAutoencoderǁ_track_codes*",
         "genzoo.models.ae.xǁAutoencoderǁ_sample*", "genzoo.models.dae.xǁDenoisingAutoencoderǁmarkov_chain*",
         "genzoo.models.dae.xǁDenoisingAutoencoderǁ_sample*"),
        undecorate=("DenoisingAutoencoder.chain_step", "Autoencoder._track_codes", "Autoencoder._sample",
                    "DenoisingAutoencoder.markov_chain", "DenoisingAutoencoder._sample")),
    "gmm": MutmutTarget(  # the mixture density in pixel space and its sampler (the EM fit: the mixture block)
        ("models/gmm.py",),
        ("tests/test_reference_gmm.py", "tests/test_gmm.py", "-k", "reference_gmm or pca_density"),
        ("genzoo.models.gmm.x_dequantize*", "genzoo.models.gmm.xǁMixtureDensityǁcomponent_log_prob*",
         "genzoo.models.gmm.xǁMixtureDensityǁlog_prob*", "genzoo.models.gmm.xǁMixtureDensityǁsample*",
         "genzoo.models.gmm.xǁGMMǁlog_prob*", "genzoo.models.gmm.xǁGMMǁ_sample*",
         "genzoo.models.gmm.xǁMixtureDensityǁfit*")),
    "bayes": MutmutTarget(  # the fit, Bayes' rule and the labelled sampler, on small data or Gaussians set by hand
        ("models/bayes.py",),
        ("tests/test_reference_bayes.py",),
        ("genzoo.models.bayes.xǁBayesClassifierǁlog_prob*", "genzoo.models.bayes.xǁBayesClassifierǁpredict_log_proba*",
         "genzoo.models.bayes.xǁBayesClassifierǁ_sample*", "genzoo.models.bayes.xǁBayesClassifierǁfit*",
         "genzoo.models.bayes.xǁBayesClassifierǁaccuracy*")),
    "pixelrnn": MutmutTarget(  # the LSTM cell, the skew and the fast sampler's per-pixel logits of both variants
        ("models/pixelrnn.py",),
        ("tests/test_reference_pixel.py", "tests/test_pixelrnn.py", "-k",
         "(pixelrnn or lstm or skew) and not training"),
        ("genzoo.models.pixelrnn.x_lstm_update*", "genzoo.models.pixelrnn.x_skew*", "genzoo.models.pixelrnn.x_unskew*",
         "genzoo.models.pixelrnn.xǁPixelRNNǁ_row_logit*", "genzoo.models.pixelrnn.xǁPixelRNNǁ_diagonal_logit*")),
    "em": MutmutTarget(  # the EM kernels: M-step, precision factor, log density, draws, responsibilities
        ("mixture/em.py",),
        ("tests/test_reference_mixture_em.py", "tests/test_mixture.py", "-k",
         "reference_mixture_em or e_step or m_step or sparse or responsibilities or samples_recover or singular"),
        tuple(f"genzoo.mixture.em.x_{f}__*" for f in (
            "estimate_gaussian_parameters", "compute_precision_cholesky", "estimate_log_gaussian_prob",
            "sample_gaussians", "log_responsibilities", "responsibilities"))),
    "mixture": MutmutTarget(
        ("mixture/estimator.py",),
        ("tests/test_reference_mixture.py", "tests/test_mixture.py", "-k",
         "multi_start or warm_start or n_init or convergence_warning or fitted_attributes or em_never or numpy_in "
         "or fit_from_same or bad_data"),
        ("genzoo.mixture.estimator.xǁGaussianMixtureǁ_fit*", "genzoo.mixture.estimator.xǁGaussianMixtureǁfit*")),
}


def mutmut_setup(name: str) -> str:
    """The [tool.mutmut] block to append to a private copy's pyproject.toml, and the command to run there."""
    target = MUTMUT_TARGETS[name]
    files = ", ".join(f'"src/genzoo/{f}"' for f in target.files)
    tests = ", ".join(f'"{t}"' for t in target.tests)
    patterns = " ".join(f'"{f}"' for f in target.functions)
    return (f"\n[tool.mutmut]\nsource_paths = [\"src/genzoo\"]\nonly_mutate = [{files}]\n"
            f"pytest_add_cli_args_test_selection = [{tests}]\n"
            'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q"]\nprocess_isolation = "forkserver"\n'
            "use_git_change_detection = false\n\n"
            + (f"# then, in the private copy: python benchmarks/mutations.py --undecorate {name}\n"
               if target.undecorate else "")
            + f"# then: OMP_NUM_THREADS=1 timeout 1500 nice -n 10 mutmut run --max-children 1 {patterns}\n")


def undecorate(name: str, root: Path = ROOT) -> list[str]:
    """In a private copy, move each of the target's decorated methods' decorator from its `@` line to a
    re-assignment after the class (`RBM.log_prob = torch.no_grad()(RBM.log_prob)`): the same method, which
    mutmut 3 (it leaves decorated functions alone) can now mutate. Returns the methods rewritten."""
    target = MUTMUT_TARGETS[name]
    done = []
    for qualname in target.undecorate:
        cls, method = qualname.split(".")
        homes = [f for f in target.files if f"\nclass {cls}(" in (root / "src" / "genzoo" / f).read_text()]
        if len(homes) != 1:
            raise SystemExit(f"--undecorate {name}: class {cls} found in {len(homes)} of {', '.join(target.files)}")
        path = root / "src" / "genzoo" / homes[0]
        text = path.read_text()
        pattern = re.compile(rf"^    @(\S.*)\n(    def {re.escape(method)}\()", re.MULTILINE)
        found = pattern.findall(text)
        if len(found) != 1:
            raise SystemExit(f"--undecorate {name}: a decorated `def {method}(` found {len(found)} times in "
                             f"src/genzoo/{homes[0]} (must be exactly once); update MUTMUT_TARGETS")
        text = pattern.sub(r"\2", text)
        text += f"\n{qualname} = {found[0][0]}({qualname})  # undecorated for mutmut (benchmarks/mutations.py)\n"
        path.write_text(text)
        done.append(qualname)
    return done


def is_private_copy(root: Path) -> bool:
    """True in a linked git worktree (`git worktree add`), whose git dir differs from the common one."""
    def ask(flag: str) -> Path:
        out = subprocess.run(["git", "rev-parse", "--path-format=absolute", flag], cwd=root, check=True,
                             capture_output=True, text=True).stdout.strip()
        return Path(out).resolve()
    return ask("--git-dir") != ask("--git-common-dir")


def check(mutations: list[Mutation], src: Path) -> list[str]:
    """Problems with the mutations' old texts in `src` (the genzoo package folder): not found, or ambiguous."""
    problems = []
    for m in mutations:
        path = src / m.file
        if not path.exists():
            problems.append(f"{m.name}: {path.relative_to(src.parents[1])} does not exist")
            continue
        count = path.read_text().count(m.old)
        if count != 1:
            problems.append(f"{m.name}: old text {m.old!r} found {count} times in src/genzoo/{m.file} "
                            "(must be exactly once); the code has changed: update the mutation")
    return problems


def run_tests(tests: list[str], pythonpath: Path, timeout: float) -> tuple[int, str, float]:
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-rf", "-p", "no:cacheprovider", *tests]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        return proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - start
    except subprocess.TimeoutExpired as err:
        out = (err.stdout or b"").decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
        return -1, out + f"\ntimed out after {timeout:.0f} s", time.perf_counter() - start


def first_failure(output: str) -> str:
    found = re.search(r"^(?:FAILED|ERROR) (\S+)", output, re.MULTILINE)
    return found.group(1) if found else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="comma-separated mutation names")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--check", action="store_true", help="only check that every old text is found once")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per test run")
    parser.add_argument("--mutmut", choices=sorted(MUTMUT_TARGETS),
                        help="print the mutmut configuration and command for one module (docs/TESTING.md) and exit")
    parser.add_argument("--undecorate", choices=sorted(n for n, t in MUTMUT_TARGETS.items() if t.undecorate),
                        help="in a private worktree only: rewrite a module's decorated methods for mutmut to reach")
    parser.add_argument("--baseline-all", action="store_true",
                        help="check that the family tests pass unmutated too, not only the reference tests")
    args = parser.parse_args(argv)

    if args.mutmut:
        print(mutmut_setup(args.mutmut), end="")
        return 0
    if args.undecorate:
        if not is_private_copy(ROOT):
            print(f"--undecorate rewrites src/: run it in a private worktree (git worktree add), not in {ROOT}",
                  file=sys.stderr)
            return 2
        print("undecorated: " + ", ".join(undecorate(args.undecorate)))
        return 0
    mutations = MUTATIONS
    if args.only:
        names = set(args.only.split(","))
        unknown = names - {m.name for m in MUTATIONS}
        if unknown:
            print(f"unknown mutation(s): {', '.join(sorted(unknown))}; see --list", file=sys.stderr)
            return 2
        mutations = [m for m in MUTATIONS if m.name in names]
    if args.list:
        for m in mutations:
            print(f"{m.name:36s} src/genzoo/{m.file:22s} {m.what}")
        return 0
    problems = check(mutations, ROOT / "src" / "genzoo")
    if problems:
        print("mutations that no longer apply:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    if args.check:
        print(f"all {len(mutations)} old texts found exactly once")
        return 0

    started = datetime.now(timezone.utc)
    with tempfile.TemporaryDirectory(prefix="genzoo-mutations-") as tmp:
        copy = Path(tmp) / "src"
        shutil.copytree(ROOT / "src", copy, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        # the reference tests (the first of each family's list); with --baseline-all, the family tests too
        all_tests = sorted({t for m in mutations for t in TESTS[m.tests][: None if args.baseline_all else 1]})
        print(f"unmutated: {' '.join(all_tests)} ...", file=sys.stderr, flush=True)
        rc, out, seconds = run_tests(all_tests, copy, args.timeout)
        if rc != 0:
            print(out[-3000:], file=sys.stderr)
            print(f"the unmutated tests fail (rc {rc}); fix them before planting faults", file=sys.stderr)
            return 2
        print(f"unmutated: pass ({seconds:.0f} s)", file=sys.stderr, flush=True)
        rows = []
        for index, m in enumerate(mutations, 1):
            path = copy / "genzoo" / m.file
            original = path.read_text()
            path.write_text(original.replace(m.old, m.new, 1))
            try:  # the reference tests alone first: most faults stop there, before the slower family tests
                rc, out, seconds = run_tests(TESTS[m.tests][:1], copy, args.timeout)
                if rc == 0 and TESTS[m.tests][1:]:  # (pytest given no file would run the whole suite)
                    rc, out, more = run_tests(TESTS[m.tests][1:], copy, args.timeout)
                    seconds += more
            finally:
                path.write_text(original)
            caught = rc != 0
            by = first_failure(out) or ("timeout" if rc == -1 else f"pytest rc {rc}" if caught else "")
            rows.append((m, caught, by, seconds))
            print(f"[{index}/{len(mutations)}] {m.name}: {'caught by ' + by if caught else 'SURVIVED'} "
                  f"({seconds:.0f} s)", file=sys.stderr, flush=True)

    n_caught = sum(caught for _, caught, _, _ in rows)
    print(f"Planted {len(rows)} faults, caught {n_caught}. `python benchmarks/mutations.py`, "
          f"{started:%Y-%m-%d %H:%M} UTC, {platform.machine()} {os.cpu_count()} cores, Python "
          f"{platform.python_version()}.\n")
    print("| # | fault | file | caught | first failing test | s |")
    print("|---|---|---|---|---|---|")
    for index, (m, caught, by, seconds) in enumerate(rows, 1):
        print(f"| {index} | `{m.name}`: {m.what} | {m.file} | {'yes' if caught else '**no**'} | "
              f"{by.replace('tests/', '')} | {seconds:.0f} |")
    return 0 if n_caught == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
