"""The U-Net of progressive distillation (Salimans & Ho 2022), channels-last.

The original is Flax: google-research `diffusion_distillation/unet.py` (its `UNet`,
`ResnetBlock` and `AttnBlock`). Layer names follow its parameter names
(`down_0.block_1` becomes `down_0_block_1`) so a checkpoint maps one to one; kernels are
Flax's layouts: convolutions `(kh, kw, in, out)`, dense `(in, out)`. GroupNorm has 32
groups and epsilon 1e-6, as Flax's default (ml-tract's PyTorch port uses 1e-5).
"""

import keras
import numpy as np
from keras import ops
from keras.saving import register_keras_serializable

from keras_tract import backend
from keras_tract.networks.layers import Conv2D, Dropout, GroupNorm, Linear, attention

LOGSNR_INPUTS = ("inv_cos", "linear", "sigmoid")
_ZERO = {"init_weight": 0.0}


def _group_norm(eps, policy, name):
    return GroupNorm(num_groups=32, min_channels_per_group=1, eps=eps, dtype=policy, name=name)


def _resample(x, mode):
    """Nearest-neighbour 2x upsampling or 2x2 average pooling of `(B, H, W, C)`."""
    if mode == "up":
        return ops.repeat(ops.repeat(x, 2, axis=1), 2, axis=2)
    return backend.average_pool2(x)


def timestep_embedding(t, channels):
    """`[sin(t f), cos(t f)]` with `f_k = 10000^(-k / (channels/2 - 1))`; `(B,)` -> `(B, channels)`."""
    half = channels // 2
    freqs = np.exp(-np.log(10000.0) * np.arange(half) / (half - 1)).astype("float32")
    t = ops.cast(t, "float32")[:, None] * backend.constant(freqs, "float32")
    return ops.concatenate([ops.sin(t), ops.cos(t)], axis=1)


@register_keras_serializable(package="keras_tract")
class GoogleResBlock(keras.layers.Layer):
    """Flax `ResnetBlock`: GroupNorm, swish, optional resampling of both paths, conv, scale and
    shift from the embedding, GroupNorm, swish, dropout, zero-initialised conv, residual.

    Args:
        out_channels: int or None (None: as many as the input).
        resample: None, `"up"` or `"down"`.
        dropout: float in [0, 1). eps: GroupNorm epsilon.

    Call arguments:
        inputs: `[x, emb]`, `x` `(B, H, W, C_in)`, `emb` `(B, E)`; output `(B, H', W', out_channels)`.
        training: bool, enables dropout.
    """

    def __init__(self, out_channels=None, resample=None, dropout=0.0, eps=1e-6, **kwargs):
        super().__init__(**kwargs)
        if resample not in (None, "up", "down"):
            raise ValueError(f'`resample` must be None, "up" or "down", got resample={resample!r}.')
        self.out_channels, self.resample, self.dropout, self.eps = out_channels, resample, dropout, eps

    def build(self, input_shape):
        x_shape, emb_shape = (tuple(s) for s in input_shape)
        cin, policy = x_shape[-1], self.dtype_policy
        cout = self.out_channels or cin
        hidden = self.compute_output_shape(input_shape)
        self.norm1 = _group_norm(self.eps, policy, "norm1")
        self.conv1 = Conv2D(cout, 3, dtype=policy, name="conv1")
        self.temb_proj = Linear(2 * cout, dtype=policy, name="temb_proj")
        self.norm2 = _group_norm(self.eps, policy, "norm2")
        self.conv2 = Conv2D(cout, 3, **_ZERO, dtype=policy, name="conv2")
        self.nin_shortcut = Linear(cout, dtype=policy, name="nin_shortcut") if cin != cout else None
        self.drop = Dropout(self.dropout, dtype=policy, name="dropout") if self.dropout else None
        self.norm1.build(x_shape)
        self.conv1.build(hidden[:-1] + (cin,))
        self.temb_proj.build(emb_shape)
        self.norm2.build(hidden)
        self.conv2.build(hidden)
        if self.nin_shortcut is not None:
            self.nin_shortcut.build(x_shape)

    def call(self, inputs, training=False):
        x, emb = inputs
        h = ops.silu(self.norm1.call(x))
        if self.resample:
            h, x = _resample(h, self.resample), _resample(x, self.resample)
        h = self.conv1.call(h)
        scale, shift = ops.split(ops.cast(self.temb_proj.call(ops.silu(emb)), h.dtype)[:, None, None, :], 2, axis=-1)
        h = ops.silu(self.norm2.call(h) * (1 + scale) + shift)
        if self.drop is not None:
            h = self.drop.call(h, training=training)
        h = self.conv2.call(h)
        return (x if self.nin_shortcut is None else self.nin_shortcut.call(x)) + h

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape[0]
        scale = {"up": 2.0, "down": 0.5, None: 1.0}[self.resample]
        size = lambda n: None if n is None else int(n * scale)  # noqa: E731
        return (b, size(h), size(w), self.out_channels or c)

    def get_config(self):
        return {**super().get_config(), "out_channels": self.out_channels, "resample": self.resample,
                "dropout": self.dropout, "eps": self.eps}


