"""Three TRACT steps on one device, then data-parallel on two; prints the differences as JSON.

Run as `KERAS_BACKEND=jax XLA_FLAGS=--xla_force_host_platform_device_count=2 python tests/helpers/data_parallel.py`
(`keras.distribution.DataParallel`) or `KERAS_BACKEND=tensorflow python tests/helpers/data_parallel.py`
(`tf.distribute.MirroredStrategy` over two logical CPUs); used by test_scaling.py.
"""

import json
import os
import sys

import keras
import numpy as np

if keras.config.backend() == "tensorflow":
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    DEVICES = [d.name for d in tf.config.list_logical_devices("CPU")]
else:
    DEVICES = keras.distribution.list_devices()

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from helpers.common import circle_mixture, mlp_student  # noqa: E402
from keras_tract import GaussianMixtureDenoiser, KarrasSchedule, TRACTDistiller, backend  # noqa: E402

CASES = {"micro_batches_1": (1, None), "micro_batches_2_clipped": (2, 0.1)}


def train(micro_batches, global_clipnorm):
    distiller = TRACTDistiller(GaussianMixtureDenoiser(*circle_mixture()), mlp_student(seed=1), KarrasSchedule(40),
                               (40, 8, 1), steps_per_phase=2, micro_batches=micro_batches, seed=3)
    # SGD: an update linear in the gradient (Adam's first steps magnify float32 rounding).
    distiller.compile(optimizer=keras.optimizers.SGD(0.05, global_clipnorm=global_clipnorm))
    x = np.random.default_rng(0).uniform(-0.9, 0.9, (24, 2)).astype("float32")
    loss = distiller.fit(x, batch_size=8, epochs=1, shuffle=False, verbose=0).history["loss"][-1]
    return loss, [keras.ops.convert_to_numpy(v) for v in distiller.variables], distiller


def main():
    initial = mlp_student(seed=1).get_weights()[0]
    single = {name: train(1, clip) for name, (_, clip) in CASES.items()}
    result = {"devices": DEVICES}
    with backend.data_parallel(DEVICES):
        for name, (micro_batches, clip) in CASES.items():
            loss, weights, distiller = single[name]
            parallel_loss, parallel_weights, parallel = train(micro_batches, clip)
            result[name] = {
                "replicas": backend.num_replicas(), "loss": loss, "parallel_loss": parallel_loss,
                "max_weight_difference": max(float(np.abs(a - b).max()) for a, b in zip(weights, parallel_weights)),
                "student_moved": float(np.abs(distiller.student.get_weights()[0] - initial).max()),
                "kernel": (lambda v: f"{type(v).__name__} {getattr(v, 'sharding', '')}")(
                    parallel.student.trainable_variables[0].value),
            }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
