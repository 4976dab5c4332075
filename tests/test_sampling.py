"""genzoo.sampling.sample_in_batches: the one batched-sampling loop of the commands, the scoring and the grids."""

from __future__ import annotations

import torch

from genzoo import sampling
from genzoo.commands.drawing import draw_in_batches
from genzoo.evaluation.scoring import draw_timed


class Recording:
    """A stand-in model: records each `sample` call and draws uniform images from the generator it is given."""

    conditional, device, training, name = True, torch.device("cpu"), True, "recording"

    def __init__(self):
        self.calls = []

    def sample(self, n, *, y=None, generator=None, **options):
        self.calls.append((n, None if y is None else y.tolist(), generator, options, torch.is_grad_enabled()))
        return torch.rand(n, 1, 28, 28, generator=generator)

    def default_labels(self, n):
        return torch.arange(n) % 10

    def eval(self):
        self.training = False

    def train(self, mode=True):
        self.training = mode


def test_batches_slice_the_labels_share_one_generator_and_pass_the_options():
    model, g = Recording(), torch.Generator().manual_seed(0)
    labels = torch.arange(7) % 10
    batches = sampling.sample_in_batches(model, 7, labels=labels, generator=g, batch_size=3, options={"steps": 5})
    first = next(batches)
    assert torch.is_grad_enabled()  # between two batches the caller's code keeps its own grad mode
    batches = [first, *batches]
    assert [len(b) for b in batches] == [3, 3, 1]
    assert [c[0] for c in model.calls] == [3, 3, 1] and [c[1] for c in model.calls] == [[0, 1, 2], [3, 4, 5], [6]]
    assert all(c[2] is g and c[3] == {"steps": 5} and not c[4] for c in model.calls)  # one generator, no autograd
    whole = torch.rand(7, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.cat(batches), whole)  # the same draws as one call of the whole count, for this sampler


def test_the_commands_and_the_scoring_draw_through_it_with_the_module_batch(monkeypatch):
    monkeypatch.setattr(sampling, "SAMPLE_BATCH", 4)
    model = Recording()
    images, labels = draw_in_batches(model, 10, None, torch.Generator().manual_seed(1), {})
    assert images.dtype == torch.uint8 and images.shape == (10, 1, 28, 28) and labels.tolist() == list(range(10))
    assert [c[0] for c in model.calls] == [4, 4, 2]
    model = Recording()
    samples, seconds = draw_timed(model, 5, torch.arange(5), seed=2, batch_size=2, sample_options=None,
                                  on_batch=None)
    assert samples.shape == (5, 1, 28, 28) and seconds >= 0 and model.training  # training mode put back
    assert [c[0] for c in model.calls] == [2, 2, 1]
    assert torch.equal(samples, torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(2)))
