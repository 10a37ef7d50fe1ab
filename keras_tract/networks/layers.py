"""Building blocks of EDM's U-Nets (DDPM++, NCSN++, ADM) in Keras 3, channels-last.

Inside a network, sublayers are called through `layer.call(...)`: Keras' `Layer.__call__` costs about
0.1 ms of Python per call on PyTorch (a fifth of a small U-Net's forward), and the network's own
`__call__` has already entered the dtype policy's scope.

Names follow EDM's `training/networks.py` so weights map one to one:
`Linear.kernel` is EDM's `weight` transposed, `Conv2D.kernel` is EDM's `weight`
as (kh, kw, in, out). Resampling filters are constants, not weights.
"""

import contextlib
import math
import random

import keras
import numpy as np
from keras import ops
from keras.saving import register_keras_serializable

from keras_tract import backend

_ZERO_INIT = []


@contextlib.contextmanager
def zero_init():
    """Layers built inside start from zeros instead of random draws: for weights that are assigned
    next (a checkpoint conversion), which then skips drawing hundreds of millions of random numbers."""
    _ZERO_INIT.append(True)
    try:
        yield
    finally:
        _ZERO_INIT.pop()


_DTYPE_NAMES = {}


def _dtype_name(dtype):
    """Keras' name of a backend or string dtype, remembered (standardizing one costs microseconds)."""
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = keras.backend.standardize_dtype(dtype)
    return name


def cast(x, dtype):
    """`x` (a tensor or variable) as `dtype`, through `ops.cast` only where the dtypes differ: a network
    makes hundreds of these casts per call, and each op costs tens of microseconds of Python on PyTorch."""
    value = x.value if isinstance(x, keras.Variable) else x
    return value if _dtype_name(value.dtype) == _dtype_name(dtype) else ops.cast(value, dtype)


@register_keras_serializable(package="keras_tract")
class WeightInit(keras.initializers.Initializer):
    """EDM's `weight_init` (`training/networks.py`) times `scale`, drawn by NumPy on the host.

    On the host because JAX compiles a random draw for every new shape (building a small U-Net spent
    about 40 s compiling them), and so that one seed gives the same weights on every backend.

    Args:
        mode: `"xavier_uniform"` (uniform on +-sqrt(6 / (fan_in + fan_out))), `"kaiming_uniform"`
            (+-sqrt(3 / fan_in)), `"kaiming_normal"` (std sqrt(1 / fan_in)) or `"normal"` (std 1).
        scale: multiplies the draw (EDM's `init_weight`, `init_bias`).
        fans: `(fan_in, fan_out)`; default from the shape as Keras counts them, `(kh, kw, in, out)`
            giving `in * kh * kw` and `out * kh * kw` (a bias passes its layer's).
        seed: int; None draws one from Python's `random` (seeded by `keras.utils.set_random_seed`).
    """

    MODES = ("xavier_uniform", "kaiming_uniform", "kaiming_normal", "normal")

    def __init__(self, mode, scale=1.0, fans=None, seed=None):
        if mode not in self.MODES:
            raise ValueError(f"`init_mode` must be one of {', '.join(self.MODES)}, got {mode!r}.")
        self.mode, self.scale = mode, float(scale)
        self.fans = None if fans is None else tuple(int(f) for f in fans)
        self.seed = random.randint(1, 10**9) if seed is None else int(seed)

    def __call__(self, shape, dtype=None):
        receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
        fan_in, fan_out = self.fans or (shape[-2] * receptive if len(shape) > 1 else shape[-1], shape[-1] * receptive)
        rng = np.random.default_rng(self.seed)
        if self.mode.endswith("uniform"):
            limit = math.sqrt(6 / (fan_in + fan_out) if self.mode == "xavier_uniform" else 3 / fan_in)
            values = rng.uniform(-limit, limit, shape)
        else:
            values = rng.standard_normal(shape) * (math.sqrt(1 / fan_in) if self.mode == "kaiming_normal" else 1.0)
        return ops.convert_to_tensor(self.scale * values, dtype=keras.backend.standardize_dtype(dtype))

    def get_config(self):
        return {"mode": self.mode, "scale": self.scale, "fans": self.fans, "seed": self.seed}


