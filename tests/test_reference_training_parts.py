"""The trainer's parts against plain computations written out here: the steps of an epoch and a run, the
learning rate of each step (linear warm-up, then constant or cosine), which examples each step sees (a seeded
permutation per epoch, cut into batches, dealt to the ranks), and what a checkpoint gives back on resume (the
weights, the optimizer state, the random stream, the step, the elapsed time and the log window)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from genzoo.data import Dataset, binarize
from genzoo.models.base import GenerativeModel
from genzoo.train_config import TrainConfig
from genzoo.training import TrainingError
from genzoo.training.batches import Batches
from genzoo.training.checkpoint import Checkpoints
from genzoo.training.devices import Distributed
from genzoo.training.logwindow import LogWindow
from genzoo.training.loop import Loop
from genzoo.training.schedule import LearningRates, epoch_steps, lr_factor, total_steps


def plain_rate(step: int, warmup: int, schedule: str, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return (1 + math.cos(math.pi * progress)) / 2


@pytest.mark.parametrize("warmup", [0, 1, 4])
@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_the_rate_of_every_step_matches_warmup_then_the_schedule(warmup, schedule):
    total = 13
    factor = lr_factor(TrainConfig(schedule=schedule, warmup_steps=warmup), total)
    for step in range(total + 3):  # past the end too: a cosine run stays at 0
        assert factor(step) == pytest.approx(plain_rate(step, warmup, schedule, total), abs=1e-12), step
    # a run no longer than its warm-up: the cosine's progress is over a span of at least one step
    short = lr_factor(TrainConfig(schedule="cosine", warmup_steps=5), 5)
    assert short(5) == pytest.approx(1.0) and short(6) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(("batch_size", "n_train", "per_epoch"), [(4, 10, 2), (4, 12, 3), (64, 10, 1), (10, 10, 1)])
def test_steps_per_epoch_drop_the_remainder_and_a_run_counts_steps_or_epochs(batch_size, n_train, per_epoch):
    assert epoch_steps(TrainConfig(batch_size=batch_size), n_train) == per_epoch
    assert total_steps(TrainConfig(batch_size=batch_size, epochs=3, steps=0), n_train) == 3 * per_epoch
    assert total_steps(TrainConfig(batch_size=batch_size, epochs=3, steps=7), n_train) == 7


def test_learning_rates_set_each_group_from_its_own_base_rate():
    a, b, c = (torch.nn.Parameter(torch.zeros(2)) for _ in range(3))
    first = torch.optim.SGD([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.02}])
    second = torch.optim.SGD([c], lr=0.5)
    total, warmup = 9, 3
    rates = LearningRates({"g": first, "d": second}, TrainConfig(schedule="cosine", warmup_steps=warmup), total)
    for step in (0, 2, 5, 1, 8):  # in any order: a rate follows from the step alone, never from the last rate
        rates.set(step)
        f = plain_rate(step, warmup, "cosine", total)
        assert [g["lr"] for g in first.param_groups] == pytest.approx([0.1 * f, 0.02 * f], abs=1e-15)
        assert second.param_groups[0]["lr"] == pytest.approx(0.5 * f, abs=1e-15)
        assert rates.current() == first.param_groups[0]["lr"]
    assert LearningRates({}, TrainConfig(), total).current() == 0.0


def numbered(n: int) -> Dataset:
    """Image i holds the value i / 100 everywhere, label i: a batch names the examples it holds."""
    x = (torch.arange(n, dtype=torch.float32) / 100).view(n, 1, 1, 1).expand(n, 1, 28, 28).contiguous()
    y = torch.arange(n)
    return Dataset("numbered", "test", x, y, x[:2], y[:2])


@pytest.mark.parametrize(("rank", "world"), [(0, 1), (0, 2), (1, 2)])
def test_each_step_takes_its_slice_of_a_seeded_permutation_per_epoch(rank, world):
    n, size, seed = 10, 4, 7
    batches = Batches(numbered(n), TrainConfig(batch_size=size), torch.device("cpu"),
                      SimpleNamespace(rank=rank, world=world), seed, binary=False)
    assert batches.per_epoch == 2 and batches.size == size
    for step in (0, 1, 2, 3, 4, 1, 0):  # epochs 0, 1, 2 and back: the order is a function of seed and epoch
        epoch, position = step // 2, step % 2
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        expected = order[position * size:(position + 1) * size][rank::world]
        x, y = batches.at(step)
        assert torch.equal(y, expected), step
        assert torch.equal(x, numbered(n).train_x[expected]), step
    assert not torch.equal(batches.order(0), batches.order(1))
    # a resumed run's first batch may lie in a later epoch
    resumed = Batches(numbered(n), TrainConfig(batch_size=size), torch.device("cpu"),
                      SimpleNamespace(rank=rank, world=world), seed, binary=False)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + 1))
    assert torch.equal(resumed.at(3)[1], order[size:2 * size][rank::world])


def test_binary_batches_are_drawn_from_the_global_stream():
    data = numbered(10)
    batches = Batches(data, TrainConfig(batch_size=4), torch.device("cpu"), SimpleNamespace(rank=0, world=1), 3,
                      binary=True)
    torch.manual_seed(11)
    x, y = batches.at(1)
    torch.manual_seed(11)
    assert torch.equal(x, binarize(data.train_x[y]))
    assert set(x.unique().tolist()) <= {0.0, 1.0}


def test_a_batch_that_the_ranks_cannot_share_is_refused():
    with pytest.raises(TrainingError, match=r"^batch_size=5 must be divisible by the 2 processes$"):
        Batches(numbered(10), TrainConfig(batch_size=5), torch.device("cpu"), SimpleNamespace(rank=0, world=2), 0,
                binary=False)


def test_a_restored_checkpoint_gives_back_weights_optimizer_stream_step_time_and_window(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizers = {"model": torch.optim.Adam(model.parameters(), lr=0.1)}
    for _ in range(2):
        optimizers["model"].zero_grad()
        model(torch.randn(4, 3)).pow(2).sum().backward()
        optimizers["model"].step()
    window = LogWindow()
    window.add(5, {"loss": torch.tensor(2.5)}, images=4)
    window.settle()
    checkpoints = Checkpoints(tmp_path, Distributed(torch.device("cpu")), torch.device("cpu"), seed=0)
    assert checkpoints.step == -1
    checkpoints.save(model, optimizers, step=5, elapsed=12.5, window=window)
    assert checkpoints.step == 5
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    saved_opt = optimizers["model"].state_dict()
    saved_moments = {k: {n: t.clone() for n, t in s.items()} for k, s in saved_opt["state"].items()}
    on_disk = load_file(str(tmp_path / "model.safetensors"))
    assert on_disk.keys() == saved.keys() and all(torch.equal(on_disk[k], saved[k]) for k in saved)
    next_draw = torch.rand(5)  # what an uninterrupted run draws next

    # the run goes on (weights, moments and stream move), then is resumed into fresh objects
    optimizers["model"].zero_grad()
    model(torch.randn(4, 3)).pow(2).sum().backward()
    optimizers["model"].step()
    fresh = torch.nn.Linear(3, 2)
    fresh_opts = {"model": torch.optim.Adam(fresh.parameters(), lr=0.1)}
    fresh_window = LogWindow()
    resumed = Checkpoints(tmp_path, Distributed(torch.device("cpu")), torch.device("cpu"), seed=0)
    assert resumed.restore(fresh, fresh_opts, fresh_window) == (5, 12.5)
    assert resumed.step == 5
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, saved[key]), key
    state = fresh_opts["model"].state_dict()["state"]
    assert state.keys() == saved_moments.keys()
    for key, moments in saved_moments.items():
        for name, tensor in moments.items():
            assert torch.equal(state[key][name], tensor), (key, name)
    assert torch.equal(torch.rand(5), next_draw)
    assert (fresh_window.sums, fresh_window.steps, fresh_window.images) == ({"loss": 2.5}, 1, 4)

    # without a window the checkpoint holds none, and a window restored from it keeps its own
    bare = Checkpoints(tmp_path / "bare", Distributed(torch.device("cpu")), torch.device("cpu"), seed=0)
    (tmp_path / "bare").mkdir()
    bare.save(model, optimizers, step=1, elapsed=0.5)
    assert "log_window" not in torch.load(tmp_path / "bare" / "checkpoint.pt", weights_only=True)
    untouched = LogWindow()
    assert bare.restore(fresh, fresh_opts, untouched) == (1, 0.5)
    assert (untouched.sums, untouched.steps) == ({}, 0)


def test_resume_without_a_checkpoint_says_so(tmp_path):
    checkpoints = Checkpoints(tmp_path, Distributed(torch.device("cpu")), torch.device("cpu"), seed=0)
    message = f"{tmp_path / 'checkpoint.pt'}: no checkpoint to resume from; start the run again without --resume"
    with pytest.raises(TrainingError, match=f"^{message.replace('.', '[.]')}$"):
        checkpoints.restore(torch.nn.Linear(3, 2), {})


def test_a_checkpoint_of_two_processes_resumed_by_one_draws_afresh_from_seed_and_step(tmp_path, capsys):
    model = torch.nn.Linear(3, 2)
    torch.manual_seed(5)
    mine = torch.get_rng_state()
    other = torch.Generator().manual_seed(6).get_state()
    two = SimpleNamespace(rank=0, world=2, main=True, enabled=True,
                          gather=lambda state: [state, {"torch": other}])
    Checkpoints(tmp_path, two, torch.device("cpu"), seed=3).save(model, {}, step=4, elapsed=1.0)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert [torch.equal(s["torch"], t) for s, t in zip(state["rng_ranks"], (mine, other))] == [True, True]
    assert torch.equal(state["rng"]["torch"], mine)

    torch.manual_seed(0)
    one = Checkpoints(tmp_path, Distributed(torch.device("cpu")), torch.device("cpu"), seed=3)
    assert one.restore(model, {}) == (4, 1.0)
    drawn = torch.rand(4)
    torch.manual_seed(3 + 0 + 1_000_003 * 4)  # seed + rank + 1_000_003 * step: neither rank's stream
    assert torch.equal(drawn, torch.rand(4))
    said = capsys.readouterr().err
    assert f"genzoo: {tmp_path / 'checkpoint.pt'} holds the random state of 2 process(es), not 1:" in said


@dataclass
class OwnStepConfig:
    pass


class OwnStep(GenerativeModel):
    """A model with its own training step (as the GAN and the RBM have): it records what the trainer hands it."""

    name = "own-step-reference"
    Config = OwnStepConfig
    training_mode = "step"

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        self.w = torch.nn.Parameter(torch.zeros(2))
        self.calls = []

    def train_step(self, x, y, optimizers, *, step, autocast):
        self.calls.append((x, y, optimizers, step, autocast))
        return {"loss": torch.tensor(float(step))}

    def sample(self, n, *, y=None, generator=None):
        return self.rand(n, 1, 28, 28, generator=generator)


def five_step_loop(model, run_dir) -> Loop:
    """The trainer's loop over 10 numbered digits in batches of 4 for 5 steps, on the CPU, with no grids or tests."""
    return Loop(model, TrainConfig(batch_size=4, steps=5, epochs=0, sample_every=0, test_every=0), numbered(10),
                run_dir, torch.device("cpu"), 0, Distributed(torch.device("cpu")), False)


