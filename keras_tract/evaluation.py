"""Teacher vs naive teacher vs student from the same noise: Frechet distance, RMSE, a comparison picture."""

import keras
import numpy as np

from keras_tract.fid.stats import frechet_distance_of
from keras_tract.images import grid, text_image, to_uint8
from keras_tract.solvers import sample


def _batched(fn, noise, labels, batch):
    """`fn(noise, labels)` over chunks of `batch` (the last one padded, so one compiled shape), clipped to [-1, 1]."""
    n, out = len(noise), []
    for i in range(0, n, batch):
        z = noise[i:i + batch]
        y = None if labels is None else labels[i:i + batch]
        pad = batch - len(z)
        if pad:
            z = np.concatenate([z, noise[:pad]])
            y = None if y is None else np.concatenate([y, labels[:pad]])
        out.append(np.asarray(keras.ops.convert_to_numpy(fn(z, y)), np.float64)[:batch - pad])
    return np.clip(np.concatenate(out), -1.0, 1.0)


def _plural(steps):
    return f"{steps} step{'s' * (steps != 1)}"


def compare_samplers(distiller, noise, labels=None, steps=(1, 2), reference=None, batch_size=None):
    """Samples the teacher (its full grid and solver), the naive teacher and the student from `noise`.

    Args:
        distiller: a `TRACTDistiller` or `BinaryDistiller`.
        noise: `(N, ...)` standard-normal noise; labels: optional `(N, classes)`.
        steps: student (and naive DDIM) step counts.
        reference: optional data `(M, ...)` in [-1, 1] for the Frechet distance.
        batch_size: sampler batch (default all of `noise` at once).

    Returns:
        `(rows, images)`: rows of `{"sampler", "nfe", "fd", "rmse"}` (`fd` None
        without `reference`; RMSE is the L2 distance per sample to the teacher's
        output, root-mean-squared over samples), and uint8 images by short name.
    """
    batch = batch_size or len(noise)
    schedule, solver = distiller.schedule, distiller.teacher_solver
    entries = [("teacher", f"teacher, {solver} {_plural(schedule.num_steps)}",
                2 * schedule.num_steps - 1 if solver == "heun" else schedule.num_steps,
                lambda z, y: sample(distiller.teacher, schedule, z, solver=solver, labels=y,
                                    clip_denoised=distiller.clip_teacher))]
    for k in steps:
        entries.append((f"teacher_ddim{k}", f"teacher, ddim {_plural(k)}", k,
                        lambda z, y, k=k: sample(distiller.teacher, schedule, z, steps=k, solver="ddim", labels=y,
                                                 clip_denoised=True)))
    for k in steps:
        entries.append((f"student{k}", f"student, {_plural(k)}", k,
                        lambda z, y, k=k: distiller.generate(z, steps=k, labels=y)))
    rows, images, target = [], {}, None
    for short, name, nfe, fn in entries:
        x = _batched(fn, noise, labels, batch)
        target = x if target is None else target
        quantized = to_uint8(x)
        fd = None if reference is None else frechet_distance_of(quantized / 127.5 - 1.0, reference)
        rmse = float(np.sqrt(np.mean(np.sum((x - target).reshape(len(x), -1) ** 2, axis=1))))
        rows.append({"sampler": name, "nfe": nfe, "fd": fd, "rmse": rmse})
        images[short] = quantized
    return rows, images


def format_table(rows, num_samples, reference=None):
    """The rows of `compare_samplers` as a text table; `reference` says what the FD is measured against."""
    lines = [f"{num_samples} samples from the same noise; RMSE is the per-sample L2 distance to the teacher's output"
             + (f"; FD is the pixel Frechet distance to {reference}." if reference else "."),
             f"{'sampler':<26} {'NFE':>4} {'FD':>10} {'RMSE to teacher':>16}"]
    for row in rows:
        fd = "-" if row["fd"] is None else f"{row['fd']:.3f}"
        lines.append(f"{row['sampler']:<26} {row['nfe']:>4} {fd:>10} {row['rmse']:>16.3f}")
    return "\n".join(lines)


def comparison_image(images, labels=None, count=64, gap=4):
    """Grids of the first `count` images of each entry, side by side, upscaled to cells of at least 32 pixels,
    each under its label (default the entry's name).

    Cells are framed by one grey pixel; the panels are separated by `gap` white pixels.
    """
    labels = list(images) if labels is None else list(labels)
    panels = []
    for x, label in zip(images.values(), labels):
        scale = max(1, -(-32 // x.shape[1]))
        g = grid(np.pad(x[:count], [(0, 0), (1, 1), (1, 1), (0, 0)], constant_values=96))
        g = np.repeat(np.repeat(g, scale, axis=0), scale, axis=1)
        text = np.pad(text_image(label, channels=g.shape[2]), [(gap, gap), (0, 0), (0, 0)], constant_values=255)
        width = max(g.shape[1], text.shape[1])
        panels.append(np.concatenate([_pad_to(text, text.shape[0], width), _pad_to(g, g.shape[0], width)]))
    height = max(p.shape[0] for p in panels)
    parts = []
    for p in panels:
        parts += [_pad_to(p, height, p.shape[1]), np.full((height, gap, p.shape[2]), 255, np.uint8)]
    return np.concatenate(parts[:-1], axis=1)


def _pad_to(image, height, width):
    """`image` padded with white at the bottom and right to `(height, width)`."""
    return np.pad(image, [(0, height - image.shape[0]), (0, width - image.shape[1]), (0, 0)], constant_values=255)
