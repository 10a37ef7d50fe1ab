"""Training callbacks: TensorBoard scalars and a progress line on the global step, and a stop on divergence.

Scalars are written with `tf.summary.write` and the scalar plugin's metadata, which
TensorFlow itself provides, so logging needs no `tensorboard` package (viewing does).
"""

import collections
import time

import keras
import numpy as np


def _scalar_metadata():
    from tensorflow.core.framework import summary_pb2

    return summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))


def write_scalars(logdir, step, scalars):
    """Writes `{name: float}` to the TensorBoard folder `logdir` at `step` (for values made outside `fit()`)."""
    import tensorflow as tf

    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default(step=step):
        for name, value in scalars.items():
            tf.summary.write(name, tf.constant(value, tf.float32), metadata=_scalar_metadata())
    writer.close()


class ScalarLogger(keras.callbacks.Callback):
    """Writes the step logs, the learning rate and images per second to TensorBoard every `every` steps.

    Args:
        logdir: the summary folder.
        every: steps between writes.
        batch_size: global batch, for images per second.
        start_step: the global step before this `fit()` call.
    """

    def __init__(self, logdir, every, batch_size, start_step=0):
        super().__init__()
        self.logdir, self.every, self.batch_size, self.start_step = logdir, int(every), batch_size, start_step
        self._writer = None

    def on_train_begin(self, logs=None):
        import tensorflow as tf

        self._writer = tf.summary.create_file_writer(self.logdir)
        self._metadata = _scalar_metadata()
        self._clock = (self.start_step, time.perf_counter())

    def on_train_batch_end(self, batch, logs=None):
        step = self.start_step + batch + 1
        if step % self.every:
            return
        import tensorflow as tf

        last_step, last_time = self._clock
        now = time.perf_counter()
        self._clock = (step, now)
        scalars = {k: float(np.asarray(v)) for k, v in (logs or {}).items() if np.size(v) == 1}
        scalars["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        scalars["images_per_second"] = (step - last_step) * self.batch_size / max(now - last_time, 1e-9)
        with self._writer.as_default(step=step):
            for name, value in scalars.items():
                tf.summary.write(name, tf.constant(value, tf.float32), metadata=self._metadata)
        self._writer.flush()

    def on_train_end(self, logs=None):
        self._writer.close()


class StopOnDivergence(keras.callbacks.Callback):
    """Stops `fit()` with a `FloatingPointError` once `limit` of the last `window` steps were skipped.

    A trainer skips a step whose loss or gradients are not finite (its `skipped` log counts them);
    an occasional skip is harmless, a run of them means training has diverged.

    Args:
        limit: skipped steps within the window that stop training.
        window: the number of most recent steps looked at.
    """

    def __init__(self, limit=5, window=10):
        super().__init__()
        if not 1 <= limit <= window:
            raise ValueError(f"`limit` must be in [1, window={window}], got limit={limit!r}.")
        self.limit, self.window = int(limit), int(window)

    def on_train_begin(self, logs=None):
        skipped = getattr(self.model, "skipped_steps", None)
        self._recent = collections.deque(maxlen=self.window)
        self._last = None if skipped is None else int(keras.ops.convert_to_numpy(skipped))

    def on_train_batch_end(self, batch, logs=None):
        if not logs or "skipped" not in logs:
            return
        skipped = int(np.asarray(logs["skipped"]))
        self._recent.append(self._last is not None and skipped > self._last)
        self._last = skipped
        if sum(self._recent) >= self.limit:
            raise FloatingPointError(
                f"Training diverged: {sum(self._recent)} of the last {len(self._recent)} steps had a non-finite loss "
                f"or gradient and were skipped ({skipped} skipped in all); lower the learning rate or check the data.")


class Progress(keras.callbacks.Callback):
    """Prints one line every `every` steps against the whole run: step, loss, skipped steps,
    images per second and the time left (the chunked `fit()` calls of a run share one count).

    Args:
        name: what is trained (`"distill"`, `"teacher"`).
        total: the run's total steps. every: steps between lines.
        batch_size: global batch, for images per second.
        start_step: the global step before this `fit()` call.
    """

    def __init__(self, name, total, every, batch_size, start_step=0):
        super().__init__()
        self.name, self.total, self.every = name, int(total), int(every)
        self.batch_size, self.start_step = batch_size, int(start_step)

    def on_train_begin(self, logs=None):
        self._clock = (self.start_step, time.perf_counter())

    def on_train_batch_end(self, batch, logs=None):
        step = self.start_step + batch + 1
        if step % self.every and step != self.total:
            return
        last_step, last_time = self._clock
        now = time.perf_counter()
        self._clock = (step, now)
        rate = (step - last_step) / max(now - last_time, 1e-9)
        left = (self.total - step) / max(rate, 1e-9)
        logs = logs or {}
        print(f"{self.name} step {step}/{self.total} ({100 * step / self.total:.0f}%)  "
              f"loss {float(np.asarray(logs.get('loss', np.nan))):.4g}  "
              f"skipped {int(np.asarray(logs.get('skipped', 0)))}  {rate * self.batch_size:.0f} images/s  "
              f"{int(left) // 60}:{int(left) % 60:02d} left", flush=True)