def test_a_model_with_its_own_step_gets_the_batch_its_optimizers_the_step_and_the_autocast(tmp_path):
    model = OwnStep()
    loop = five_step_loop(model, tmp_path)
    loop.step = 3
    x, y = loop.batches.at(3)
    out = loop.train_step(x, y)
    ((got_x, got_y, got_optimizers, got_step, got_autocast),) = model.calls
    assert got_x is x and got_y is y and got_optimizers is loop.optimizers and got_step == 3
    assert got_autocast is loop.autocast and out == {"loss": torch.tensor(3.0)}


class Recorder(GenerativeModel):
    """A gradient-trained model that records the labels and step its loss is given; `u` takes part in step 0 only."""

    name = "recorder-reference"
    Config = OwnStepConfig

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        self.w = torch.nn.Parameter(torch.ones(2))
        self.u = torch.nn.Parameter(torch.ones(2))
        self.seen = []

    def loss(self, x, y=None, *, step=None):
        self.seen.append((y, step))
        loss = (self.w * x.mean()).sum() + (self.u.sum() if step == 0 else 0.0)
        return {"loss": loss}

    def sample(self, n, *, y=None, generator=None):
        return self.rand(n, 1, 28, 28, generator=generator)


def test_the_loss_gets_labels_and_step_and_a_parameter_left_out_of_a_step_stays_put(tmp_path):
    model = Recorder()
    loop = five_step_loop(model, tmp_path)
    labels = []
    for step in (0, 1, 2):
        loop.step = step
        x, y = loop.batches.at(step)
        labels.append(y)
        loop.train_step(x, y)
        if step == 0:
            u_after_first, w_after_first = model.u.detach().clone(), model.w.detach().clone()
    assert [s for _, s in model.seen] == [0, 1, 2]
    assert all(got is want for (got, _), want in zip(model.seen, labels))
    # the gradients are set to None before each step: Adam leaves a parameter without one where it is, where a
    # zeroed gradient would move it on its momentum
    assert torch.equal(model.u.detach(), u_after_first) and not torch.equal(model.w.detach(), w_after_first)
