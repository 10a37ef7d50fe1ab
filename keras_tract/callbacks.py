"""Training callbacks: TensorBoard scalars on the global step.

Scalars are written with `tf.summary.write` and the scalar plugin's metadata, which
TensorFlow itself provides, so logging needs no `tensorboard` package (viewing does).
"""

import time

import keras
import numpy as np


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
        from tensorflow.core.framework import summary_pb2

        self._writer = tf.summary.create_file_writer(self.logdir)
        self._metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
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
