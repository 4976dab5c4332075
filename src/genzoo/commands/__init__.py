"""Run-level commands: what each `genzoo` verb does, as library functions the CLI calls in one line.

Each function takes typed arguments (the CLI parses strings), opens the run folder it is given, asks the model
for tensors or figures, and writes the files; it returns what the CLI prints (a path, or a text). Models never
import this package: they compute, these modules write. One module a job:

- `train_run`: `genzoo train` (settings, named recipes and their stages);
- `drawing`: the drawing verbs (`sample`, `reverse_process`, `reconstruct`, `denoise`, `interpolate`,
  `complete`), the sample arrays of any size, the row pictures;
- `digits`: `load_digit`, a digit from an image file;
- `editing`: `edit` and `edit_sweep`, the editor's verb and its figure;
- `pairs`: `semantic_pairs`, the editor's semantic training pairs from a diffusion run;
- `evaluating`: `evaluate`, the evaluation's metrics as text;
- `mixture_demo`: `gmm_demo`, a Gaussian mixture on 2-D clusters.

`genzoo.commands.sample(run, 64, label=3)` and the like name them from here.
"""

from .digits import load_digit
from .drawing import (
    check_picture,
    complete,
    denoise,
    draw_in_batches,
    given,
    interpolate,
    output_name,
    reconstruct,
    reverse_process,
    sample,
    sample_labels,
    stream_arrays,
)
from .editing import edit, edit_sweep, grid_figure
from .evaluating import evaluate
from .mixture_demo import anisotropic_clusters, gmm_demo, mixture_figure
from .pairs import semantic_pairs
from .train_run import recipe_stages, split_sets, train

__all__ = [
    "anisotropic_clusters", "check_picture", "complete", "denoise", "draw_in_batches", "edit", "edit_sweep",
    "evaluate", "given", "gmm_demo", "grid_figure", "interpolate", "load_digit", "mixture_figure", "output_name",
    "recipe_stages", "reconstruct", "reverse_process", "sample", "sample_labels", "semantic_pairs", "split_sets",
    "stream_arrays", "train",
]