def weight_initializer(mode, scale=1.0):
    """EDM's `weight_init` modes, scaled by `scale` (EDM's `init_weight`)."""
    if mode not in WeightInit.MODES[:3]:
        raise ValueError(f"`init_mode` must be xavier_uniform, kaiming_uniform or kaiming_normal, got {mode!r}.")
    return "zeros" if scale == 0 or _ZERO_INIT else WeightInit(mode, scale)


def bias_initializer(mode, fan_in, fan_out, scale):
    """EDM's bias init: the weight distribution for the layer's fans, times `scale` (EDM's `init_bias`)."""
    return "zeros" if scale == 0 or _ZERO_INIT else WeightInit(mode, scale, fans=(fan_in, fan_out))


@register_keras_serializable(package="keras_tract")
class Dropout(keras.layers.Layer):
    """Dropout whose random state is part of the saved model, on every backend.

    `keras.layers.Dropout` leaves its seed state out of `.keras` files, and an
    unseeded one draws from PyTorch's global generator. This layer always
    draws from its own seeded `SeedGenerator` and writes the generator's state
    with its weights, so a model saved mid-training and loaded on any backend
    continues the same sequence of masks.

    Args:
        rate: float in [0, 1), the fraction of units set to zero.
        seed: int or None; None draws one from Python's `random` (seeded by
            `keras.utils.set_random_seed`).

    Call arguments:
        x: any tensor. training: bool; masks only when True.
    """

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"`rate` must be in [0, 1), got rate={rate!r}.")
        self.rate, self.seed = float(rate), random.randint(1, 10**9) if seed is None else int(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed, name="seed_generator")
        self.built = True

    def call(self, x, training=False):
        if not training or not self.rate:
            return x
        return keras.random.dropout(x, self.rate, seed=self.seed_generator)

    def compute_output_shape(self, input_shape):
        return input_shape

    def save_own_variables(self, store):
        store["seed_state"] = ops.convert_to_numpy(self.seed_generator.state.value)

    def load_own_variables(self, store):
        if "seed_state" in list(store.keys()):
            self.seed_generator.state.assign(store["seed_state"][...])

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


@register_keras_serializable(package="keras_tract")
class Linear(keras.layers.Layer):
    """Dense layer with EDM's initialization. Input `(B, in_features)`, output `(B, out_features)`."""

    def __init__(self, out_features, use_bias=True, init_mode="kaiming_normal", init_weight=1.0,
                 init_bias=0.0, **kwargs):
        super().__init__(**kwargs)
        self.out_features, self.use_bias = out_features, use_bias
        self.init_mode, self.init_weight, self.init_bias = init_mode, init_weight, init_bias

    def build(self, input_shape):
        fan_in = input_shape[-1]
        self.kernel = self.add_weight(shape=(fan_in, self.out_features), name="kernel",
                                      initializer=weight_initializer(self.init_mode, self.init_weight))
        self.bias = self.add_weight(
            shape=(self.out_features,), name="bias",
            initializer=bias_initializer(self.init_mode, fan_in, self.out_features, self.init_bias),
        ) if self.use_bias else None

    def call(self, x):
        x = ops.matmul(x, cast(self.kernel, x.dtype))
        return x + cast(self.bias, x.dtype) if self.bias is not None else x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.out_features,)

    def get_config(self):
        return {**super().get_config(), "out_features": self.out_features, "use_bias": self.use_bias,
                "init_mode": self.init_mode, "init_weight": self.init_weight, "init_bias": self.init_bias}


def _axis_slice(x, axis, start, stop, step=1):
    index = [slice(None)] * len(x.shape)
    index[axis] = slice(start, stop, step)
    return x[tuple(index)]


def _pad_axis(x, axis, before, after):
    if not before and not after:
        return x
    pads = [[0, 0]] * len(x.shape)
    pads[axis] = [before, after]
    return ops.pad(x, pads)


def _weighted_sum(terms):
    """`sum(weight * tensor)` without multiplying by a unit weight (each pass is a full-size op)."""
    total = None
    for weight, t in terms:
        t = t if weight == 1.0 else weight * t
        total = t if total is None else total + t
    return total


