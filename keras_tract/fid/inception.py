"""The 2015 TF "FID Inception" (pool3, 2048-d) in Keras 3, with the quirks of the graph every FID uses.

Differences from `keras.applications.InceptionV3` (as in pytorch-fid's `FIDInceptionA..E`): the graph's own
weights (converted from pytorch-fid's state dict), 1008 classes, 3x3 average pools
that exclude the padding from the mean, and a 3x3 max-pool (not average) in the
pool branch of the last block (Mixed_7c). BatchNorm eps is 1e-3.

Layer names are the state-dict module paths with "." written as "__"
(`Mixed_5b.branch1x1.conv` -> `Mixed_5b__branch1x1__conv`), so converting weights
is a rename.
"""

import keras
import numpy as np
from keras import layers, ops

FEATURES = 2048
NUM_CLASSES = 1008
MODES = ("tf1", "pytorch")


def resize_matrix(size_in, size_out, mode):
    """`(size_out, size_in)` bilinear interpolation matrix; rows sum to 1.

    `"tf1"`: TF1's legacy `resize_bilinear` (no half-pixel centres, src = dst * in / out),
    the resize inside the FID graph. `"pytorch"`: half-pixel centres
    (src = (dst + 0.5) * in / out - 0.5, clamped at 0), as `F.interpolate` and `tf.image.resize`.
    """
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}, got mode={mode!r}.")
    dst = np.arange(size_out, dtype=np.float64)
    scale = size_in / size_out
    src = dst * scale if mode == "tf1" else np.maximum((dst + 0.5) * scale - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(int), size_in - 1)
    hi = np.minimum(lo + 1, size_in - 1)
    frac = src - lo
    matrix = np.zeros((size_out, size_in))
    np.add.at(matrix, (np.arange(size_out), lo), 1.0 - frac)
    np.add.at(matrix, (np.arange(size_out), hi), frac)
    return matrix


class Preprocess(layers.Layer):
    """uint8-valued images `(B, H, W, 3)` (0..255, any float or int dtype) to the network's input.

    Resizes to `resolution` with `resize_matrix(mode)` as two matrix products, then
    normalizes: `(x - 128) / 128` in `"tf1"` mode (TTUR, EDM, the OpenAI evaluator),
    `x / 127.5 - 1` in `"pytorch"` mode (pytorch-fid, the official TRACT code).

    Args:
        mode: `"tf1"` or `"pytorch"`.
        resolution: output side, 299 for FID.
    """

    def __init__(self, mode="tf1", resolution=299, **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}, got mode={mode!r}.")
        self.mode, self.resolution = mode, int(resolution)

    def call(self, images):
        x = ops.cast(images, "float32")
        h, w = x.shape[1], x.shape[2]
        rows = ops.convert_to_tensor(resize_matrix(h, self.resolution, self.mode).astype("float32"))
        cols = ops.convert_to_tensor(resize_matrix(w, self.resolution, self.mode).astype("float32"))
        x = ops.einsum("oh,bhwc->bowc", rows, x)
        x = ops.einsum("pw,bowc->bopc", cols, x)
        return (x - 128.0) / 128.0 if self.mode == "tf1" else x / 127.5 - 1.0

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "resolution": self.resolution}


def avg_pool_excluding_padding(x):
    """3x3 stride-1 average pool whose border windows divide by the number of real pixels."""
    padded = ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
    ones = ops.pad(ops.ones_like(x[..., :1]), [[0, 0], [1, 1], [1, 1], [0, 0]])
    return ops.average_pool(padded, 3, 1, "valid") / ops.average_pool(ones, 3, 1, "valid")


def _conv_bn(x, name, filters, kernel, strides=1, padding="valid"):
    """BasicConv2d: bias-free convolution (kernel starting at zero, see `fid_inception`), BatchNorm
    (eps 1e-3), ReLU."""
    x = layers.Conv2D(filters, kernel, strides, padding, use_bias=False, kernel_initializer="zeros",
                      name=f"{name}__conv")(x)
    x = layers.BatchNormalization(epsilon=1e-3, name=f"{name}__bn")(x)
    return layers.ReLU()(x)


def _block_a(x, name, pool_features):
    n = lambda branch: f"{name}__{branch}"  # noqa: E731
    b1 = _conv_bn(x, n("branch1x1"), 64, 1)
    b5 = _conv_bn(_conv_bn(x, n("branch5x5_1"), 48, 1), n("branch5x5_2"), 64, 5, padding="same")
    b3 = _conv_bn(x, n("branch3x3dbl_1"), 64, 1)
    b3 = _conv_bn(_conv_bn(b3, n("branch3x3dbl_2"), 96, 3, padding="same"), n("branch3x3dbl_3"), 96, 3,
                  padding="same")
    bp = _conv_bn(avg_pool_excluding_padding(x), n("branch_pool"), pool_features, 1)
    return layers.Concatenate(name=name)([b1, b5, b3, bp])


def _block_b(x, name):
    n = lambda branch: f"{name}__{branch}"  # noqa: E731
    b3 = _conv_bn(x, n("branch3x3"), 384, 3, strides=2)
    bd = _conv_bn(x, n("branch3x3dbl_1"), 64, 1)
    bd = _conv_bn(_conv_bn(bd, n("branch3x3dbl_2"), 96, 3, padding="same"), n("branch3x3dbl_3"), 96, 3, strides=2)
    return layers.Concatenate(name=name)([b3, bd, ops.max_pool(x, 3, 2, "valid")])


