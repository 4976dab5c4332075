"""How genzoo scores a model, one module a job:

- `evaluator`: the one fixed evaluator network (an MNIST classifier whose features every sample-quality figure is
  computed in), its pinned asset and how to rebuild it;
- `scoring`: a model's or a sample set's quality in that feature space (`model_sample_quality`, `sample_quality`),
  the real digits' features cached on disk;
- `evaluate`: `genzoo evaluate RUN`, every metric that applies to a run's model, fitted to a time budget or to the
  paper's protocol, written to RUN/metrics.json;
- `leaderboard`: which metrics.json entries are compared, and which rows may be ranked together.

The figures themselves (Fréchet distance, precision and recall, bits/dim, PSNR, ...) are plain functions of tensors
in `genzoo.metrics`, low enough for models to import; nothing under models/ imports this package.
"""