def _down_1d(x, taps, pad, axis):
    x = _pad_axis(x, axis, pad, pad)
    n = (x.shape[axis] - len(taps)) // 2 + 1
    return _weighted_sum((float(t), _axis_slice(x, axis, i, i + 2 * (n - 1) + 1, 2)) for i, t in enumerate(taps))


def _up_1d(x, taps, pad, axis):
    # Polyphase form of a stride-2 transposed convolution: y[2m + r] = sum_d taps[2d + r + pad] x[m - d].
    length, k = x.shape[axis], len(taps)
    terms = [[(float(taps[2 * d + r + pad]), d) for d in range(-k, k + 1) if 0 <= 2 * d + r + pad < k]
             for r in (0, 1)]
    if terms == [[(1.0, 0)]] * 2:  # the [1, 1] filter: nearest-neighbour upsampling
        return ops.repeat(x, 2, axis=axis)
    phases = []
    for phase in terms:
        reach = max(abs(d) for _, d in phase)
        padded = _pad_axis(x, axis, reach, reach)
        phases.append(_weighted_sum((t, _axis_slice(padded, axis, reach - d, reach - d + length)) for t, d in phase))
    y = ops.stack(phases, axis=axis + 1)
    shape = list(ops.shape(x))
    shape[axis] = 2 * length
    return ops.reshape(y, shape)


def _taps(resample_filter):
    f = np.asarray(resample_filter, dtype=np.float64)
    return f / f.sum()


def downsample(x, resample_filter, pad):
    """EDM's depthwise stride-2 `conv2d` with the normalized outer-product filter, zero padding `pad`.

    The [1, 1] filter without padding is the mean of each 2x2 block, one pooling op; other filters are
    separable and run as two 1-D passes of shifted slices.
    """
    taps = _taps(resample_filter)
    if pad == 0 and taps.tolist() == [0.5, 0.5]:
        return backend.average_pool2(x)
    return _down_1d(_down_1d(x, taps, pad, 1), taps, pad, 2)


def upsample(x, resample_filter, pad):
    """EDM's depthwise stride-2 `conv_transpose2d` with 4x the normalized filter, padding `pad`."""
    taps = 2.0 * _taps(resample_filter)
    return _up_1d(_up_1d(x, taps, pad, 1), taps, pad, 2)


def _dense_kernel_oihw(w):
    """`w` (H, W, I, O) rebuilt as a transposed view of a dense (O, I, H, W) array.

    The same values; PyTorch's CPU bfloat16 convolution rejects the gradient of the
    strided (O, I, H, W) view that its backend takes of a one-output-channel kernel.
    """
    h, k, i, o = w.shape
    dense = ops.reshape(ops.reshape(ops.transpose(w, (3, 2, 0, 1)), (-1,)), (o, i, h, k))
    return ops.transpose(dense, (2, 3, 1, 0))


