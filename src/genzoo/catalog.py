"""The one table of models: CLI name -> where its class is, what it is, its papers, its place in the taxonomy,
its named training recipes.

Everything per model that is not the model itself derives from this table: the registry (`genzoo.registry`
imports each `target`), `genzoo list`, the CLI's model choices, the taxonomy of the demo report, the
recipes of `genzoo recipes` and `genzoo train --recipe` (`genzoo.recipes`), and the model's place in `genzoo demo`
(its `demo`: settings and section text, read by `genzoo.showcase.zoo`). It imports no torch, so that
`genzoo list` and `genzoo --version` answer at once (importing the models takes seconds).
Adding a model is its own file under `genzoo/models/` and one row here (docs/CONTRIBUTING.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The taxonomy of generative models of Goodfellow's NIPS 2016 tutorial (figure 9), as the paths of its leaves,
# in the order the demo report shows them; a model names its leaf.
FULLY_VISIBLE = ("Explicit density", "Tractable density", "Fully visible belief nets: the chain rule")
MIXTURES = ("Explicit density", "Tractable density", "Mixtures of Gaussians: closed form and EM")
VARIATIONAL = ("Explicit density", "Approximate density", "Variational")
EXPLICIT_MARKOV = ("Explicit density", "Approximate density", "Markov chain")
IMPLICIT_MARKOV = ("Implicit density", "Markov chain")
DIRECT = ("Implicit density", "Direct")
TAXONOMY_ROOT = "Maximum likelihood and beyond"
LEAVES = (FULLY_VISIBLE, MIXTURES, VARIATIONAL, EXPLICIT_MARKOV, IMPLICIT_MARKOV, DIRECT)


@dataclass(frozen=True)
class Stage:
    """A run of another model that a recipe trains first, inside its own run folder (`stages/<name>`)."""

    name: str  # sub-folder of the run's `stages/`
    model: str
    recipe: str  # that model's recipe


@dataclass(frozen=True)
class Recipe:
    """Hyper-parameters for the model and the trainer, by steps or epochs, so that the same command on the same
    machine gives the same weights: `cpu` (the best a 2-core CPU reaches in at most 3 CPU-hours of training) and
    `paper` (the paper's settings, sized for a GPU) for every model."""

    about: str  # one line: what the recipe is and why
    model: dict[str, Any] = field(default_factory=dict)  # model hyper-parameters
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig values
    device: str = "cpu"  # what it is sized for: "cpu" (a 2-core CPU, one thread) or "gpu"
    stages: tuple[Stage, ...] = ()  # runs trained before this one (their outputs feed `model`)
    pairs: int = 0  # > 0: semantic pairs drawn from the `ddpm` stage's run before training (the editor)
    pairs_threshold: float = 0.9  # the evaluator's confidence a pair's two digits need to be kept


# The demo's CPU runs: epochs far beyond the budget (the time budget stops training).
DEMO_EPOCHS = 1000
# `sample_every` of the slow samplers: no grid at epoch ends (the 1000 epochs are never reached), only the one the
# trainer draws where the time budget stops a run mid-epoch.
SAMPLE_AT_STOP_ONLY = DEMO_EPOCHS


@dataclass(frozen=True)
class Demo:
    """How `genzoo demo` trains the model on a CPU in its slice of the budget, and what its section of the demo
    report teaches (`genzoo.showcase.zoo`); a model without one is left out of the demo."""

    share: float  # relative share of the demo's budget (normalised over the models run)
    about: str  # three or four plain sentences: what it models and how
    objective: tuple[str, ...]  # formula lines in matplotlib mathtext ($...$)
    code: tuple[str, ...]  # "module:qualname" of the functions that compute the objective
    paper: str
    cpu: dict[str, Any] = field(default_factory=dict)  # model hyper-parameters on a CPU
    cpu_train: dict[str, Any] = field(default_factory=dict)  # trainer settings on a CPU
    gpu: dict[str, Any] = field(default_factory=dict)  # on a GPU: the model's defaults (full size) unless given
    gpu_train: dict[str, Any] = field(default_factory=dict)
    tiny: dict[str, Any] = field(default_factory=dict)  # model hyper-parameters of the test-sized demo
    cpu_samples: int = 1000  # samples scored by the evaluator on a CPU, at most (GPU: 10,000)
    cpu_fit_images: int = 0  # closed-form fits on a CPU: a seeded random subset of this many training images (0: all)
    eval_seconds: float = 15.0  # kept from its slice for evaluation on a CPU
    captions: dict[str, str] = field(default_factory=dict)  # picture file (relative to the run) -> what to look at
    full_recipe: str = ""  # the command that trains the full recipe
    # How the CPU recipe falls short of the full one, said in the section; whether its samples got to recognisable
    # digits is read from the measured scores (demo_report.not_there_note), never written here.
    cpu_note: str = ""
    extras: tuple[str, ...] = ()  # genzoo.commands functions called as fn(run_dir) after training: more pictures
    # A model of the demo run before this one whose latent first stage starts this one's (its `first_stage_from`;
    # with `first_stage_steps` of fine-tuning), when that run is in the demo folder; else the recipe's own.
    first_stage_from: str = ""
    first_stage_steps: int = 0


@dataclass(frozen=True)
class Entry:
    target: str  # "module:Class" under genzoo.models
    about: str  # what it is, one line (`genzoo list`)
    papers: str  # the papers it follows
    leaf: tuple[str, ...]  # its leaf of the taxonomy, one of LEAVES
    note: str  # what the taxonomy says beside its name
    recipes: dict[str, Recipe]  # recipe name -> recipe; at least "cpu" and "paper"
    demo: Demo | None = None  # its place in `genzoo demo` (CPU settings, share, section text)


# CLI name -> its row; the order is the registry's, `genzoo list`'s and the demo's.
MODELS: dict[str, Entry] = {
    "gmm": Entry(
        target="gmm:GMM",
        about="Gaussian mixture over the pixels (or a PCA subspace), fitted by EM",
        papers="Dempster, Laird & Rubin 1977; Tipping & Bishop 1999",
        leaf=MIXTURES,
        note="Gaussian mixture by EM",
        recipes={
            "cpu": Recipe("30 full-covariance Gaussians over 50 principal components, EM on all training digits",
                          model={"n_components": 30, "pca_dim": 50, "max_iter": 100}),
            "paper": Recipe("10 components over 50 principal components (one per digit on average)",
                            model={"n_components": 10, "pca_dim": 50}),
        },
        demo=Demo(
            share=0.03,
            about="A Gaussian mixture models each image as drawn from one of K Gaussians over its pixels, here over "
                  "the first 50 principal components with an isotropic Gaussian for the rest (probabilistic PCA). "
                  "Expectation-maximisation alternates the E step, each image's responsibility of each component, "
                  "and the M step, each component's weight, mean and covariance refitted from those "
                  "responsibilities; each round never lowers the likelihood. The density is exact, so its NLL is "
                  "exact too, and a sample is a component's Gaussian drawn from: smooth, ghostly digits.",
            objective=(r"$p(x)=\sum_{k=1}^{K}\pi_k\,\mathcal{N}(x;\mu_k,\Sigma_k)$",
                       r"E: $\gamma_{ik}=\frac{\pi_k\mathcal{N}(x_i;\mu_k,\Sigma_k)}"
                       r"{\sum_j\pi_j\mathcal{N}(x_i;\mu_j,\Sigma_j)}$"
                       r"$\quad$ M: $\pi_k=\frac{1}{N}\sum_i\gamma_{ik},\;"
                       r"\mu_k=\frac{\sum_i\gamma_{ik}x_i}{\sum_i\gamma_{ik}}$"),
            code=("genzoo.mixture:GaussianMixture._e_step", "genzoo.mixture:GaussianMixture._m_step"),
            paper="Dempster, Laird & Rubin 1977, \"Maximum likelihood from incomplete data via the EM algorithm\"; "
                  "Tipping & Bishop 1999, \"Probabilistic principal component analysis\"",
            # EM's late rounds change little. 30 components, not 10: more of the samples are recognisable digits for
            # about the same CPU seconds of EM (docs/results/demo-recipes.md)
            cpu={"n_components": 30, "pca_dim": 50, "max_iter": 30, "tol": 0.01},
            cpu_fit_images=10_000,
            tiny={"n_components": 3, "pca_dim": 10, "max_iter": 5},
            extras=("gmm_demo",),
            captions={"gmm_demo.png": "EM on 2-D synthetic clusters (the seed's \"gmm syn\"): data in grey, each "
                                      "component's ellipses at 1 and 2 standard deviations, samples of the fit in red",
                      "components.png": "each component's mean: a prototype per cluster of digits EM found",
                      "component_samples.png": "one row of samples per component: how much each Gaussian varies"},
            full_recipe="genzoo train gmm --data mnist --set n_components=10 --set pca_dim=50",
        ),
    ),
    "bayes": Entry(
        target="bayes:BayesClassifier",
        about="sampling from a Bayes classifier: p(y) p(x | y), a Gaussian or a Gaussian mixture per digit",
        papers="Murphy 2012, section 4.2; Dempster, Laird & Rubin 1977",
        leaf=MIXTURES,
        note="sampling from a Bayes classifier",
        recipes={
            "cpu": Recipe("10 Gaussians per digit over 50 principal components: sharper samples than one",
                          model={"components_per_class": 10, "pca_dim": 50}),
            "paper": Recipe("one Gaussian per digit (Gaussian discriminant analysis)",
                            model={"components_per_class": 1, "pca_dim": 50}),
        },
        demo=Demo(
            share=0.03,
            about="Sampling from a Bayes classifier: one density p(x | y) per digit and the digit frequencies p(y), "
                  "so that Bayes' rule classifies and p(x | y) draws a chosen digit. Each p(x | y) is here a mixture "
                  "of a few Gaussians fitted by EM over that digit's first 50 principal components. It is the "
                  "simplest conditional generative model; its samples show what a Gaussian can and cannot capture "
                  "of a digit's strokes.",
            objective=(r"$p(x,y)=p(y)\,p(x\mid y),\quad "
                       r"p(x\mid y)=\sum_{k}\pi_{yk}\,\mathcal{N}(x;\mu_{yk},\Sigma_{yk})$",
                       r"$p(y\mid x)=\frac{p(y)\,p(x\mid y)}{\sum_{c}p(c)\,p(x\mid c)}$"),
            code=("genzoo.models.bayes:BayesClassifier.joint_log_prob", "genzoo.models.bayes:BayesClassifier.log_prob"),
            paper="Gaussian discriminant analysis (e.g. Murphy 2012, \"Machine Learning: a Probabilistic "
                  "Perspective\", "
                  "ch. 4); EM per class: Dempster, Laird & Rubin 1977",
            cpu={"components_per_class": 2, "pca_dim": 50, "max_iter": 30, "tol": 0.01},
            cpu_fit_images=10_000,
            tiny={"components_per_class": 1, "pca_dim": 10, "max_iter": 5},
            captions={"means_and_samples.png": "first row: each digit's mean; below, samples of each digit: "
                                               "recognisable shapes with Gaussian speckle"},
            full_recipe="genzoo train bayes --data mnist --set components_per_class=10 --set pca_dim=50",
        ),
    ),
    "rbm": Entry(
        target="rbm:RBM",
        about="restricted Boltzmann machine, CD-k / persistent CD, AIS likelihood",
        papers="Hinton 2002; Tieleman 2008; Salakhutdinov & Murray 2008",
        leaf=EXPLICIT_MARKOV,
        note="restricted Boltzmann machine, CD and AIS",
        recipes={
            "cpu": Recipe("500 hidden units, PCD-1 with 100 chains, 200 epochs annealed by a cosine (Salakhutdinov & "
                          "Murray's model, scored by their AIS)", model={"n_hidden": 500}, train={"epochs": 200}),
            "paper": Recipe("the same model for 100 epochs", model={"n_hidden": 500}, train={"epochs": 100},
                            device="gpu"),
        },
        demo=Demo(
            share=0.07,
            about="A restricted Boltzmann machine is an energy-based model of binary pixels v and binary hidden units "
                  "h, with no connections inside a layer, so each layer given the other is independent Bernoulli "
                  "units. The likelihood gradient is data statistics minus model statistics; contrastive divergence "
                  "estimates the second with a short Gibbs chain (persistent chains here). The partition function Z "
                  "is intractable: annealed importance sampling estimates log Z, so the NLL is an estimate with a "
                  "spread. Samples come from a long Gibbs chain.",
            objective=(r"$E(v,h)=-b^\top v-c^\top h-v^\top Wh,\quad p(v)=\frac{1}{Z}\sum_h e^{-E(v,h)}$",
                       r"$\frac{\partial \log p(v)}{\partial W}="
                       r"\langle vh^\top\rangle_{data}-\langle vh^\top\rangle_{model}$"
                       r"$\quad \hat Z=Z_0\,\frac{1}{M}\sum_{m}\prod_{t}"
                       r"\frac{p^*_{\beta_t}(v_t^{(m)})}{p^*_{\beta_{t-1}}(v_t^{(m)})}$"),
            code=("genzoo.models.rbm:RBM.train_step", "genzoo.models.rbm:ais_log_partition"),
            paper="Hinton 2002, \"Training products of experts by minimizing contrastive divergence\"; Tieleman 2008 "
                  "(persistent CD); Salakhutdinov & Murray 2008, \"On the quantitative analysis of deep belief "
                  "networks\" "
                  "(AIS)",
            cpu={"n_hidden": 200, "gibbs_steps": 100, "ais_betas": 2000, "ais_runs": 50},
            cpu_train={"lr": 0.02, "batch_size": 100, "sample_every": 5},
            tiny={"n_hidden": 16, "gibbs_steps": 5, "ais_betas": 20, "ais_runs": 4, "persistent_chains": 16},
            cpu_samples=500,
            eval_seconds=15.0,  # 500 samples of 100 Gibbs sweeps, AIS, the NLL: seconds on an idle CPU
            captions={"gibbs_chain.png": "Gibbs chains (rows) from test digits, p(v | h) after 0, 1, 2, 5, ... sweeps "
                                         "(columns): the chain forgets its start and wanders between digits",
                      "filters.png": "the weights of 100 hidden units: strokes and blobs each unit votes for"},
            full_recipe="genzoo train rbm --data mnist --epochs 100",
            cpu_note="The paper's AIS uses 14,500 temperatures and 100 runs; the CPU demo uses 2,000 and 50, so its "
                     "log Z is rougher (its spread is shown).",
        ),
    ),
    "ae": Entry(
        target="ae:Autoencoder",
        about="convolutional autoencoder with a bottleneck",
        papers="Hinton & Salakhutdinov 2006",
        leaf=DIRECT,
        note="autoencoder: a Gaussian fitted to its codes, decoded",
        recipes={
            "cpu": Recipe("the default conv autoencoder for 10 epochs, cosine schedule", train={"epochs": 10}),
            "paper": Recipe("the default conv autoencoder for its 20 epochs", device="gpu"),
        },
        demo=Demo(
            share=0.07,
            about="An autoencoder squeezes each digit through a small code and learns to rebuild it, minimising the "
                  "reconstruction error. It has no prior over codes, so it is not a generative model by itself; "
                  "genzoo fits a Gaussian to its training codes and decodes draws from it, a crude sampler that "
                  "serves as the baseline for the VAE, which learns to make its codes match its prior.",
            objective=(r"$\mathcal{L}(x)=-\sum_{i=1}^{784}\left[x_i\log\hat x_i+(1-x_i)\log(1-\hat x_i)\right],"
                       r"\quad \hat x=g_\theta(f_\phi(x))$",),
            code=("genzoo.models.ae:Autoencoder.loss", "genzoo.models.ae:reconstruction_error"),
            paper="Hinton & Salakhutdinov 2006, \"Reducing the dimensionality of data with neural networks\"",
            cpu={"channels": 16, "latent_dim": 16},
            cpu_train={"lr": 2e-3},
            tiny={"channels": 4, "latent_dim": 4},
            captions={"reconstructions.png": "test digits (top) and their reconstructions (bottom): what survives "
                                             "a 16-number code"},
            full_recipe="genzoo train ae --data mnist --epochs 20",
        ),
    ),
    "dae": Entry(
        target="dae:DenoisingAutoencoder",
        about="denoising autoencoder (Gaussian, salt-and-pepper, masking noise), sampled through its Markov chain",
        papers="Vincent et al. 2008; Bengio et al. 2013",
        leaf=IMPLICIT_MARKOV,
        note="denoising autoencoder through its Markov chain (Bengio et al. 2013)",
        recipes={
            "cpu": Recipe("the default conv denoising autoencoder for 20 epochs, cosine schedule",
                          train={"epochs": 20}),
            "paper": Recipe("the default denoising autoencoder for its epochs", device="gpu"),
        },
        demo=Demo(
            share=0.07,
            about="A denoising autoencoder learns to map corrupted digits back to clean ones. Bengio et al. (2013) "
                  "showed that it then estimates the reconstruction distribution P(X | corrupted X), and that the "
                  "Markov chain which alternates corrupting and denoising has the data distribution as its "
                  "stationary distribution: a generative model with no explicit density. genzoo's samples are the "
                  "end of that chain, started from uniform noise. In practice the theorem's condition fails: a decoder "
                  "of independent pixels cannot represent the several digits a heavily corrupted image may have come "
                  "from, and a chain run far past its 30 steps narrows onto a few digits (docs/RESULTS.md).",
            objective=(r"$\mathcal{L}=\mathbb{E}_{x}\,\mathbb{E}_{\tilde x\sim C(\tilde x\mid x)}"
                       r"\left[-\log P_\theta(x\mid\tilde x)\right]$",
                       r"chain: $\tilde x_t\sim C(\tilde x\mid x_t),\quad x_{t+1}\sim P_\theta(x\mid\tilde x_t)$"),
            code=("genzoo.models.dae:DenoisingAutoencoder.loss", "genzoo.models.dae:DenoisingAutoencoder.chain_step"),
            paper="Vincent et al. 2008, \"Extracting and composing robust features with denoising autoencoders\"; "
                  "Bengio et al. 2013, \"Generalized denoising auto-encoders as generative models\"",
            cpu={"channels": 16, "latent_dim": 32, "noise": "gaussian", "noise_level": 0.5, "chain_steps": 30},
            cpu_train={"lr": 2e-3},
            tiny={"channels": 4, "latent_dim": 4, "chain_steps": 3},
            cpu_samples=500,
            eval_seconds=20.0,
            captions={"markov_chain.png": "chains (rows) from uniform noise: corrupt, denoise, draw, repeat; "
                                          "columns after 0, 1, 2, 3, 5, 10, 20, 30 steps: noise turns into digits",
                      "denoising.png": "clean / noisy / denoised rows for Gaussian, salt-and-pepper and masking noise",
                      "reconstructions.png": "test digits (top) and their reconstructions (bottom)"},
            full_recipe="genzoo train dae --data mnist --epochs 20",
        ),
    ),
    "vae": Entry(
        target="vae:VAE",
        about="variational autoencoder, Bernoulli decoder, ELBO and IWAE likelihood",
        papers="Kingma & Welling 2014; Burda et al. 2016",
        leaf=VARIATIONAL,
        note="variational autoencoder",
        recipes={
            # Trained on the ELBO instead, 500 epochs (as many CPU-hours): 86.84 nats (docs/RESULTS.md)
            "cpu": Recipe("an MLP VAE, 784-500-500-50 (two hidden layers each way), trained on the IWAE bound with "
                          "K = 5 (Burda et al. 2016), 200 epochs, cosine schedule; its IWAE at K = 1,000 on all test "
                          "digits takes minutes, the conv VAE's many CPU-hours",
                          model={"arch": "mlp", "hidden": 500, "depth": 2, "latent_dim": 50, "train_k": 5},
                          train={"epochs": 200}),
            "paper": Recipe("Kingma & Welling's 784-400-20 MLP VAE for 100 epochs",
                            model={"arch": "mlp", "hidden": 400, "latent_dim": 20}, train={"epochs": 100},
                            device="gpu"),
        },
        demo=Demo(
            share=0.10,
            about="A variational autoencoder is a latent-variable model p(z) p(x | z) with a Gaussian prior and a "
                  "decoder network; an encoder q(z | x) approximates the intractable posterior. Training maximises "
                  "the evidence lower bound, the reconstruction log-likelihood minus the KL divergence from the "
                  "posterior to the prior, with the reparameterisation trick. Its NLL is estimated by importance "
                  "sampling (IWAE), and the KL per latent dimension shows which dimensions the model uses.",
            objective=(r"$\log p(x)\geq \mathrm{ELBO}(x)=\mathbb{E}_{q_\phi(z\mid x)}[\log p_\theta(x\mid z)]"
                       r"-\mathrm{KL}(q_\phi(z\mid x)\,\|\,p(z))$",
                       r"$\mathrm{KL}=\frac{1}{2}\sum_{d}\left(\mu_d^2+\sigma_d^2-1-\log\sigma_d^2\right),"
                       r"\quad z=\mu+\sigma\odot\epsilon$"),
            code=("genzoo.models.vae:VAE.elbo_terms", "genzoo.models.vae:gaussian_kl", "genzoo.models.vae:VAE.loss"),
            paper="Kingma & Welling 2014, \"Auto-encoding variational Bayes\"; Burda et al. 2016, "
                  "\"Importance weighted autoencoders\"",
            # 8 latent dimensions, not 16: more of the prior samples are recognisable digits after a CPU slice
            # (docs/results/demo-recipes.md)
            cpu={"channels": 16, "latent_dim": 8},
            cpu_train={"lr": 2e-3},  # the default 1e-3 is tuned for 100 epochs; a CPU slice has a few
            tiny={"channels": 4, "latent_dim": 4},
            eval_seconds=25.0,
            captions={"prior_samples_and_means.png": "prior samples (top: binary pixels drawn) above the decoder means "
                                                     "they came from (bottom): the mean is the smooth digit",
                      "kl_per_dimension.png": "mean KL of each latent dimension: dimensions near 0 are unused "
                                              "(their posterior is the prior)",
                      "reconstructions.png": "test digits (top) and their reconstructions from the posterior mean"},
            full_recipe="genzoo train vae --data mnist --epochs 100",
        ),
    ),
    "pixelcnn": Entry(
        target="pixelcnn:PixelCNN",
        about="PixelCNN on binarized digits: masked convolutions, gated, class-conditional; exact likelihood",
        papers="van den Oord et al. 2016",
        leaf=FULLY_VISIBLE,
        note="masked convolutions",
        recipes={
            "cpu": Recipe("a narrow gated PixelCNN (32 channels, 6 layers after the first) for 5 epochs, cosine "
                          "schedule, sized for about 2 CPU-hours on one thread",
                          model={"gated": True, "channels": 32, "n_layers": 6, "head_channels": 128},
                          train={"epochs": 5, "lr": 2e-3, "warmup_steps": 200}),
            "paper": Recipe("gated PixelCNN, 96 channels, 15 layers, 40 epochs",
                            model={"gated": True, "channels": 96, "n_layers": 15, "head_channels": 256},
                            train={"epochs": 40, "lr": 2e-3, "warmup_steps": 500}, device="gpu"),
        },
        demo=Demo(
            share=0.08,
            about="PixelCNN writes an image's probability exactly by the chain rule, one pixel at a time in raster "
                  "order, each a Bernoulli whose logit a convolutional network computes from the pixels above and "
                  "to the left only (masked convolutions). Training is plain maximum likelihood, so the NLL is "
                  "exact; sampling is sequential, 784 network steps per image, which makes it slow.",
            objective=(r"$\log p(x)=\sum_{i=1}^{784}\log p(x_i\mid x_1,\ldots,x_{i-1})$",),
            code=("genzoo.models.autoregressive:PixelModel.log_prob",),
            paper="van den Oord et al. 2016, \"Pixel recurrent neural networks\" and \"Conditional image generation "
                  "with PixelCNN decoders\"",
            cpu={"channels": 32, "n_layers": 4, "head_channels": 32},
            cpu_train={"sample_every": 0},  # no grids: sequential sampling would eat the slice (demo-recipes.md)
            tiny={"channels": 4, "n_layers": 1, "head_channels": 4, "first_kernel": 3},
            # as many as the slice allows (the demo's probe tells the 784 steps' cost per call from that per sample), up
            # to 500: the share of 200 samples is noisy (two standard errors of a change: about 10 points)
            cpu_samples=500,
            eval_seconds=100.0,  # the grid where the budget stopped it, the completions, the samples: 784 steps each
            captions={"completions-bottom-half.png": "rows: test digit, its visible top half, two completions of "
                                                     "the hidden bottom half",
                      "pixel_probabilities.png": "each pixel's probability given the pixels before it"},
            full_recipe="genzoo train pixelcnn --data mnist --epochs 30",
            cpu_note="On a CPU the demo trains a small network (4 layers of 32 channels, not the paper's 12 of 128) "
                     "for about half a minute and scores at most 500 samples, as each is 784 sequential network steps; "
                     "the full recipe needs a GPU. With that little training its samples are strokes and blobs, and "
                     "the share the evaluator reads with confidence depends on which few digits the model first "
                     "settles on more than on a second run's training; its FID-style score and the variety of its "
                     "digits show that run's gain better (docs/RESULTS.md).",
        ),
    ),
    "pixelrnn": Entry(
        target="pixelrnn:PixelRNN",
        about="PixelRNN on binarized digits: Row LSTM or Diagonal BiLSTM; exact likelihood",
        papers="van den Oord et al. 2016",
        leaf=FULLY_VISIBLE,
        note="Row / Diagonal LSTM",
        recipes={
            "cpu": Recipe("a narrow Row LSTM (32 channels, 4 layers) for 6 epochs, cosine schedule, sized for about "
                          "2.4 CPU-hours on one thread",
                          model={"variant": "row", "n_layers": 4, "channels": 32, "hidden": 32},
                          train={"epochs": 6, "warmup_steps": 200}),
            "paper": Recipe("Diagonal BiLSTM, 7 layers, 30 epochs",
                            model={"variant": "diagonal", "n_layers": 7, "channels": 64, "hidden": 32},
                            train={"epochs": 30, "warmup_steps": 500}, device="gpu"),
        },
        demo=Demo(
            share=0.07,
            about="PixelRNN models the same chain rule as PixelCNN with LSTM layers that run down the image "
                  "(Row LSTM, here) or along its diagonals, so each pixel sees the whole region above it. The "
                  "likelihood is exact; sampling is pixel by pixel.",
            objective=(r"$\log p(x)=\sum_{i=1}^{784}\log p(x_i\mid x_{<i}),\quad "
                       r"h_r=\mathrm{LSTM}(h_{r-1},\,\mathrm{conv}(x_{r-1}))$",),
            code=("genzoo.models.autoregressive:PixelModel.loss", "genzoo.models.pixelrnn:lstm_update"),
            paper="van den Oord, Kalchbrenner & Kavukcuoglu 2016, \"Pixel recurrent neural networks\"",
            cpu={"variant": "row", "n_layers": 2, "channels": 32, "hidden": 16, "head_channels": 32},
            cpu_train={"sample_every": 0},  # no grids: sequential sampling would eat the slice (demo-recipes.md)
            tiny={"variant": "row", "n_layers": 1, "channels": 4, "hidden": 4, "head_channels": 4, "first_kernel": 3},
            cpu_samples=500,  # as many as the slice allows, up to 500, as pixelcnn's
            eval_seconds=100.0,  # the grid where the budget stopped it, the completions, the samples: 784 steps each
            captions={"completions-bottom-half.png": "rows: test digit, its visible top half, two completions",
                      "pixel_probabilities.png": "each pixel's probability given the pixels before it"},
            full_recipe="genzoo train pixelrnn --data mnist --epochs 30",
            cpu_note="Like PixelCNN, on a CPU the demo trains a small network briefly and scores at most 500 samples "
                     "(784 sequential steps each); the full recipe needs a GPU.",
        ),
    ),
    # The adversarial models' recipes keep their default Adam betas (0.5, 0.999); only length and losses differ.
    "gan": Entry(
        target="gan:GAN",
        about="GAN with fully connected networks",
        papers="Goodfellow et al. 2014",
        leaf=DIRECT,
        note="generative adversarial net",
        recipes={
            "cpu": Recipe("fully connected GAN on the hinge loss (spreads its samples over the digits), 80 epochs",
                          model={"loss": "hinge"}, train={"epochs": 80}),
            "paper": Recipe("Goodfellow et al.'s nonsaturating GAN for its 30 epochs", device="gpu"),
        },
        demo=Demo(
            share=0.11,
            about="A generative adversarial network pits a generator, which maps noise to images, against a "
                  "discriminator that tells real digits from generated ones. The two play a minimax game; in "
                  "practice the generator maximises log D(G(z)) (the non-saturating loss), which gives it strong "
                  "gradients early on. There is no likelihood: quality is judged by the evaluator's scores.",
            objective=(r"$\min_G\max_D\;\mathbb{E}_{x}[\log D(x)]+\mathbb{E}_{z}[\log(1-D(G(z)))]$",
                       r"non-saturating: $\mathcal{L}_G=-\mathbb{E}_z[\log D(G(z))]$"),
            code=("genzoo.models.gan:discriminator_loss", "genzoo.models.gan:generator_loss"),
            paper="Goodfellow et al. 2014, \"Generative adversarial nets\"",
            cpu={"widths": (128, 256, 512)},
            tiny={"widths": (8, 8), "latent_dim": 4},
            captions={"samples/progress.gif": "the generator's samples epoch after epoch",
                      "samples/interpolation.png": "straight paths in the latent space: digits morph smoothly"},
            full_recipe="genzoo train gan --data mnist --epochs 30",
        ),
    ),
    "cgan": Entry(
        target="gan:ConditionalGAN",
        about="conditional GAN: the label enters both networks",
        papers="Mirza & Osindero 2014",
        leaf=DIRECT,
        note="conditional GAN",
        recipes={
            "cpu": Recipe("the conditional GAN for its 30 epochs", train={"epochs": 30}),
            "paper": Recipe("Mirza & Osindero's conditional GAN for its 30 epochs", device="gpu"),
        },
        demo=Demo(
            share=0.11,
            about="A conditional GAN gives both networks the digit label: the generator draws the digit asked for "
                  "and the discriminator judges image and label together. Each row of the samples is one digit; "
                  "the evaluator's conditional accuracy says how often the drawn digit is the requested one.",
            objective=(r"$\min_G\max_D\;\mathbb{E}_{x,y}[\log D(x,y)]+\mathbb{E}_{z,y}[\log(1-D(G(z,y),y))]$",),
            code=("genzoo.models.gan:MLPGenerator.forward", "genzoo.models.gan:generator_loss"),
            paper="Mirza & Osindero 2014, \"Conditional generative adversarial nets\"",
            cpu={"widths": (128, 256, 512)},
            tiny={"widths": (8, 8), "latent_dim": 4},
            captions={"samples/progress.gif": "generation across epochs, one digit a row (the seed's "
                                              "MNIST_cGAN_generation_animation.gif)",
                      "samples/interpolation.png": "latent paths with the label held fixed: one digit, many styles"},
            full_recipe="genzoo train cgan --data mnist --epochs 30",
        ),
    ),
    "dcgan": Entry(
        target="gan:DCGAN",
        about="deep convolutional GAN, optionally class-conditional",
        papers="Radford et al. 2015",
        leaf=DIRECT,
        note="deep convolutional GAN",
        recipes={
            "cpu": Recipe("the DCGAN with InfoGAN's fully connected layers at half width, 20 epochs (every digit at "
                          "its share)", model={"widths": (128, 64), "fc_width": 1024, "d_fc_width": 1024},
                          train={"epochs": 20}),
            "paper": Recipe("Radford et al.'s DCGAN for its 20 epochs", device="gpu"),
        },
        demo=Demo(
            share=0.15,
            about="A deep convolutional GAN uses transposed convolutions in the generator and strided convolutions "
                  "in the discriminator, with batch normalisation, following Radford et al.'s architecture rules. "
                  "The game and the loss are those of the GAN; convolutions share weights across the image, so it "
                  "learns sharp strokes with few parameters.",
            objective=(r"$\mathcal{L}_D=-\mathbb{E}_x[\log D(x)]-\mathbb{E}_z[\log(1-D(G(z)))],\quad "
                       r"\mathcal{L}_G=-\mathbb{E}_z[\log D(G(z))]$",),
            code=("genzoo.models.gan:AdversarialModel.d_losses", "genzoo.models.gan:discriminator_loss"),
            paper="Radford, Metz & Chintala 2016, \"Unsupervised representation learning with deep convolutional "
                  "generative adversarial networks\"",
            cpu={"widths": (64, 32), "latent_dim": 64},
            # twice the updates of the default 128 in the same time: what a short run needs
            cpu_train={"batch_size": 64},
            tiny={"widths": (8, 4), "latent_dim": 4},
            captions={"samples/progress.gif": "samples across epochs (the seed's MNIST_DCGAN_*.png)",
                      "samples/interpolation.png": "straight latent paths"},
            full_recipe="genzoo train dcgan --data mnist --epochs 20 --set widths=128,64 --set fc_width=1024 "
                        "--set d_fc_width=1024",
        ),
    ),
    "ddpm": Entry(
        target="ddpm:DDPM",
        about="denoising diffusion, pixel or latent space; classifier-free guidance, DDIM or ancestral",
        papers="Ho et al. 2020; Nichol & Dhariwal 2021; Song et al. 2021; Ho & Salimans 2022; Rombach et al. 2022",
        leaf=VARIATIONAL,
        note="denoising diffusion (a variational bound; sampled by a Markov chain)",
        recipes={
            "cpu": Recipe("class-conditional latent diffusion: a KL autoencoder to 4x7x7 (first 1,500 steps), then a "
                          "small U-Net, EMA 0.999, 7,000 steps",
                          model={"space": "latent", "noise_schedule": "linear", "widths": (32, 64), "res_blocks": 1,
                                 "ae_widths": (16, 32), "first_stage_steps": 1500, "ema_decay": 0.999},
                          train={"steps": 7_000, "epochs": 0, "batch_size": 128, "lr": 1e-3, "test_images": 1000}),
            "paper": Recipe("pixel-space U-Net (64, 128, 128 channels, dropout 0.1), 40 epochs",
                            model={"widths": (64, 128, 128), "res_blocks": 2, "dropout": 0.1, "ema_decay": 0.9995},
                            train={"epochs": 40, "batch_size": 128, "lr": 2e-4, "warmup_steps": 1000}, device="gpu"),
        },
        demo=Demo(
            share=0.08,
            about="A diffusion model destroys a digit by adding Gaussian noise over T small steps and learns to undo "
                  "one step: a U-Net predicts the noise in x_t. Sampling runs the learned reverse chain from pure "
                  "noise (ancestral), or a shorter deterministic path (DDIM). The label is dropped now and then in "
                  "training, so one network is both conditional and unconditional, and classifier-free guidance "
                  "mixes the two. On a CPU the demo diffuses the 4x7x7 latents of a small autoencoder (latent "
                  "diffusion), which is several times cheaper than pixels.",
            objective=(r"$L=\mathbb{E}_{x_0,t,\epsilon}\,\|\epsilon-\epsilon_\theta(\sqrt{\bar\alpha_t}x_0"
                       r"+\sqrt{1-\bar\alpha_t}\,\epsilon,\ t,\ y)\|^2$",
                       r"$\tilde\epsilon=\epsilon_\theta(x_t,\varnothing)+w\,(\epsilon_\theta(x_t,y)"
                       r"-\epsilon_\theta(x_t,\varnothing))$"),
            code=("genzoo.models.ddpm:DDPM.loss", "genzoo.models.ddpm:DDPM.guided_output"),
            paper="Ho et al. 2020, \"Denoising diffusion probabilistic models\"; Song et al. 2021 (DDIM); "
                  "Ho & Salimans 2022, \"Classifier-free diffusion guidance\"; Rombach et al. 2022 (latent diffusion)",
            cpu={"space": "latent", "noise_schedule": "linear", "widths": (32, 64), "res_blocks": 1,
                 "ae_widths": (16, 32), "first_stage_steps": 150, "ema_decay": 0.995, "sample_steps": 25},
            # One grid, where the budget stops it: epochs are short on the embedded digits, and a grid at every epoch
            # end would take a large part of the slice's training time (docs/results/demo-recipes.md).
            cpu_train={"sample_every": SAMPLE_AT_STOP_ONLY},
            tiny={"widths": (8, 16), "res_blocks": 1, "attn_heads": 2, "timesteps": 50, "sample_steps": 4},
            cpu_samples=200,
            eval_seconds=60.0,
            captions={"samples/reverse_process.png": "x_T (noise, left) to x_0 (right), one digit a row: the reverse "
                                                     "process at work"},
            full_recipe=("OMP_NUM_THREADS=1 python benchmarks/ddpm.py train --recipe latent-cpu-hour "
                         "--data ../shared/data/mnist"),
            cpu_note="A first CPU slice of about a minute trains the first stage (the autoencoder, 150 steps) and "
                     "then only a few dozen diffusion steps; the hour-long CPU recipe reaches 99% conditional accuracy "
                     "(docs/results/diffusion.md).",
        ),
    ),
    "instruct": Entry(
        target="instruct:InstructPix2Pix",
        about="InstructPix2Pix-style editor: a digit and a free-text instruction in, the edited digit out; two "
              "guidance scales",
        papers="Brooks, Holynski & Efros 2023; Ho et al. 2020; Song et al. 2021",
        leaf=VARIATIONAL,
        note="InstructPix2Pix-style editor",
        recipes={
            "cpu": Recipe("latent editor predicting v: diffusion's cpu run (the shipped ddpm, copied, where it was "
                          "trained on the same data with today's settings) gives the first stage and 2,000 semantic "
                          "pairs, then the editor trains 12,000 steps",
                          model={"space": "latent", "widths": (32, 64), "res_blocks": 1, "attn_resolution": 7,
                                 "ae_widths": (16, 32), "first_stage_steps": 400, "ema_decay": 0.999,
                                 "sample_steps": 10, "prediction": "v", "semantic_fraction": 0.1},
                          train={"steps": 12_000, "epochs": 0, "batch_size": 128, "lr": 1e-3, "warmup_steps": 200,
                                 "grad_clip": 1.0, "test_images": 1000},
                          stages=(Stage("ddpm", "ddpm", "cpu"),), pairs=2000),
            "paper": Recipe("the full-size pixel editor for 40 epochs", model={"dropout": 0.1, "ema_decay": 0.9995},
                            train={"epochs": 40, "batch_size": 128, "lr": 2e-4, "warmup_steps": 1000}, device="gpu"),
        },
        demo=Demo(
            share=0.06,
            about="An InstructPix2Pix-style editor: the diffusion U-Net denoises the edited digit while the digit to "
                  "edit is concatenated to its input and a small text encoder's reading of the instruction joins its "
                  "time embedding. It learns from triples made on the fly with exact answers: rotations, flips, "
                  "shifts, scaling, thicker or thinner strokes, inversion, and restoring blurred, half-hidden, "
                  "sketched or noisy digits. Text and image are each dropped now and then in training, so sampling "
                  "can weigh how closely to keep the input (s_I) and how strongly to follow the words (s_T).",
            # the demo's editor predicts v (Salimans & Ho 2022); eq. 3's guidance is the same on v as on eps
            objective=(r"$L=\mathbb{E}\,\|v-v_\theta(z_t,\ t,\ c_I,\ c_T)\|^2,\quad "
                       r"v=\sqrt{\bar\alpha_t}\,\epsilon-\sqrt{1-\bar\alpha_t}\,z_0$",
                       r"$\tilde\epsilon=\epsilon_\theta(z_t,\varnothing,\varnothing)"
                       r"+s_I(\epsilon_\theta(z_t,c_I,\varnothing)-\epsilon_\theta(z_t,\varnothing,\varnothing))"
                       r"+s_T(\epsilon_\theta(z_t,c_I,c_T)-\epsilon_\theta(z_t,c_I,\varnothing))$"),
            code=("genzoo.models.instruct:InstructPix2Pix.triple_loss",
                  "genzoo.models.instruct:InstructPix2Pix.guided_output"),
            paper="Brooks, Holynski & Efros 2023, \"InstructPix2Pix: learning to follow image editing instructions\"; "
                  "Ho et al. 2020 (the U-Net and loss); Song et al. 2021 (DDIM)",
            # The latent editor (more training triples per CPU-second than the pixel one), predicting v (it learns more
            # than eps at equal CPU time): docs/results/instruct.md. Its first stage is fine-tuned from the demo's ddpm
            # run when it has one (150 steps of its own on digits): a first stage from scratch would take most of the
            # slice.
            cpu={"space": "latent", "widths": (32, 64), "res_blocks": 1, "ae_widths": (16, 32),
                 "first_stage_steps": 150, "prediction": "v", "ema_decay": 0.995, "sample_steps": 10},
            # one small grid where the budget stops it: its samples (neither image nor text) are a by-product here
            cpu_train={"sample_every": SAMPLE_AT_STOP_ONLY, "n_grid": 16, "batch_size": 64},
            first_stage_from="ddpm",
            first_stage_steps=30,
            tiny={"widths": (8, 16), "res_blocks": 1, "attn_heads": 2, "timesteps": 50, "sample_steps": 4,
                  "text_dim": 16, "text_layers": 1, "text_heads": 2, "trigram_buckets": 64, "first_stage_steps": 2},
            cpu_samples=200,
            eval_seconds=60.0,
            captions={"edits.png": "one test digit per kind of edit: the input, the editor's output and the exact "
                                   "output, under the instruction it was given"},
            full_recipe="python benchmarks/instruct.py train --recipe cpu-latent --data ../shared/data/mnist",
            cpu_note="A CPU slice of about a minute trains the latent editor for a few hundred steps (its first "
                     "stage comes from the demo's ddpm run): its edits are rough. docs/results/instruct.md has the "
                     "figures of the full CPU recipe (80 minutes on one core) and of its text-blind baseline.",
        ),
    ),
}

NAMES = tuple(MODELS)


def listing() -> str:
    """`genzoo list`: one line per model, its name, what it is and its papers."""
    return "\n".join(f"{name:9s} {entry.about} ({entry.papers})" for name, entry in MODELS.items())


def taxonomy() -> tuple[str, list[Any]]:
    """The taxonomy as a tree: (heading, children), a child a heading node or a model name; the leaves in the
    order of LEAVES, the models of a leaf in the table's order. A leaf without a model is left out."""
    root: tuple[str, list[Any]] = (TAXONOMY_ROOT, [])
    for leaf in LEAVES:
        models = [name for name, entry in MODELS.items() if entry.leaf == leaf]
        if not models:
            continue
        node = root
        for heading in leaf:
            node = next((c for c in node[1] if not isinstance(c, str) and c[0] == heading), None) or \
                _append(node, (heading, []))
        node[1].extend(models)
    return root


def _append(node: tuple[str, list[Any]], child: tuple[str, list[Any]]) -> tuple[str, list[Any]]:
    node[1].append(child)
    return child
