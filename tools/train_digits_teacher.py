"""Trains the bundled digits teacher (keras_tract/assets/digits_teacher.keras) with EDMTrainer.

EDM's loss and EMA on scikit-learn's 8x8 digits (train split), the `ddpmpp_small` U-Net under
EDMPrecond. The result is the EMA denoiser, saved atomically.

Usage:
    KERAS_BACKEND=jax python tools/train_digits_teacher.py [--steps=3000] [--out=...]
"""

import os

from absl import app, flags

flags.DEFINE_integer("steps", 3000, "Optimizer steps.", lower_bound=1)
flags.DEFINE_integer("batch", 64, "Batch size.", lower_bound=1)
flags.DEFINE_float("lr", 2e-3, "Adam learning rate after the ramp-up.")
flags.DEFINE_float("ema_halflife_kimg", 5.0, "EMA half-life in thousands of images.")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_string("out", os.path.join(os.path.dirname(__file__), "..", "keras_tract", "assets",
                                        "digits_teacher.keras"), "Output .keras file.")
FLAGS = flags.FLAGS


def main(_):
    import keras
    import numpy as np

    import keras_tract as kt

    keras.utils.set_random_seed(FLAGS.seed)
    denoiser = kt.EDMPrecond(kt.networks.get("ddpmpp_small"), name="digits_teacher")
    denoiser(np.zeros((1, 8, 8, 1), "float32"), np.ones((1,), "float32"))
    trainer = kt.EDMTrainer(denoiser, ema_halflife_kimg=FLAGS.ema_halflife_kimg, seed=FLAGS.seed)
    lr = kt.LinearRampUp(FLAGS.lr, FLAGS.steps // 10)
    trainer.compile(optimizer=keras.optimizers.Adam(lr, epsilon=1e-8))
    epochs = 10
    trainer.fit(kt.data.digits(FLAGS.batch, seed=FLAGS.seed), epochs=epochs,
                steps_per_epoch=FLAGS.steps // epochs, verbose=2)
    out = os.path.abspath(FLAGS.out)
    tmp = out + ".tmp.keras"
    trainer.ema.save(tmp)
    os.replace(tmp, out)
    print(f"Saved {out} ({os.path.getsize(out) / 1e6:.2f} MB)")


if __name__ == "__main__":
    app.run(main)
