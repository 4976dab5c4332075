"""`instruct`: an InstructPix2Pix-style editor of digits, image + text instruction -> edited image.

Paper followed: Brooks, Holynski & Efros 2023, "InstructPix2Pix: Learning to Follow Image Editing Instructions".

- The network is the diffusion U-Net of `ddpm` (Ho et al. 2020), in pixel space or, as the paper (which edits
  with Stable Diffusion), in the latent space of a first-stage autoencoder (Rombach et al. 2022; `ddpm`'s, trained
  as the run's first `first_stage_steps` steps on the triples' inputs and outputs, so that inverted digits and
  degraded inputs are in its range). Its input is the noisy output concatenated with the (encoded) image to edit:
  the paper's extra input channels, whose first-layer weights start at zero, so that a new editor predicts
  exactly what the U-Net without them would. Latent outputs are decoded.
- The instruction is encoded by our own small text encoder (`.text`, trained with the U-Net; the paper
  uses CLIP's). Its vector joins the U-Net's time embedding, which every residual block adds after a learned
  projection, as `ddpm`'s digit label does. We chose this over cross-attention because an instruction here names
  one global operation ("rotate it", "fill in the missing part") rather than regions to bind words to, and
  because it costs nothing at 28x28 on a CPU; the paper's cross-attention is what longer, spatial prompts need.
  With `word_noise=p` training corrupts the instructions (`text.corrupt`, `text.hide_words`), so that a phrasing
  never trained on is read by the words it shares with trained ones (docs/results/instruct.md; default 0).
- Training draws triples from `.edits` on the fly from each batch of digits (exact transforms and
  image-to-image tasks with exact outputs), with a share (`semantic_fraction`) replaced by semantic pairs
  ("turn this 3 into a 8") from a file of `genzoo semantic-pairs` when `semantic_pairs` names one, and minimises
  the epsilon loss of Ho et al. on the output, or (`prediction="v"`) the v loss of Salimans & Ho 2022, which asks
  for the output itself at the noisy steps, where only the input image can give it (better at equal CPU time:
  docs/results/instruct.md; the CPU recipes use it).
  It drops the text, the image, or both, each with probability 5% (the paper's rates), so that one network
  gives eps(I, T), eps(I, 0) and eps(0, 0) (0: the image replaced by zeros, the text by a learned null vector).
- Sampling is DDIM (Song et al. 2021) with the paper's two guidance scales (its eq. 3):
  eps = eps(0, 0) + s_I (eps(I, 0) - eps(0, 0)) + s_T (eps(I, T) - eps(I, 0)).

`edit(images, instructions, ...)` is the editor; `sample(n)` draws digits from the fully unconditional
eps(0, 0) (the 5% of training with neither image nor text), which is what evaluation and sample grids use.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from ...config import ConfigError, in_range, non_negative, positive
from ...constants import IMAGE_SHAPE
from ..base import GenerativeModel
from ..diffusion import DiffusionConfig, LatentSpace, NoiseSchedule, Sampler, UNet, WithEMA, ema_update, make_betas
from . import edits
from .text import TextEncoder, Tokenizer, build_vocabulary, corrupt, hide_words


@dataclass
class InstructConfig(DiffusionConfig):
    """DiffusionConfig's settings (U-Net, schedule, prediction, EMA, first stage; smaller defaults for the latent
    U-Net and the first stage, fewer DDIM steps), and the editor's: the drop rates, the text encoder, the semantic
    pairs and the two guidance scales."""

    latent_widths: ClassVar[tuple[int, ...]] = (32, 64)

    sample_steps: int = 20
    ae_widths: tuple[int, ...] = (16, 32)
    first_stage_steps: int = 1500
    # The paper drops the text, the image, and both, each for 5% of the examples.
    p_drop_text: float = 0.05
    p_drop_image: float = 0.05
    p_drop_both: float = 0.05
    use_text: bool = True  # False: the text-blind baseline, which never sees the instruction
    # The text encoder.
    text_dim: int = 64
    text_layers: int = 2
    text_heads: int = 4
    max_tokens: int = 24  # longer instructions are cut
    trigram_buckets: int = 1024
    # Word noise in training (text.corrupt, text.hide_words): each word dropped, replaced by a made-up word or read
    # by its trigrams alone with this probability, so that phrasings never trained on are read by their telling
    # words (0: the instructions as drawn).
    word_noise: float = 0.0
    vocabulary: tuple[str, ...] = ()  # (): the training phrasings' words (edits.vocabulary_text), recorded here
    # Semantic edits: a pairs.safetensors of `genzoo semantic-pairs` ("": none) and the share of each training batch
    # whose triples are replaced by its pairs (read in training only; an edited run does not need the file).
    semantic_pairs: str = ""
    semantic_fraction: float = 0.1
    # A latent ddpm run whose first stage (the same ae_widths and latent_channels) starts ours ("": from scratch);
    # first_stage_steps then fine-tune it on the triples (inverted digits, noisy inputs are new to it).
    first_stage_from: str = ""
    # Editing defaults (per call: edit(..., image_guidance=, text_guidance=, steps=)).
    image_guidance: float = 1.5
    text_guidance: float = 3.0

    def __post_init__(self):
        super().__post_init__()
        in_range("semantic_fraction", self.semantic_fraction, 0.0, 1.0)
        positive(text_dim=self.text_dim, text_layers=self.text_layers, text_heads=self.text_heads,
                 max_tokens=self.max_tokens, trigram_buckets=self.trigram_buckets)
        non_negative(image_guidance=self.image_guidance, text_guidance=self.text_guidance)
        in_range("word_noise", self.word_noise, 0.0, 0.9)
        for key in ("p_drop_text", "p_drop_image", "p_drop_both"):
            in_range(key, getattr(self, key), 0.0, 1.0)
        if self.p_drop_text + self.p_drop_image + self.p_drop_both > 1:
            raise ConfigError(f"p_drop_text + p_drop_image + p_drop_both = "
                              f"{self.p_drop_text + self.p_drop_image + self.p_drop_both:g}: must be <= 1")
        if self.text_dim % self.text_heads:
            raise ConfigError(f"text_heads={self.text_heads}: must divide text_dim={self.text_dim}")
        if not self.vocabulary:
            self.vocabulary = build_vocabulary(edits.vocabulary_text())


class InstructPix2Pix(LatentSpace, WithEMA, GenerativeModel):
    """InstructPix2Pix-style editor: image + text instruction -> edited digit (DDIM, two guidance scales)."""

    name = "instruct"
    Config = InstructConfig
    sample_options: ClassVar[tuple[str, ...]] = ("steps",)
    can_edit = True
    heavy_sampling = True
    train_defaults: ClassVar[dict] = {"epochs": 20, "batch_size": 128, "lr": 1e-3, "warmup_steps": 200,
                                      "grad_clip": 1.0}

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        cfg = self.config
        # pixel runs before the latent option had no latent_scale: they still load
        self.init_space(cfg.space, cfg.latent_channels, cfg.ae_widths, scale_buffer=False)
        channels, size = self.shape[0], self.shape[-1]
        self.unet = UNet(2 * channels, size, cfg.unet_widths, cfg.res_blocks, cfg.attn_resolution, cfg.attn_heads,
                         cfg.dropout, out_channels=channels)
        with torch.no_grad():  # the image channels start at zero: a new editor is the plain U-Net (Brooks et al.)
            self.unet.stem.weight[:, channels:].zero_()
        self.tokenizer = Tokenizer(cfg.vocabulary, cfg.max_tokens, cfg.trigram_buckets)
        self.text = TextEncoder(len(cfg.vocabulary), cfg.trigram_buckets, cfg.max_tokens, cfg.text_dim,
                                cfg.text_layers, cfg.text_heads, self.unet.emb_dim)
        self.null_text = nn.Parameter(torch.zeros(self.unet.emb_dim))  # the dropped instruction
        # the EMA holds the U-Net and the text encoder: both are trained, both sample
        self.ema = copy.deepcopy(nn.ModuleDict({"unet": self.unet, "text": self.text})).requires_grad_(False) \
            if cfg.ema_decay > 0 else None
        self.schedule = NoiseSchedule(make_betas(cfg.noise_schedule, cfg.timesteps))

    # ------------------------------------------------------------------ conditioning

    def encode_text(self, instructions: list[str], text: TextEncoder | None = None,
                    noise: float = 0.0) -> torch.Tensor:
        """(B, emb_dim) instruction vectors; the null vector throughout for the text-blind baseline. `noise`: the
        word noise of training (torch's global RNG, which the trainer seeds and checkpoints)."""
        if not self.config.use_text:
            return self.null_text.expand(len(instructions), -1)
        batch = self.tokenizer(corrupt(instructions, noise) if noise else instructions, self.device)
        return (text or self.text)(**(hide_words(batch, noise) if noise else batch))

    def drops(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(drop_text, drop_image), each (n,) bool: text only, image only, or both, with the config's rates."""
        cfg = self.config
        u = torch.rand(n, device=self.device)
        text_only = u < cfg.p_drop_text
        image_only = (u >= cfg.p_drop_text) & (u < cfg.p_drop_text + cfg.p_drop_image)
        both = (u >= cfg.p_drop_text + cfg.p_drop_image) & (u < cfg.p_drop_text + cfg.p_drop_image + cfg.p_drop_both)
        return text_only | both, image_only | both

    # ------------------------------------------------------------------ training

    def loss(self, x, y=None, *, step=None):
        """Triples from the batch's digits. Stage one of a latent run: the autoencoder's loss on the triples' inputs
        and outputs. Otherwise (a share of the triples semantic pairs when the config names a file) the simple
        loss of Ho et al. on the output, the input concatenated, the text and the image each dropped as the config
        says (in training only)."""
        triples = edits.make_triples(x)
        if self.in_first_stage(step):  # (the semantic pairs are digits like the batch's: not needed here)
            out = self.first_stage.loss(torch.cat([triples.inputs, triples.outputs]), self.config.kl_weight)
            return {**out, "stage": torch.ones(())}
        inputs, instructions, outputs = self.mix_semantic(triples.inputs, triples.instructions, triples.outputs)
        return {**self.triple_loss(inputs, instructions, outputs), "stage": torch.full((), 2.0)}

    def semantic_pairs(self) -> dict | None:
        """The config's pairs file, read once: inputs, outputs (K, 1, 28, 28), sources, targets (K,)."""
        path = self.config.semantic_pairs
        if not path:
            return None
        if getattr(self, "_pairs", None) is None:
            from safetensors.torch import load_file

            try:
                self._pairs = load_file(path)
            except (OSError, RuntimeError) as e:
                raise ConfigError(f"semantic_pairs={path!r}: cannot read it ({e}); make one with "
                                  "`genzoo semantic-pairs DDPM_RUN --out DIR` and give DIR/pairs.safetensors") from e
            if not len(self._pairs.get("inputs", ())):
                raise ConfigError(f"semantic_pairs={path!r}: holds no pairs; make more candidates (-n) or lower "
                                  "--threshold")
        return self._pairs

    def mix_semantic(self, inputs: torch.Tensor, instructions: list[str],
                     outputs: torch.Tensor) -> tuple[torch.Tensor, list[str], torch.Tensor]:
        """Each triple replaced, with probability semantic_fraction, by a random semantic pair and one of its
        trained phrasings (torch's global RNG, which the trainer seeds and checkpoints)."""
        pairs = self.semantic_pairs()
        if pairs is None or self.config.semantic_fraction == 0:
            return inputs, instructions, outputs
        chosen = (torch.rand(len(inputs)) < self.config.semantic_fraction).nonzero().flatten().tolist()
        if not chosen:
            return inputs, instructions, outputs
        drawn = torch.randint(0, len(pairs["inputs"]), (len(chosen),))
        inputs, outputs, instructions = inputs.clone(), outputs.clone(), list(instructions)
        inputs[chosen] = pairs["inputs"][drawn].to(inputs)
        outputs[chosen] = pairs["outputs"][drawn].to(outputs)
        texts = edits.semantic_instructions(pairs["sources"][drawn].tolist(), pairs["targets"][drawn].tolist())
        for i, text in zip(chosen, texts):
            instructions[i] = text
        return inputs, instructions, outputs

    def triple_loss(self, inputs: torch.Tensor, instructions: list[str], outputs: torch.Tensor) -> dict:
        """The epsilon (or v) loss of one batch of triples, inputs and outputs (B, 1, 28, 28) in [0, 1]."""
        x0 = self.to_space(outputs, remember_scale=self.training)  # (B, C, S, S): pixels in [-1, 1] or latents
        image = self.to_space(inputs)  # (B, C, S, S)
        n = len(x0)
        text = self.encode_text(instructions, noise=self.config.word_noise if self.training else 0.0)  # (B, emb_dim)
        if self.training:
            drop_text, drop_image = self.drops(n)
            text = torch.where(drop_text[:, None], self.null_text.expand_as(text), text)
            image = image * ~drop_image[:, None, None, None]
        t = torch.randint(0, self.config.timesteps, (n,), device=x0.device)
        noise = torch.randn_like(x0)
        xt = self.schedule.q_sample(x0, t, noise)
        output = self.unet(torch.cat([xt, image], dim=1), t, cond=text)  # (B, C, S, S): eps or v
        target = noise if self.config.prediction == "eps" else self.schedule.v_target(x0, noise, t)
        return {"loss": (output.float() - target).pow(2).mean()}

    def configure_optimizers(self, train):
        """Before a run's first step (a resumed run's checkpoint then replaces these weights): the first stage from
        `first_stage_from` when the config names a run; then the Adam of every trained parameter (WithEMA)."""
        if self.config.first_stage_from:
            self.load_first_stage(self.config.first_stage_from)
        return super().configure_optimizers(train)

    def load_first_stage(self, run: str) -> None:
        """The first-stage autoencoder's weights from a latent ddpm run's model.safetensors."""
        from safetensors.torch import load_file

        if self.first_stage is None:
            raise ConfigError(f"first_stage_from={run!r}: only a latent editor has a first stage; add "
                              "--set space=latent")
        path = Path(run) / "model.safetensors"
        if not path.is_file():
            raise ConfigError(f"first_stage_from={run!r}: no {path}; name a trained latent ddpm run")
        state = {k.removeprefix("first_stage."): v for k, v in load_file(str(path)).items()
                 if k.startswith("first_stage.")}
        mine = self.first_stage.state_dict()
        if set(state) != set(mine) or any(state[k].shape != mine[k].shape for k in mine):
            raise ConfigError(f"first_stage_from={run!r}: its first stage does not fit this one (ae_widths="
                              f"{self.config.ae_widths}, latent_channels={self.config.latent_channels}); give the "
                              "run's own ae_widths and latent_channels, or train the first stage here")
        self.first_stage.load_state_dict(state)

    @torch.no_grad()
    def after_optimizer_step(self, step: int) -> None:
        """The EMA of the U-Net and the text encoder, from the first diffusion step on (as ddpm's)."""
        if self.ema is not None and not self.in_first_stage(step):
            ema_update(self.ema, nn.ModuleDict({"unet": self.unet, "text": self.text}),
                       self.diffusion_steps_before(step), self.config.ema_decay)

    # ------------------------------------------------------------------ guidance and sampling

    def networks(self) -> tuple[UNet, TextEncoder]:
        """The sampling networks: the EMA's U-Net and text encoder, or the trained ones."""
        if self.ema is not None:
            return self.ema["unet"], self.ema["text"]
        return self.unet, self.text

    def guided_output(self, net: UNet, xt: torch.Tensor, t: torch.Tensor, image: torch.Tensor, text: torch.Tensor,
                      image_guidance: float, text_guidance: float) -> torch.Tensor:
        """Brooks et al. eq. 3: eps(0,0) + s_I (eps(I,0) - eps(0,0)) + s_T (eps(I,T) - eps(I,0)), one batch of 3B.
        With v-prediction the same combination of the v outputs: eps is affine in v at a given x_t and the three
        weights sum to 1, so it is the same guided eps.

        xt (B, C, S, S) noisy outputs, t (B,), image (B, C, S, S) (pixels in [-1, 1] or latents), text (B, emb_dim)."""
        null = self.null_text.expand_as(text)
        x3 = torch.cat([xt, xt, xt])
        images = torch.cat([image, image, torch.zeros_like(image)])
        out = net(torch.cat([x3, images], dim=1), torch.cat([t, t, t]), cond=torch.cat([text, null, null]))
        e_it, e_i0, e_00 = out.chunk(3)
        return e_00 + image_guidance * (e_i0 - e_00) + text_guidance * (e_it - e_i0)

    def _run(self, n: int, image: torch.Tensor | None, text: torch.Tensor | None, generator, steps: int,
             image_guidance: float, text_guidance: float, progress: bool | None) -> torch.Tensor:
        """n images by DDIM (eta = 0) from x_T drawn with `generator`; image (n, C, S, S) in the diffused space,
        None: the unconditional eps(0, 0)."""
        net, _ = self.networks()
        sampler = Sampler(self.schedule, "ddim", steps, eta=0.0)
        x = self.randn(n, *self.shape, generator=generator)  # (n, C, S, S) = x_T

        def predict(xt: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
            tt = torch.full((len(xt),), t, dtype=torch.long, device=xt.device)
            if image is None:
                eps = net(torch.cat([xt, torch.zeros_like(xt)], dim=1), tt, cond=self.null_text.expand(n, -1))
            else:
                eps = self.guided_output(net, xt, tt, image, text, image_guidance, text_guidance)
            eps, x0 = self.schedule.split(eps.float(), xt, tt, self.config.prediction)
            if self.first_stage is None:  # pixels live in [-1, 1]; eps made consistent with the clipped x_0 (as ddpm)
                x0 = x0.clamp(-1, 1)
                eps = self.schedule.eps_from_x0(xt, tt, x0)
            return eps, x0

        was_training = self.training
        self.eval()
        out, _ = sampler.run(predict, x, generator, progress)
        self.train(was_training)
        return self.from_space(out)

    def check_images(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or tuple(images.shape[1:]) != IMAGE_SHAPE:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ConfigError(f"{self.name}: images must be a (B, 1, 28, 28) tensor, got {shape}; load a file with "
                              "genzoo.commands.load_digit")
        if not images.dtype.is_floating_point or images.min() < 0 or images.max() > 1:
            raise ConfigError(f"{self.name}: images must be floats in [0, 1], got {images.dtype} in "
                              f"[{float(images.min()):g}, {float(images.max()):g}]; divide bytes by 255")
        return images.float().to(self.device)

    def edit_settings(self, image_guidance: float | None = None, text_guidance: float | None = None,
                      steps: int | None = None) -> dict:
        """The editing options in force: those given (checked), the config's defaults for the rest."""
        cfg = self.config
        s_i = cfg.image_guidance if image_guidance is None else float(image_guidance)
        s_t = cfg.text_guidance if text_guidance is None else float(text_guidance)
        steps = cfg.sample_steps if steps is None else int(steps)
        if s_i < 0 or s_t < 0:
            raise ConfigError(f"image_guidance={s_i:g}, text_guidance={s_t:g}: both must be >= 0")
        if not 1 <= steps <= cfg.timesteps:
            raise ConfigError(f"steps={steps}: must lie in 1..{cfg.timesteps} (the model's timesteps)")
        return {"image_guidance": s_i, "text_guidance": s_t, "steps": steps}

    @torch.no_grad()
    def edit(self, images: torch.Tensor, instructions: list[str], *, image_guidance: float | None = None,
             text_guidance: float | None = None, steps: int | None = None,
             generator: torch.Generator | None = None, progress: bool | None = None) -> torch.Tensor:
        """Edit each image by its instruction.

        Args:
            images: (B, 1, 28, 28) float in [0, 1], white digits on black as in MNIST.
            instructions: B free-text instructions (unknown words are fine; an empty one is an error).
            image_guidance, text_guidance: s_I and s_T of Brooks et al. eq. 3 (None: the config's).
            steps: DDIM steps (None: the config's sample_steps).
            generator: draws x_T (a CPU generator gives the same edits on any device).
        Returns:
            (B, 1, 28, 28) edited images in [0, 1]; the same generator gives the same edits.
        """
        images = self.check_images(images)
        if isinstance(instructions, str) or len(instructions) != len(images):
            got = "one string" if isinstance(instructions, str) else f"{len(instructions)} instructions"
            raise ConfigError(f"{self.name}: give one instruction per image, a list of {len(images)}; got {got}")
        for text in instructions:
            if not isinstance(text, str) or not text.strip():
                raise ConfigError(f"{self.name}: instruction {text!r} is empty; say what to do, e.g. 'mirror it'")
        settings = self.edit_settings(image_guidance, text_guidance, steps)
        s_i, s_t, steps = settings["image_guidance"], settings["text_guidance"], settings["steps"]
        was_training = self.training
        self.eval()
        _, text_net = self.networks()
        text = self.encode_text(list(instructions), text_net)
        out = self._run(len(images), self.to_space(images), text, generator, steps, s_i, s_t, progress)
        self.train(was_training)
        return out

    @torch.no_grad()
    def _sample(self, n: int, y: torch.Tensor | None, generator: torch.Generator | None, *,
                steps: int | None = None, progress: bool | None = None) -> torch.Tensor:
        """n digits (n, 1, 28, 28) from eps(0, 0): no image and no instruction."""
        steps = self.config.sample_steps if steps is None else int(steps)
        return self._run(n, None, None, generator, steps, 0.0, 0.0, progress)

    def pictures(self, data) -> dict:
        """edits.png: one test digit per edit kind, its input, the instruction, the edit and the exact output."""
        x = data.test_x[: len(edits.KINDS)].to(self.device)
        triples = edits.make_triples(x, torch.Generator().manual_seed(0), kinds=list(edits.KINDS)[: len(x)])
        out = self.edit(triples.inputs, triples.instructions, generator=torch.Generator().manual_seed(0))
        return {"edits.png": edit_figure(triples.inputs, triples.instructions, out, triples.outputs, triples.kinds)}


def edit_figure(inputs: torch.Tensor, instructions: list[str], outputs: torch.Tensor,
                targets: torch.Tensor | None = None, kinds: list[str] | None = None, columns: int = 2):
    """A matplotlib Figure: one edit per cell, input | edit (| exact output), its instruction above it; `columns`
    cells a row. One image drawn once (many small axes are slow to draw)."""
    from matplotlib.figure import Figure  # optional heavy dependency, only for this picture

    panels = [inputs, outputs] + ([targets] if targets is not None else [])
    n, size, pad, gap, text_h = len(inputs), 28, 2, 12, 14
    rows = -(-n // columns)
    cell_w, cell_h = len(panels) * (size + pad) + gap, size + text_h
    canvas = torch.full((rows * cell_h + pad, columns * cell_w), 1.0)  # white paper, digits in their own squares
    for i in range(n):
        r, c = divmod(i, columns)
        top = r * cell_h + text_h
        for j, images in enumerate(panels):
            left = c * cell_w + j * (size + pad)
            canvas[top:top + size, left:left + size] = images[i, 0].detach().float().cpu().clamp(0, 1)
    scale = 1 / 40  # inches per pixel of the canvas
    fig = Figure(figsize=(canvas.shape[1] * scale * 1.6, canvas.shape[0] * scale * 1.6), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(canvas.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    names = "input | edit | exact output" if targets is not None else "input | edit"
    for i in range(n):
        r, c = divmod(i, columns)
        text = instructions[i] if len(instructions[i]) <= 44 else instructions[i][:41] + "..."
        label = f"{kinds[i]}: {text}" if kinds else text
        ax.text(c * cell_w, r * cell_h + text_h - 3, label, fontsize=6.5, va="bottom", ha="left")
    fig.suptitle(names, fontsize=7, y=1.0, va="bottom")
    return fig