@register_keras_serializable(package="keras_tract")
class GoogleAttention(keras.layers.Layer):
    """Flax `AttnBlock`: GroupNorm, per-head q, k, v, softmax(q k^T / sqrt(head_dim)) v, zero-initialised
    output projection, residual. Flax's `(C, heads, head_dim)` kernels are stored as `(C, heads * head_dim)`.

    Args:
        num_heads: int, or None to derive it from `head_dim`. head_dim: int or None (exactly one is set).
        eps: GroupNorm epsilon.

    Call arguments:
        x: `(B, H, W, C)`; output of the same shape.
    """

    def __init__(self, num_heads=None, head_dim=None, eps=1e-6, **kwargs):
        super().__init__(**kwargs)
        if (num_heads is None) == (head_dim is None):
            raise ValueError(f"Set exactly one of `num_heads` and `head_dim`, got num_heads={num_heads!r}, "
                             f"head_dim={head_dim!r}.")
        self.num_heads, self.head_dim, self.eps = num_heads, head_dim, eps

    def build(self, input_shape):
        channels, policy = input_shape[-1], self.dtype_policy
        per = self.head_dim or channels // self.num_heads
        if channels % per:
            raise ValueError(f"{self.name}: {channels} channels do not split into heads of {per}.")
        self.heads = channels // per
        self.norm = _group_norm(self.eps, policy, "norm")
        self.q, self.k, self.v = (Linear(channels, dtype=policy, name=n) for n in "qkv")
        self.proj_out = Linear(channels, **_ZERO, dtype=policy, name="proj_out")
        self.norm.build(input_shape)
        for layer in (self.q, self.k, self.v, self.proj_out):
            layer.build((None, channels))

    def call(self, x):
        b, height, width, c = ops.shape(x)
        h = ops.reshape(self.norm.call(x), (b, height * width, c))
        q, k, v = (ops.reshape(f.call(h), (b, height * width, self.heads, c // self.heads))
                   for f in (self.q, self.k, self.v))
        out = self.proj_out.call(ops.reshape(attention(q, k, v), (b, height * width, c)))
        return x + ops.reshape(out, (b, height, width, c))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "head_dim": self.head_dim, "eps": self.eps}


@register_keras_serializable(package="keras_tract")
class GoogleUNet(keras.layers.Layer):
    """The progressive-distillation U-Net, called on `[z, logsnr]` or `[z, logsnr, labels]`.

    `logsnr` becomes a time-like input (`"inv_cos"`: `arctan(exp(-logsnr/2)) / (pi/2)`, logsnr
    clipped to [-20, 20]), embedded with `model_channels` sinusoids of `1000 t`, then two dense
    layers; one-hot labels pass a dense layer and are added. Residual blocks resample when
    `resblock_resample` (the published models), else a stride-2 conv / nearest-neighbour + conv.
    `VPDenoiser` drives it.

    Args:
        out_channels: int or None (None: as many as the input; twice that for an x-and-eps model).
        label_dim: int, number of classes (0: unconditional; Flax's `num_classes=1`).
        model_channels, emb_channels, channel_mult, num_blocks, attn_resolutions: Flax's `ch`,
            `emb_ch`, `ch_mult`, `num_res_blocks`, `attn_resolutions`.
        num_heads, head_dim: attention heads, or channels per head (exactly one is set).
        dropout: float in [0, 1). resblock_resample: bool.
        logsnr_input_type: one of `LOGSNR_INPUTS`. logsnr_scale_range: the range of `"linear"`.
        eps: GroupNorm epsilon.

    Call arguments:
        inputs: `[z, logsnr]` or `[z, logsnr, labels]`: `z` `(B, H, W, C)`, `logsnr` `(B,)`,
            `labels` `(B, label_dim)` one-hot. training: bool, enables dropout.

    Example:
    >>> net = GoogleUNet(model_channels=32, emb_channels=64, channel_mult=[1, 2], num_blocks=1,
    ...                  attn_resolutions=[4], dropout=0.0)
    >>> tuple(net([np.zeros((2, 8, 8, 3)), np.zeros((2,))]).shape)
    (2, 8, 8, 3)
    """

    def __init__(self, out_channels=None, label_dim=0, model_channels=256, emb_channels=1024,
                 channel_mult=(1, 1, 1), num_blocks=3, attn_resolutions=(8, 16), num_heads=1, head_dim=None,
                 dropout=0.2, resblock_resample=True, logsnr_input_type="inv_cos",
                 logsnr_scale_range=(-10.0, 10.0), eps=1e-6, **kwargs):
        super().__init__(**kwargs)
        if logsnr_input_type not in LOGSNR_INPUTS:
            raise ValueError(f"`logsnr_input_type` must be one of {LOGSNR_INPUTS}, "
                             f"got logsnr_input_type={logsnr_input_type!r}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got dropout={dropout!r}.")
        if (num_heads is None) == (head_dim is None):
            raise ValueError(f"Set exactly one of `num_heads` and `head_dim`, got num_heads={num_heads!r}, "
                             f"head_dim={head_dim!r}.")
        self.out_channels, self.label_dim = out_channels, int(label_dim)
        self.model_channels, self.emb_channels = model_channels, emb_channels
        self.channel_mult, self.num_blocks = list(channel_mult), num_blocks
        self.attn_resolutions = list(attn_resolutions)
        self.num_heads, self.head_dim, self.dropout = num_heads, head_dim, dropout
        self.resblock_resample, self.logsnr_input_type = resblock_resample, logsnr_input_type
        self.logsnr_scale_range, self.eps = list(logsnr_scale_range), eps

    def _blocks(self, resolution):
        """`(key, kind, out_channels)` in call order; kind is block | attn | down | up."""
        out, ch, levels = [], self.model_channels, len(self.channel_mult)
        for i, mult in enumerate(self.channel_mult):
            res = resolution >> i
            for j in range(self.num_blocks):
                out.append((f"down_{i}.block_{j}", "block", ch * mult))
                if res in self.attn_resolutions:
                    out.append((f"down_{i}.attn_{j}", "attn", None))
            if i != levels - 1:
                out.append((f"down_{i}.downsample", "down", ch * mult))
        out += [("mid.block_1", "block", None), ("mid.attn_1", "attn", None), ("mid.block_2", "block", None)]
        for i in reversed(range(levels)):
            res = resolution >> i
            for j in range(self.num_blocks + 1):
                out.append((f"up_{i}.block_{j}", "block", ch * self.channel_mult[i]))
                if res in self.attn_resolutions:
                    out.append((f"up_{i}.attn_{j}", "attn", None))
            if i != 0:
                out.append((f"up_{i}.upsample", "up", ch * self.channel_mult[i]))
        return out

    def build(self, input_shape):
        x_shape = tuple(input_shape[0])
        batch, resolution, in_channels = x_shape[0], x_shape[1], x_shape[-1]
        policy, ch, emb = self.dtype_policy, self.model_channels, self.emb_channels
        self.dense0 = Linear(emb, dtype=policy, name="dense0")
        self.dense1 = Linear(emb, dtype=policy, name="dense1")
        self.class_emb = Linear(emb, dtype=policy, name="class_emb") if self.label_dim else None
        self.conv_in = Conv2D(ch, 3, dtype=policy, name="conv_in")
        self.norm_out = _group_norm(self.eps, policy, "norm_out")
        self.conv_out = Conv2D(self.out_channels or in_channels, 3, **_ZERO, dtype=policy, name="conv_out")
        attn = dict(num_heads=self.num_heads, head_dim=self.head_dim, eps=self.eps, dtype=policy)
        block = dict(dropout=self.dropout, eps=self.eps, dtype=policy)
        self.keys, self.blocks = [], []
        for key, kind, cout in self._blocks(resolution):
            name = key.replace(".", "_")
            if kind == "attn":
                layer = GoogleAttention(**attn, name=name)
            elif kind == "block" or self.resblock_resample:
                layer = GoogleResBlock(cout, resample=None if kind == "block" else kind, **block, name=name)
            else:
                layer = Conv2D(cout, 3, dtype=policy, name=name)
            self.keys.append(key)
            self.blocks.append(layer)

        self.dense0.build((batch, ch))
        self.dense1.build((batch, emb))
        if self.class_emb is not None:
            self.class_emb.build((batch, self.label_dim))
        self.conv_in.build(x_shape)
        emb_shape, shape = (batch, emb), x_shape[:-1] + (ch,)
        skips = [shape]
        for key, layer in zip(self.keys, self.blocks):
            if key.startswith("up_") and "block" in key:
                shape = shape[:-1] + (shape[-1] + skips.pop()[-1],)
            if isinstance(layer, GoogleResBlock):
                layer.build((shape, emb_shape))
                shape = layer.compute_output_shape((shape, emb_shape))
            else:
                layer.build(shape)
                shape = _resampled(shape, key)
            if key.startswith("down_") and "attn" not in key:
                skips.append(shape)
            elif key.startswith("down_"):
                skips[-1] = shape
        self.norm_out.build(shape)
        self.conv_out.build(shape)

    def logsnr_input(self, logsnr):
        """The network's time-like input for float32 `logsnr` `(B,)`."""
        if self.logsnr_input_type == "inv_cos":
            return ops.arctan(ops.exp(-0.5 * ops.clip(logsnr, -20.0, 20.0))) / (0.5 * np.pi)
        if self.logsnr_input_type == "sigmoid":
            return ops.sigmoid(logsnr)
        low, high = self.logsnr_scale_range
        return (logsnr - low) / (high - low)

    def call(self, inputs, training=False):
        x, logsnr = inputs[0], ops.cast(inputs[1], "float32")
        emb = timestep_embedding(1000.0 * self.logsnr_input(logsnr), self.model_channels)
        emb = self.dense1.call(ops.silu(self.dense0.call(ops.cast(emb, self.compute_dtype))))
        if self.class_emb is not None:
            emb = emb + self.class_emb.call(ops.cast(inputs[2], self.compute_dtype))
        h = self.conv_in.call(ops.cast(x, self.compute_dtype))
        skips = [h]
        for key, layer in zip(self.keys, self.blocks):
            if key.startswith("up_") and "block" in key:
                h = ops.concatenate([h, skips.pop()], axis=-1)
            if isinstance(layer, GoogleResBlock):
                h = layer.call([h, emb], training=training)
            elif isinstance(layer, GoogleAttention):
                h = layer.call(h)
            elif key.endswith("downsample"):
                h = layer.call(h)[:, 1::2, 1::2, :]  # Flax's stride-2 "SAME" conv pads (0, 1)
            else:
                h = layer.call(_resample(h, "up"))
            if key.startswith("down_") and "attn" not in key:
                skips.append(h)
            elif key.startswith("down_"):
                skips[-1] = h
        return self.conv_out.call(ops.silu(self.norm_out.call(h)))

    def compute_output_shape(self, input_shape):
        x_shape = tuple(input_shape[0])
        return x_shape[:-1] + (self.out_channels or x_shape[-1],)

    def get_config(self):
        return {**super().get_config(), "out_channels": self.out_channels, "label_dim": self.label_dim,
                "model_channels": self.model_channels, "emb_channels": self.emb_channels,
                "channel_mult": self.channel_mult, "num_blocks": self.num_blocks,
                "attn_resolutions": self.attn_resolutions, "num_heads": self.num_heads, "head_dim": self.head_dim,
                "dropout": self.dropout, "resblock_resample": self.resblock_resample,
                "logsnr_input_type": self.logsnr_input_type, "logsnr_scale_range": self.logsnr_scale_range,
                "eps": self.eps}


def _resampled(shape, key):
    scale = 0.5 if key.endswith("downsample") else 2.0 if key.endswith("upsample") else 1.0
    b, h, w, c = shape
    return (b, int(h * scale), int(w * scale), c)
