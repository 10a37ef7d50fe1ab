"""Cost of a TRACT step and an EDM teacher step in units of one student forward pass, sampling and input throughput.

For each preset (random weights, compiled as `fit()` and `sample()` compile on the current backend):
  forward   one compiled student evaluation at the batch (= 1-step sampling)
  tract     one TRACTDistiller train step (Heun teacher: 2 evaluations, self-teacher: 1, student fwd+bwd)
  edm       one EDMTrainer train step (student fwd+bwd)
and the ratios tract/forward (floor about 6) and edm/forward (floor about 3); then 1- and 2-step
sampling throughput and the tf.data pipeline's images per second.

Usage (one backend per process):
    for b in jax tensorflow torch; do KERAS_BACKEND=$b python benchmarks/step_cost.py; done
"""

import time

from absl import app, flags

flags.DEFINE_list("presets", ["ddpmpp_small:16", "ddpmpp_cifar10:8"], "preset:batch pairs (32x32x3 images).")
flags.DEFINE_integer("steps", 5, "Timed train steps (after the compiling first call).")
FLAGS = flags.FLAGS


def timed(fn, repeats):
    """Seconds per call of `fn` after one warm-up (compiling) call."""
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def measure(name, batch, rng):
    """`(forward, two_step, tract, edm)` seconds for one preset at one batch."""
    import keras
    import numpy as np

    import keras_tract as kt
    from keras_tract.ema import clone

    x = rng.uniform(-1, 1, (batch * (FLAGS.steps + 1), 32, 32, 3)).astype("float32")
    teacher = kt.EDMPrecond(kt.networks.get(name, dropout=0.0))
    teacher(x[:1], np.ones((1,), "float32"))
    schedule = kt.KarrasSchedule(40)
    noise = rng.standard_normal((batch, 32, 32, 3)).astype("float32")

    def copy(label):
        model = clone(teacher, label)
        model.trainable = True
        return model

    def sampler(steps):
        return lambda: keras.ops.convert_to_numpy(kt.sample(teacher, schedule, noise, steps=steps, solver="ddim"))

    def train_step_seconds(model):
        model.compile(optimizer=keras.optimizers.Adam(1e-4, epsilon=1e-8))
        model.fit(x[:batch], batch_size=batch, epochs=1, verbose=0)  # compiles
        start = time.perf_counter()
        model.fit(x[batch:], batch_size=batch, epochs=1, shuffle=False, verbose=0)
        return (time.perf_counter() - start) / FLAGS.steps

    tract = train_step_seconds(kt.TRACTDistiller(teacher, copy("student"), schedule, (40, 1), steps_per_phase=1000))
    edm = train_step_seconds(kt.EDMTrainer(copy("edm_student")))
    return timed(sampler(1), FLAGS.steps), timed(sampler(2), FLAGS.steps), tract, edm


def main(_):
    import keras
    import numpy as np

    import keras_tract as kt

    rng = np.random.default_rng(0)
    print(f"backend {keras.config.backend()}, keras {keras.__version__}")
    print(f"{'preset':<16} {'batch':>5} {'forward ms':>10} {'tract ms':>9} {'ratio':>6} {'edm ms':>8} {'ratio':>6} "
          f"{'1-step img/s':>12} {'2-step img/s':>12}")
    for item in FLAGS.presets:
        name, batch = item.split(":")
        forward, two, tract, edm = measure(name, int(batch), rng)
        print(f"{name:<16} {batch:>5} {forward * 1e3:>10.1f} {tract * 1e3:>9.1f} {tract / forward:>6.2f} "
              f"{edm * 1e3:>8.1f} {edm / forward:>6.2f} {int(batch) / forward:>12.1f} {int(batch) / two:>12.1f}")

    images = rng.integers(0, 256, (10_000, 32, 32, 3), dtype=np.uint8)
    ds = kt.data.from_arrays(images, 512, flip=True)
    seconds = timed(lambda: [None for _ in ds.take(20)], 1)
    print(f"tf.data pipeline (from_arrays, 32x32x3, flips, batch 512): {20 * 512 / seconds:,.0f} images/s")


if __name__ == "__main__":
    app.run(main)
