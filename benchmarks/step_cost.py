"""Cost of a TRACT step and an EDM teacher step in units of one student forward pass, sampling and input throughput.

For each preset (random weights, 32x32x3, compiled as `fit()` and `sample()` compile on the backend):
  forward   one compiled student evaluation at the batch (= 1-step sampling)
  tract     one TRACTDistiller train step (Heun teacher: 2 evaluations, self-teacher: 1, student fwd+bwd)
  edm       one EDMTrainer train step (student fwd+bwd)
and the ratios tract/forward (floor about 6) and edm/forward (floor about 3); the first (compiling)
call of each; 1- and 2-step sampling throughput; the tf.data pipeline's images per second against
what the TRACT step consumes.

Usage (one backend per process):
    for b in jax tensorflow torch; do KERAS_BACKEND=$b python benchmarks/step_cost.py; done
    KERAS_BACKEND=jax python benchmarks/step_cost.py --dtype_policy=mixed_bfloat16 --micro_batches=2
    KERAS_BACKEND=torch python benchmarks/step_cost.py --jit_compile   # torch.compile on the train step
"""

import time

from absl import app, flags

flags.DEFINE_list("presets", ["ddpmpp_small:16", "ddpmpp_cifar10:8"], "preset:batch pairs (32x32x3 images).")
flags.DEFINE_integer("steps", 5, "Timed train steps and sampling calls (after the compiling first call).")
flags.DEFINE_enum("dtype_policy", "float32", ["float32", "mixed_bfloat16"], "The student's dtype policy.")
flags.DEFINE_integer("micro_batches", 1, "Gradient accumulation: micro-batches per step.", lower_bound=1)
flags.DEFINE_bool("jit_compile", None, "fit()'s jit_compile (default: the backend's; torch: eager).")
FLAGS = flags.FLAGS


def seconds_per_call(fn, repeats):
    """`(first, steady)`: seconds of the first (compiling) call and per call after it."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return first, (time.perf_counter() - start) / repeats


def measure(name, batch, rng):
    """Seconds of the forward pass, 2-step sampling, TRACT and EDM steps (steady), and the first calls."""
    import keras
    import numpy as np

    import keras_tract as kt
    from keras_tract.ema import clone

    x = rng.uniform(-1, 1, (batch * (FLAGS.steps + 1), 32, 32, 3)).astype("float32")
    teacher = kt.EDMPrecond(kt.networks.get(name, dropout=0.0))
    teacher(x[:1], np.ones((1,), "float32"))
    schedule = kt.KarrasSchedule(40)
    noise = rng.standard_normal((batch, 32, 32, 3)).astype("float32")

    def student(label):
        model = clone(teacher, label, dtype_policy=FLAGS.dtype_policy)
        model.trainable = True
        return model

    inference = student("inference")

    def sampler(steps):
        return lambda: keras.ops.convert_to_numpy(kt.sample(inference, schedule, noise, steps=steps, solver="ddim"))

    def train_step_seconds(model):
        model.compile(optimizer=keras.optimizers.Adam(1e-4, epsilon=1e-8),
                      jit_compile="auto" if FLAGS.jit_compile is None else FLAGS.jit_compile)
        start = time.perf_counter()
        model.fit(x[:batch], batch_size=batch, epochs=1, verbose=0)  # compiles
        first = time.perf_counter() - start
        start = time.perf_counter()
        model.fit(x[batch:], batch_size=batch, epochs=1, shuffle=False, verbose=0)
        return first, (time.perf_counter() - start) / FLAGS.steps

    common = dict(micro_batches=FLAGS.micro_batches)
    tract = train_step_seconds(kt.TRACTDistiller(teacher, student("student"), schedule, (40, 1),
                                                 steps_per_phase=1000, **common))
    edm = train_step_seconds(kt.EDMTrainer(student("edm_student"), **common))
    forward = seconds_per_call(sampler(1), FLAGS.steps)
    two = seconds_per_call(sampler(2), FLAGS.steps)
    return forward, two, tract, edm


def main(_):
    import keras
    import numpy as np

    import keras_tract as kt

    rng = np.random.default_rng(0)
    print(f"backend {keras.config.backend()}, keras {keras.__version__}, student {FLAGS.dtype_policy}, "
          f"micro_batches {FLAGS.micro_batches}, jit_compile {FLAGS.jit_compile}")
    print(f"{'preset':<16} {'batch':>5} {'forward ms':>10} {'tract ms':>9} {'ratio':>6} {'edm ms':>8} {'ratio':>6} "
          f"{'1-step img/s':>12} {'2-step img/s':>12} {'first tract/edm/fwd s':>22}")
    consumed = 0.0
    for item in FLAGS.presets:
        name, batch = item.split(":")
        batch = int(batch)
        forward, two, tract, edm = measure(name, batch, rng)
        consumed = max(consumed, batch / tract[1])
        print(f"{name:<16} {batch:>5} {forward[1] * 1e3:>10.1f} {tract[1] * 1e3:>9.1f} {tract[1] / forward[1]:>6.2f} "
              f"{edm[1] * 1e3:>8.1f} {edm[1] / forward[1]:>6.2f} {batch / forward[1]:>12.1f} {batch / two[1]:>12.1f} "
              f"{f'{tract[0]:.1f}/{edm[0]:.1f}/{forward[0]:.1f}':>22}")

    images = rng.integers(0, 256, (10_000, 32, 32, 3), dtype=np.uint8)
    ds = kt.data.from_arrays(images, 512, flip=True)
    _, seconds = seconds_per_call(lambda: [None for _ in ds.take(20)], 1)
    delivered = 20 * 512 / seconds
    print(f"tf.data pipeline (from_arrays, 32x32x3, flips, batch 512): {delivered:,.0f} images/s; "
          f"the fastest TRACT step above consumes {consumed:,.1f} images/s ({delivered / consumed:,.0f}x headroom)")


if __name__ == "__main__":
    app.run(main)
