"""The parts of the one trainer; `genzoo.trainer.train` is its entry point.

- loop.py: a training session: batch, step, log, epoch end, checkpoint, then the pictures;
- batches.py: the training batches, cut on the device in a seeded order per epoch;
- outputs.py: an epoch end's sample grid and test pass;
- checkpoint.py: checkpoint.pt and model.safetensors, written atomically by rank 0, with every rank's RNG;
- logwindow.py: the values of the steps since the last log line, read from the device in one sync;
- signals.py: SIGINT/SIGTERM end training after the step in progress, and a slow phase after it at once;
- devices.py: the device, data-parallel ranks, the autocast choice and the RNG fork;
- schedule.py: steps per epoch and per run, and the learning rate of each step;
- progress.py: the progress bars on stderr.
"""


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss or weight, an unusable resume)."""
