"""TRACT against ground truth: distill an exact 2-D teacher into a 1-step sampler.

The teacher is the exact denoiser of a mixture of 8 Gaussians on a circle
(`GaussianMixtureDenoiser`), sampled with EDM's 40-level Heun solver (79
evaluations). TRACT with time schedule (40, 1) trains a small MLP student; the
table compares it with the naive teacher at the same number of steps.

Usage:
    KERAS_BACKEND=jax python tools/exact_teacher_2d.py [--steps=3000] [--batch=256]
"""

import time

import cli
from absl import flags

flags.DEFINE_integer("steps", 3000, "Optimizer steps.", lower_bound=1)
flags.DEFINE_integer("batch", 256, "Batch size.", lower_bound=1)
flags.DEFINE_integer("samples", 4000, "Samples per row of the table.", lower_bound=2)
flags.DEFINE_integer("seed", 0, "Random seed.")
FLAGS = flags.FLAGS


def frechet_distance(a, b):
    """Frechet distance between Gaussians fitted to two sample sets (float64)."""
    import numpy as np
    import scipy.linalg

    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * root))


def main(_):
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_tract as kt

    keras.utils.set_random_seed(FLAGS.seed)
    angles = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    means = 0.7 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    teacher = kt.GaussianMixtureDenoiser(means, np.full(8, 0.05), np.ones(8))
    schedule = kt.KarrasSchedule(40)

    rng = np.random.default_rng(FLAGS.seed)
    def data(n):
        return (means[rng.integers(0, 8, n)] + 0.05 * rng.standard_normal((n, 2))).astype("float32")

    student = kt.EDMPrecond(kt.networks.MLPNetwork(hidden=128, depth=3))
    student(np.zeros((1, 2), "float32"), np.ones((1,), "float32"))
    distiller = kt.TRACTDistiller(teacher, student, schedule, time_schedule=(40, 1),
                                  steps_per_phase=FLAGS.steps, seed=FLAGS.seed)
    lr = keras.optimizers.schedules.CosineDecay(3e-3, FLAGS.steps)
    distiller.compile(optimizer=keras.optimizers.Adam(lr, epsilon=1e-8))
    dataset = tf.data.Dataset.from_tensor_slices(data(200_000)).shuffle(20_000, seed=FLAGS.seed)
    dataset = dataset.repeat().batch(FLAGS.batch, drop_remainder=True).prefetch(2)
    print(f"Distilling with TRACT (40, 1) on {keras.config.backend()}: {FLAGS.steps} steps "
          f"of batch {FLAGS.batch}")
    start = time.time()
    distiller.fit(dataset, epochs=1, steps_per_epoch=FLAGS.steps, verbose=2)
    seconds = time.time() - start

    noise = np.random.default_rng(FLAGS.seed + 1).standard_normal((FLAGS.samples, 2)).astype("float32")
    real = data(FLAGS.samples)
    as_np = lambda x: np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)  # noqa: E731
    reference = as_np(kt.sample(teacher, schedule, noise))
    rows = [("teacher, Heun 40 steps", 79, reference)]
    for steps in (1, 2):
        rows.append((f"teacher, DDIM {steps} step{'s' * (steps > 1)}", steps,
                     as_np(kt.sample(teacher, schedule, noise, steps=steps, solver="ddim"))))
    for steps in (1, 2):
        rows.append((f"TRACT student, {steps} step{'s' * (steps > 1)}", steps,
                     as_np(distiller.generate(noise, steps=steps))))

    print(f"\nTraining took {seconds:.1f} s. Distances on {FLAGS.samples} samples from the same noise:")
    print(f"{'sampler':<26} {'NFE':>4} {'FD to data':>11} {'RMSE to teacher':>16}")
    for name, nfe, x in rows:
        rmse = np.sqrt(np.mean(np.sum((x - reference) ** 2, axis=-1)))
        print(f"{name:<26} {nfe:>4} {frechet_distance(x, real):>11.4f} {rmse:>16.4f}")


if __name__ == "__main__":
    cli.run(main)
