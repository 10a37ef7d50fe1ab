"""Image output: EDM's uint8 quantization, sample grids, atomic writes."""

import contextlib
import os

import numpy as np


def to_uint8(x):
    """Float images in [-1, 1] to uint8 as EDM saves samples: `clip(127.5 x + 128, 0, 255)` truncated."""
    return np.clip(np.asarray(x, dtype=np.float64) * 127.5 + 128.0, 0, 255).astype(np.uint8)


def grid(images, columns=None):
    """uint8 images `(N, H, W, C)` tiled into one `(rows * H, columns * W, C)` image (blank cells at the end)."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"`images` must have shape (N, H, W, C), got images.shape={images.shape}.")
    n, h, w, c = images.shape
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    canvas = np.zeros((rows * columns, h, w, c), images.dtype)
    canvas[:n] = images
    return canvas.reshape(rows, columns, h, w, c).transpose(0, 2, 1, 3, 4).reshape(rows * h, columns * w, c)


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path next to `path` (same name ending, e.g. `.keras`); on success it
    replaces `path`, on failure it is removed, so `path` is never half-written."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".tmp-{os.getpid()}-{os.path.basename(path)}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_atomic(path, data):
    """Writes bytes to `path` atomically (`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def save_png(path, image):
    """Saves a uint8 `(H, W, C)` image as PNG, atomically."""
    import tensorflow as tf

    write_atomic(path, tf.io.encode_png(np.asarray(image, np.uint8)).numpy())