def _block_c(x, name, c7):
    n = lambda branch: f"{name}__{branch}"  # noqa: E731
    b1 = _conv_bn(x, n("branch1x1"), 192, 1)
    b7 = _conv_bn(x, n("branch7x7_1"), c7, 1)
    b7 = _conv_bn(b7, n("branch7x7_2"), c7, (1, 7), padding="same")
    b7 = _conv_bn(b7, n("branch7x7_3"), 192, (7, 1), padding="same")
    bd = _conv_bn(x, n("branch7x7dbl_1"), c7, 1)
    for i, (filters, kernel) in enumerate([(c7, (7, 1)), (c7, (1, 7)), (c7, (7, 1)), (192, (1, 7))], start=2):
        bd = _conv_bn(bd, n(f"branch7x7dbl_{i}"), filters, kernel, padding="same")
    bp = _conv_bn(avg_pool_excluding_padding(x), n("branch_pool"), 192, 1)
    return layers.Concatenate(name=name)([b1, b7, bd, bp])


def _block_d(x, name):
    n = lambda branch: f"{name}__{branch}"  # noqa: E731
    b3 = _conv_bn(_conv_bn(x, n("branch3x3_1"), 192, 1), n("branch3x3_2"), 320, 3, strides=2)
    b7 = _conv_bn(x, n("branch7x7x3_1"), 192, 1)
    b7 = _conv_bn(b7, n("branch7x7x3_2"), 192, (1, 7), padding="same")
    b7 = _conv_bn(b7, n("branch7x7x3_3"), 192, (7, 1), padding="same")
    b7 = _conv_bn(b7, n("branch7x7x3_4"), 192, 3, strides=2)
    return layers.Concatenate(name=name)([b3, b7, ops.max_pool(x, 3, 2, "valid")])


def _block_e(x, name, max_pool):
    n = lambda branch: f"{name}__{branch}"  # noqa: E731

    def split(y, prefix):
        return [_conv_bn(y, n(f"{prefix}a"), 384, (1, 3), padding="same"),
                _conv_bn(y, n(f"{prefix}b"), 384, (3, 1), padding="same")]

    b1 = _conv_bn(x, n("branch1x1"), 320, 1)
    b3 = split(_conv_bn(x, n("branch3x3_1"), 384, 1), "branch3x3_2")
    bd = _conv_bn(_conv_bn(x, n("branch3x3dbl_1"), 448, 1), n("branch3x3dbl_2"), 384, 3, padding="same")
    bd = split(bd, "branch3x3dbl_3")
    pooled = ops.max_pool(x, 3, 1, "same") if max_pool else avg_pool_excluding_padding(x)
    bp = _conv_bn(pooled, n("branch_pool"), 192, 1)
    return layers.Concatenate(name=name)([b1, *b3, *bd, bp])


def fid_inception(mode="tf1", resolution=299, input_shape=(299, 299, 3)):
    """The FID Inception network: uint8-valued images `(B, H, W, 3)` -> `(pool3 (B, 2048), logits (B, 1008))`.

    Args:
        mode: preprocessing, `"tf1"` (default) or `"pytorch"` (see `Preprocess`).
        resolution: the resize target; 299 for FID (smaller, >= 75, only for tests).
        input_shape: `(H, W, 3)` of the inputs (static: the resize matrices depend on it;
            the weights do not).

    The weights start at zero, not random: they are always loaded (`load_weights`, or
    `keras_tract.fid.convert.assign_state_dict`); random kernels made building it take 55 s
    instead of 6 on one CPU core with JAX, which compiles a random draw for every kernel shape.

    Example:
    >>> model = fid_inception(input_shape=(32, 32, 3))  # CIFAR-10 images, resized to 299 inside
    >>> model.load_weights("fid_inception.weights.h5")  # doctest: +SKIP
    >>> pool3, logits = model.predict_on_batch(np.zeros((2, 32, 32, 3)))
    >>> pool3.shape, logits.shape
    ((2, 2048), (2, 1008))
    """
    images = keras.Input(input_shape, name="images")
    x = Preprocess(mode, resolution, name="preprocess")(images)
    x = _conv_bn(x, "Conv2d_1a_3x3", 32, 3, strides=2)
    x = _conv_bn(x, "Conv2d_2a_3x3", 32, 3)
    x = _conv_bn(x, "Conv2d_2b_3x3", 64, 3, padding="same")
    x = ops.max_pool(x, 3, 2, "valid")
    x = _conv_bn(x, "Conv2d_3b_1x1", 80, 1)
    x = _conv_bn(x, "Conv2d_4a_3x3", 192, 3)
    x = ops.max_pool(x, 3, 2, "valid")
    x = _block_a(x, "Mixed_5b", 32)
    x = _block_a(x, "Mixed_5c", 64)
    x = _block_a(x, "Mixed_5d", 64)
    x = _block_b(x, "Mixed_6a")
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        x = _block_c(x, name, c7)
    x = _block_d(x, "Mixed_7a")
    x = _block_e(x, "Mixed_7b", max_pool=False)
    x = _block_e(x, "Mixed_7c", max_pool=True)
    pool3 = layers.GlobalAveragePooling2D(name="pool3")(x)
    logits = layers.Dense(NUM_CLASSES, kernel_initializer="zeros", name="fc")(pool3)
    model = keras.Model(images, [pool3, logits], name=f"fid_inception_{mode}")
    model.trainable = False
    return model
