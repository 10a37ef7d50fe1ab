"""Preemption: a SIGTERM stops training at a step every process agrees on, to checkpoint there.

Schedulers (SLURM, Kubernetes, cloud GPU and TPU pools) preempt a job with SIGTERM and kill it
a grace period later. Inside `Preemption()`, one process takes SIGTERM itself: the next step
boundary stops `fit()`. With several JAX processes, JAX's distributed runtime takes SIGTERM
(sent to any one process or to all), tells every process, and they agree on the first step
that all of them can still reach (`jax.experimental.multihost_utils.reached_preemption_sync_point`),
so the checkpoint written there is the same for all. `keras_tract.experiment.Run` writes that
checkpoint and raises `Preempted`; `tools/train.py` then exits with `EXIT_PREEMPTED`.
"""

import signal
import threading

import keras

from keras_tract import backend

EXIT_PREEMPTED = 75  # EX_TEMPFAIL (sysexits.h): stopped on a preemption notice, checkpointed, resumable


class Preempted(Exception):
    """Training stopped on a preemption notice at `step`, after writing `checkpoint`; rerunning resumes."""

    def __init__(self, step, checkpoint):
        super().__init__(f"Preempted at step {step}: the checkpoint {checkpoint} holds it; rerun the same command "
                         "to resume.")
        self.step, self.checkpoint = step, checkpoint


class Preemption:
    """A scope in which a preemption notice stops training at a step boundary.

    `reached(step)` must be called after every training step (`callback()` does it from `fit()`);
    it turns True at the step where every process stops, which `step` then records.

    Example:
    ```python
    with Preemption() as preemption:
        model.fit(dataset, steps_per_epoch=1000, callbacks=[preemption.callback()])
        if preemption.step is not None:
            model.save("checkpoint.keras")
    ```
    """

    def __init__(self):
        self.step = None
        self._notice = False
        self._previous = None

    def __enter__(self):
        # Several JAX processes: the distributed runtime owns SIGTERM and agrees on the step.
        if backend.process_count() == 1 and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def __exit__(self, *exc_info):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _on_sigterm(self, signum, frame):
        del signum, frame
        self._notice = True

    def reached(self, step):
        """Whether training stops after `step` (the global step count, given after every step)."""
        hit = backend.reached_preemption_sync_point(step) if backend.process_count() > 1 else self._notice
        if hit and self.step is None:
            self.step = int(step)
        return hit

    def callback(self, start_step=0):
        """A Keras callback that stops `fit()` at the agreed step; `start_step`: the steps before this `fit()`."""
        return _StopOnPreemption(self, start_step)


class _StopOnPreemption(keras.callbacks.Callback):
    def __init__(self, preemption, start_step):
        super().__init__()
        self.preemption, self.start_step = preemption, int(start_step)

    def on_train_batch_end(self, batch, logs=None):
        if self.preemption.reached(self.start_step + batch + 1):
            self.model.stop_training = True
