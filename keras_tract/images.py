"""Image output: EDM's uint8 quantization, sample grids, atomic writes."""

import os
import tempfile

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


def write_atomic(path, data):
    """Writes bytes to `path` through a temporary file in the same folder and a rename."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_png(path, image):
    """Saves a uint8 `(H, W, C)` image as PNG, atomically."""
    import tensorflow as tf

    write_atomic(path, tf.io.encode_png(np.asarray(image, np.uint8)).numpy())
