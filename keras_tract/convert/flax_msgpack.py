"""Decodes `flax.serialization.to_bytes` checkpoints as data, without flax or msgpack installed.

The format is msgpack (https://github.com/msgpack/msgpack/blob/master/spec.md) of nested
string-keyed maps; arrays are extension type 1 holding msgpack `[shape, dtype name, raw bytes]`,
NumPy scalars extension type 3 holding the same for shape `()`, and arrays too large for one
chunk maps marked `__msgpack_chunked_array__` (flax/serialization.py).
"""

import struct

import numpy as np

_NDARRAY, _COMPLEX, _SCALAR = 1, 2, 3
_CHUNKED = "__msgpack_chunked_array__"


class _Reader:
    def __init__(self, data):
        self.data, self.pos = memoryview(data), 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError("truncated msgpack data")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt):
        return struct.unpack(">" + fmt, self.take(struct.calcsize(">" + fmt)))[0]

    def value(self):
        b = self.unpack("B")
        if b <= 0x7F or b >= 0xE0:
            return b if b <= 0x7F else b - 0x100
        if 0x80 <= b <= 0x8F:
            return self.map(b & 0x0F)
        if 0x90 <= b <= 0x9F:
            return [self.value() for _ in range(b & 0x0F)]
        if 0xA0 <= b <= 0xBF:
            return bytes(self.take(b & 0x1F)).decode()
        simple = {0xC0: None, 0xC2: False, 0xC3: True}
        if b in simple:
            return simple[b]
        sized = {0xC4: "B", 0xC5: "H", 0xC6: "I", 0xD9: "B", 0xDA: "H", 0xDB: "I"}
        if b in sized:
            raw = bytes(self.take(self.unpack(sized[b])))
            return raw if b <= 0xC6 else raw.decode()
        if b in (0xC7, 0xC8, 0xC9):
            n = self.unpack({0xC7: "B", 0xC8: "H", 0xC9: "I"}[b])
            return self.ext(self.unpack("b"), bytes(self.take(n)))
        if 0xD4 <= b <= 0xD8:
            code = self.unpack("b")
            return self.ext(code, bytes(self.take(1 << (b - 0xD4))))
        numbers = {0xCA: "f", 0xCB: "d", 0xCC: "B", 0xCD: "H", 0xCE: "I", 0xCF: "Q",
                   0xD0: "b", 0xD1: "h", 0xD2: "i", 0xD3: "q"}
        if b in numbers:
            return self.unpack(numbers[b])
        if b in (0xDC, 0xDD):
            return [self.value() for _ in range(self.unpack("H" if b == 0xDC else "I"))]
        if b in (0xDE, 0xDF):
            return self.map(self.unpack("H" if b == 0xDE else "I"))
        raise ValueError(f"invalid msgpack byte 0x{b:02x} at offset {self.pos - 1}")

    def map(self, n):
        return {self.value(): self.value() for _ in range(n)}

    @staticmethod
    def ext(code, payload):
        if code in (_NDARRAY, _SCALAR):
            shape, dtype, raw = unpackb(payload)
            array = np.frombuffer(raw, _dtype(dtype)).reshape(shape)
            return array if code == _NDARRAY else array[()]
        if code == _COMPLEX:
            real, imag = unpackb(payload)
            return complex(real, imag)
        raise ValueError(f"unknown msgpack extension type {code}")


def _dtype(name):
    name = name.decode() if isinstance(name, bytes) else name
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    dtype = np.dtype(name)
    if dtype.hasobject:
        raise ValueError(f"refusing arrays of object dtype {name!r}")
    return dtype


def _unchunk(tree):
    if not isinstance(tree, dict):
        return tree
    if tree.get(_CHUNKED):
        as_tuple = lambda d: tuple(d[str(i)] for i in range(len(d)))  # noqa: E731
        return np.concatenate([c.reshape(-1) for c in as_tuple(tree["chunks"])]).reshape(as_tuple(tree["shape"]))
    return {k: _unchunk(v) for k, v in tree.items()}


def unpackb(data):
    """One msgpack object from `data` (bytes) as Python values and NumPy arrays; trailing bytes are an error."""
    reader = _Reader(data)
    value = reader.value()
    if reader.pos != len(reader.data):
        raise ValueError(f"{len(reader.data) - reader.pos} bytes after the msgpack object")
    return value


def load(path):
    """The checkpoint at `path` as nested dicts of NumPy arrays.

    Raises:
        ValueError: in one line, for a truncated, corrupt or non-msgpack file.
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        return _unchunk(unpackb(data))
    except (ValueError, TypeError, KeyError, struct.error, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not a readable Flax msgpack checkpoint ({str(error)[:200]}).") from None
