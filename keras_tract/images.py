"""Image output: EDM's uint8 quantization, sample grids, atomic writes, file digests."""

import contextlib
import hashlib
import os
import struct
import zlib

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


def sha256(path):
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomic(path, data):
    """Writes bytes to `path` atomically (`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


# A 3x5 pixel font for figure labels (rows top to bottom, 1 = ink), so labelling needs no imaging library.
_FONT = dict(zip(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,-.",
    ("010101111101101 110101110101110 011100100100011 110101101101110 111100110100111 111100110100100 "
     "011100101101011 101101111101101 111010010010111 001001001101010 101101110101101 100100100100111 "
     "101111111101101 110101101101101 010101101101010 110101110100100 010101101110011 110101110101101 "
     "011100010001110 111010010010010 101101101101111 101101101101010 101101111111101 101101010101101 "
     "101101010010010 111001010100111 111101101101111 010110010010111 110001010100111 110001010001110 "
     "101101111001001 111100110001110 011100111101111 111001010010010 111101111101111 111101111001110 "
     "000000000000000 000000000010100 000000111000000 000000000000010").split()))


def text_image(text, scale=2, channels=3):
    """`text` (letters, digits, space, `,-.`; lower case is drawn as upper case) as a uint8 image
    `(5 scale, 4 scale len(text), channels)`: black on white."""
    glyphs = []
    for char in text.upper():
        if char not in _FONT:
            raise ValueError(f"`text` has a character the label font lacks: {char!r} in text={text!r}.")
        bits = np.array([int(b) for b in _FONT[char]], np.uint8).reshape(5, 3)
        glyphs.append(np.pad(bits, [(0, 0), (0, 1)]))
    ink = np.concatenate(glyphs, axis=1) if glyphs else np.zeros((5, 0), np.uint8)
    ink = np.repeat(np.repeat(ink, scale, axis=0), scale, axis=1)
    return np.repeat((255 * (1 - ink))[..., None], channels, axis=2).astype(np.uint8)


def encode_png(image):
    """A uint8 `(H, W, C)` image (C = 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA) as PNG bytes.

    8 bits per channel, rows unfiltered, zlib-compressed (the PNG specification, sections 5 and 11), in
    NumPy: no TensorFlow needed to write an image.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or not 1 <= image.shape[-1] <= 4:
        raise ValueError(f"`image` must be uint8 (H, W, C) with C in 1-4, got {image.dtype} {image.shape}.")
    height, width, channels = image.shape
    rows = np.concatenate([np.zeros((height, 1), np.uint8), image.reshape(height, width * channels)], axis=1)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, (0, 4, 2, 6)[channels - 1], 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
            + chunk(b"IEND", b""))


def save_png(path, image):
    """Saves a uint8 `(H, W, C)` image as PNG (`encode_png`), atomically."""
    write_atomic(path, encode_png(image))