@register_keras_serializable(package="keras_tract")
class Conv2D(keras.layers.Layer):
    """EDM's convolution with optional 2x up/downsampling by a resampling filter.

    `kernel=0` gives a pure resampling layer without weights. With `fused_resample`
    and `down`, the convolution runs before the downsampling with the paddings
    merged, as in NCSN++'s residual encoder path.

    Args:
        out_channels: int. kernel: int, odd kernel size, or 0. up, down: bool.
        resample_filter: list of filter taps, e.g. [1, 1] or [1, 3, 3, 1].
        fused_resample: bool. init_mode, init_weight, init_bias: EDM's initialization.

    Call arguments:
        x: `(B, H, W, C)`; output `(B, H', W', out_channels)`.
    """

    def __init__(self, out_channels, kernel, use_bias=True, up=False, down=False, resample_filter=(1, 1),
                 fused_resample=False, init_mode="kaiming_normal", init_weight=1.0, init_bias=0.0, **kwargs):
        super().__init__(**kwargs)
        if up and down:
            raise ValueError("`up` and `down` cannot both be set.")
        self.out_channels, self.kernel_size, self.use_bias = out_channels, kernel, use_bias
        self.up, self.down, self.resample_filter = up, down, list(resample_filter)
        self.fused_resample = fused_resample
        self.init_mode, self.init_weight, self.init_bias = init_mode, init_weight, init_bias

    def build(self, input_shape):
        cin, k = input_shape[-1], self.kernel_size
        self.kernel = self.bias = None
        if k:
            self.kernel = self.add_weight(shape=(k, k, cin, self.out_channels), name="kernel",
                                          initializer=weight_initializer(self.init_mode, self.init_weight))
            if self.use_bias:
                self.bias = self.add_weight(
                    shape=(self.out_channels,), name="bias",
                    initializer=bias_initializer(self.init_mode, cin * k * k, self.out_channels * k * k,
                                                 self.init_bias))

    def call(self, x):
        w_pad = self.kernel_size // 2
        f_pad = (len(self.resample_filter) - 1) // 2
        w = None if self.kernel is None else cast(self.kernel, x.dtype)
        if self.out_channels == 1 and w is not None:
            w = _dense_kernel_oihw(w)
        bias = None if self.bias is None else cast(self.bias, x.dtype)
        if self.fused_resample and self.down and w is not None:
            x = backend.conv(ops.pad(x, [[0, 0], [w_pad + f_pad] * 2, [w_pad + f_pad] * 2, [0, 0]]), w)
            x = downsample(x, self.resample_filter, 0)
            return x if bias is None else x + bias
        if self.up:
            x = upsample(x, self.resample_filter, f_pad)
        if self.down:
            x = downsample(x, self.resample_filter, f_pad)
        return x if w is None else backend.conv(x, w, bias, "same" if w_pad else "valid")  # no kernel, no bias

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        scale = 2.0 if self.up else 0.5 if self.down else 1.0
        size = lambda n: None if n is None else int(n * scale)  # noqa: E731
        return (b, size(h), size(w), self.out_channels if self.kernel_size else c)

    def get_config(self):
        return {**super().get_config(), "out_channels": self.out_channels, "kernel": self.kernel_size,
                "use_bias": self.use_bias, "up": self.up, "down": self.down,
                "resample_filter": self.resample_filter, "fused_resample": self.fused_resample,
                "init_mode": self.init_mode, "init_weight": self.init_weight, "init_bias": self.init_bias}


