"""Samples images from a `.keras` denoiser: a PNG grid, or an `.npz` of uint8 images (key `x`) for FID.

Usage:
    KERAS_BACKEND=jax python tools/sample.py --model=student.keras --out=samples.png [--steps=1] \\
        [--solver=ddim] --num=64 [--schedule=karras|cosine] [--num_steps=40] [--label=3 | --num_classes=1000]

A model saved by this project's trainers records how it samples (its schedule, solver and step
count); those are the defaults, and flags that contradict them are refused.
"""

import io
import os

import cli
from absl import flags

flags.DEFINE_string("model", None, "A .keras denoiser (a distilled student, a teacher).", required=True)
flags.DEFINE_string("out", None, "Output .png (grid) or .npz (uint8 images, key 'x').", required=True)
flags.DEFINE_integer("num", 64, "Number of images.", lower_bound=1)
flags.DEFINE_integer("batch", 256, "Images per sampler call.", lower_bound=1)
flags.DEFINE_integer("steps", None, "Sampler steps (must divide the grid's levels); default: the model's own, "
                     "else all levels.", lower_bound=1)
flags.DEFINE_enum("solver", None, ["ddim", "heun"], "ODE solver (default: the model's own, else ddim).")
flags.DEFINE_enum("schedule", None, ["karras", "cosine"], "The grid (default: the model's own, else karras).")
flags.DEFINE_integer("num_steps", None, "Levels of the grid (default: the model's own, else 40).", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Noise seed.")
flags.DEFINE_integer("num_classes", 0, "Class-conditional models: number of classes (default: the model's own; "
                     "labels drawn uniformly).")
flags.DEFINE_integer("label", None, "Class-conditional models: one label for every image.")
flags.DEFINE_list("shape", None, "Image shape H,W,C (default: from the model's build config).")
FLAGS = flags.FLAGS


def main(_):
    import numpy as np

    import keras_tract as kt
    from keras_tract.builders import load_model_file
    from keras_tract.images import grid, save_png, write_atomic

    if not FLAGS.out.endswith((".png", ".npz")):
        raise ValueError(f"--out must end in .png or .npz, got --out={FLAGS.out}")
    if not os.path.isfile(FLAGS.model):
        raise FileNotFoundError(f"File not found: --model={FLAGS.model}")
    # The model's own sampling settings, read and checked against the flags before its weights load.
    schedule, solver, steps = kt.solvers.resolve_sampling(kt.solvers.saved_sampling(FLAGS.model), FLAGS.schedule,
                                                          FLAGS.num_steps, FLAGS.solver, FLAGS.steps)
    model = load_model_file(FLAGS.model, "--model")
    declared = getattr(model, "num_classes", None)
    if declared is not None and FLAGS.num_classes not in (0, declared):
        raise ValueError(f"--num_classes={FLAGS.num_classes}, but {FLAGS.model} has {declared} classes.")
    num_classes = FLAGS.num_classes or declared or 0
    if FLAGS.label is not None and not 0 <= FLAGS.label < num_classes:
        raise ValueError(f"--label={FLAGS.label} must be a class of the model (0 to {num_classes - 1}).")
    images = np.concatenate(list(kt.sample_images(
        model, schedule, FLAGS.num, steps=steps, solver=solver, num_classes=num_classes,
        label=FLAGS.label, seed=FLAGS.seed, batch_size=FLAGS.batch,
        shape=[int(s) for s in FLAGS.shape] if FLAGS.shape else None)))
    if FLAGS.out.endswith(".png"):
        save_png(FLAGS.out, grid(images))
    else:
        buffer = io.BytesIO()
        np.savez(buffer, x=images)
        write_atomic(FLAGS.out, buffer.getvalue())
    print(f"Wrote {len(images)} images of shape {images.shape[1:]} to {FLAGS.out}")


if __name__ == "__main__":
    cli.run(main, tensorflow=False)