@register_keras_serializable(package="keras_tract")
class GroupNorm(keras.layers.Layer):
    """Group normalization over `min(num_groups, C // min_channels_per_group)` groups, in float32.

    Call arguments:
        x: `(B, H, W, C)`; output of the same shape and dtype.
    """

    def __init__(self, num_groups=32, min_channels_per_group=4, eps=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.num_groups, self.min_channels_per_group, self.eps = num_groups, min_channels_per_group, eps

    def build(self, input_shape):
        channels = input_shape[-1]
        self.groups = min(self.num_groups, channels // self.min_channels_per_group)
        self.gamma = self.add_weight(shape=(channels,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta")

    def call(self, x):
        h = backend.group_norm(cast(x, "float32"), self.groups, cast(self.gamma, "float32"),
                               cast(self.beta, "float32"), self.eps)
        return cast(h, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "num_groups": self.num_groups,
                "min_channels_per_group": self.min_channels_per_group, "eps": self.eps}


@register_keras_serializable(package="keras_tract")
class PositionalEmbedding(keras.layers.Layer):
    """`[cos(x f), sin(x f)]` with `f_k = (1 / max_positions)^(k / (C/2 - endpoint))`; `(B,)` -> `(B, C)`."""

    def __init__(self, num_channels, max_positions=10000, endpoint=False, **kwargs):
        super().__init__(**kwargs)
        self.num_channels, self.max_positions, self.endpoint = num_channels, max_positions, endpoint

    def call(self, x):
        half = self.num_channels // 2
        freqs = (1.0 / self.max_positions) ** (np.arange(half) / (half - int(self.endpoint)))
        x = ops.cast(x, "float32")[:, None] * backend.constant(freqs, "float32")
        return ops.concatenate([ops.cos(x), ops.sin(x)], axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_channels)

    def get_config(self):
        return {**super().get_config(), "num_channels": self.num_channels,
                "max_positions": self.max_positions, "endpoint": self.endpoint}


@register_keras_serializable(package="keras_tract")
class FourierEmbedding(keras.layers.Layer):
    """`[cos(2 pi f x), sin(2 pi f x)]` with stored random frequencies `f ~ N(0, scale^2)` (NCSN++).

    The frequencies are a non-trainable weight: they must be loaded with a
    checkpoint, never drawn again.
    """

    def __init__(self, num_channels, scale=16.0, **kwargs):
        super().__init__(**kwargs)
        self.num_channels, self.scale = num_channels, scale

    def build(self, input_shape):
        self.freqs = self.add_weight(shape=(self.num_channels // 2,), name="freqs", trainable=False,
                                     initializer="zeros" if _ZERO_INIT else
                                     WeightInit("normal", self.scale))

    def call(self, x):
        x = ops.cast(x, "float32")[:, None] * (2 * np.pi * ops.cast(self.freqs, "float32"))
        return ops.concatenate([ops.cos(x), ops.sin(x)], axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_channels)

    def get_config(self):
        return {**super().get_config(), "num_channels": self.num_channels, "scale": self.scale}


def attention(q, k, v):
    """`softmax(q k^T / sqrt(d)) v` in float32, cast back to `q`'s dtype; `(B, T, heads, d)` each.

    `ops.dot_product_attention` runs the backend's fused kernel (PyTorch's
    `scaled_dot_product_attention`: 3x the einsum form on CPU).
    """
    dtype = q.dtype
    q, k, v = (cast(t, "float32") for t in (q, k, v))
    return cast(ops.dot_product_attention(q, k, v), dtype)


@register_keras_serializable(package="keras_tract")
class UNetBlock(keras.layers.Layer):
    """EDM's U-Net block: GroupNorm, SiLU, conv (optionally resampling), embedding injection,
    conv, skip connection, and optional self-attention.

    Args:
        out_channels, up, down, attention, num_heads, channels_per_head, dropout,
        skip_scale, eps, resample_filter, resample_proj, adaptive_scale: as EDM.
        init, init_zero, init_attn: dicts of EDM initialization arguments.

    Call arguments:
        inputs: `[x, emb]` with `x` `(B, H, W, C_in)` and `emb` `(B, E)`.
    """

    def __init__(self, out_channels, up=False, down=False, attention=False, num_heads=None,
                 channels_per_head=64, dropout=0.0, skip_scale=1.0, eps=1e-5, resample_filter=(1, 1),
                 resample_proj=False, adaptive_scale=True, init=None, init_zero=None, init_attn=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.out_channels, self.up, self.down, self.attention = out_channels, up, down, attention
        self.num_heads = 0 if not attention else num_heads if num_heads is not None else (
            out_channels // channels_per_head)
        self.channels_per_head, self.dropout, self.skip_scale, self.eps = channels_per_head, dropout, skip_scale, eps
        self.resample_filter, self.resample_proj = list(resample_filter), resample_proj
        self.adaptive_scale = adaptive_scale
        self.init = dict(init or {})
        self.init_zero = dict(init_zero if init_zero is not None else {"init_weight": 0})
        self.init_attn = None if init_attn is None else dict(init_attn)

    def build(self, input_shape):
        x_shape, emb_shape = input_shape
        cin, cout, policy = x_shape[-1], self.out_channels, self.dtype_policy
        self.in_channels = cin
        resample = dict(up=self.up, down=self.down, resample_filter=self.resample_filter)
        self.norm0 = GroupNorm(eps=self.eps, dtype=policy, name="norm0")
        self.conv0 = Conv2D(cout, 3, **resample, **self.init, dtype=policy, name="conv0")
        self.affine = Linear(cout * (2 if self.adaptive_scale else 1), **self.init, dtype=policy, name="affine")
        self.norm1 = GroupNorm(eps=self.eps, dtype=policy, name="norm1")
        self.conv1 = Conv2D(cout, 3, **self.init_zero, dtype=policy, name="conv1")
        self.skip = None
        if cout != cin or self.up or self.down:
            kernel = 1 if self.resample_proj or cout != cin else 0
            self.skip = Conv2D(cout, kernel, **resample, **self.init, dtype=policy, name="skip")
        self.drop = Dropout(self.dropout, dtype=policy, name="dropout") if self.dropout else None
        self.norm0.build(x_shape)
        self.conv0.build(x_shape)
        hidden_shape = self.conv0.compute_output_shape(x_shape)
        self.affine.build(emb_shape)
        self.norm1.build(hidden_shape)
        self.conv1.build(hidden_shape)
        if self.skip is not None:
            self.skip.build(x_shape)
        if self.num_heads:
            self.norm2 = GroupNorm(eps=self.eps, dtype=policy, name="norm2")
            init_attn = self.init_attn if self.init_attn is not None else self.init
            self.qkv = Conv2D(cout * 3, 1, **init_attn, dtype=policy, name="qkv")
            self.proj = Conv2D(cout, 1, **self.init_zero, dtype=policy, name="proj")
            self.norm2.build(hidden_shape)
            self.qkv.build(hidden_shape)
            self.proj.build(hidden_shape)

    def call(self, inputs, training=False):
        x, emb = inputs
        orig = x
        x = self.conv0.call(ops.silu(self.norm0.call(x)))
        params = cast(self.affine.call(emb), x.dtype)[:, None, None, :]
        if self.adaptive_scale:
            scale, shift = ops.split(params, 2, axis=-1)
            x = ops.silu(shift + self.norm1.call(x) * (scale + 1))
        else:
            x = ops.silu(self.norm1.call(x + params))
        if self.drop is not None:
            x = self.drop.call(x, training=training)
        x = self.conv1.call(x)
        x = (x + (self.skip.call(orig) if self.skip is not None else orig)) * self.skip_scale
        if self.num_heads:
            x = (self.proj.call(self.attend(self.qkv.call(self.norm2.call(x)))) + x) * self.skip_scale
        return x

    def attend(self, qkv):
        """Multi-head self-attention over pixels; qkv channels interleaved per channel as in EDM."""
        batch, height, width, _ = ops.shape(qkv)
        heads, channels = self.num_heads, self.out_channels
        qkv = ops.reshape(qkv, (batch, height * width, heads, channels // heads, 3))
        out = attention(*ops.unstack(qkv, 3, axis=-1))  # one op (and one gradient op), not three slices
        return ops.reshape(out, (batch, height, width, channels))

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape[0]
        scale = 2.0 if self.up else 0.5 if self.down else 1.0
        size = lambda n: None if n is None else int(n * scale)  # noqa: E731
        return (b, size(h), size(w), self.out_channels)

    def get_config(self):
        return {**super().get_config(), "out_channels": self.out_channels, "up": self.up, "down": self.down,
                "attention": self.attention, "num_heads": self.num_heads or None,
                "channels_per_head": self.channels_per_head, "dropout": self.dropout,
                "skip_scale": self.skip_scale, "eps": self.eps, "resample_filter": self.resample_filter,
                "resample_proj": self.resample_proj, "adaptive_scale": self.adaptive_scale,
                "init": self.init, "init_zero": self.init_zero, "init_attn": self.init_attn}


class UNetBase(keras.layers.Layer):
    """Arguments, validation, output shape and config shared by `SongUNet` and `DhariwalUNet`."""

    def __init__(self, out_channels, label_dim, model_channels, channel_mult, channel_mult_emb, num_blocks,
                 attn_resolutions, dropout, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got dropout={dropout!r}.")
        self.out_channels, self.label_dim, self.model_channels = out_channels, label_dim, model_channels
        self.channel_mult, self.channel_mult_emb = list(channel_mult), channel_mult_emb
        self.num_blocks, self.attn_resolutions, self.dropout = num_blocks, list(attn_resolutions), dropout

    def compute_output_shape(self, input_shape):
        x_shape = tuple(input_shape[0])
        return x_shape[:-1] + (self.out_channels or x_shape[-1],)

    def get_config(self):
        return {**super().get_config(), "out_channels": self.out_channels, "label_dim": self.label_dim,
                "model_channels": self.model_channels, "channel_mult": self.channel_mult,
                "channel_mult_emb": self.channel_mult_emb, "num_blocks": self.num_blocks,
                "attn_resolutions": self.attn_resolutions, "dropout": self.dropout}
