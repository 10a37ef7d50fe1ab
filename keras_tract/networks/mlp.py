"""A small residual MLP network for vector data (2-D toys, flattened digits)."""

import keras
import numpy as np
from keras import ops
from keras.saving import register_keras_serializable

from keras_tract import backend
from keras_tract.networks.layers import Dropout, WeightInit


@register_keras_serializable(package="keras_tract")
class MLPNetwork(keras.layers.Layer):
    """Residual MLP `F([x, c_noise(, labels)])` for `x` of shape `(B, ...)`, flattened to `(B, D)`.

    `c_noise` `(B,)` is embedded with `embed_dim` sinusoids (as EDM's positional
    embedding), mapped by two dense layers and added inside every residual
    block: `h <- h + W_out silu(W_in silu(h) + W_emb silu(emb))`. The weights are
    held directly (no sub-layers), which keeps per-call overhead low on eager
    backends.

    Args:
        hidden: int, width of the hidden layers.
        depth: int, number of residual blocks.
        embed_dim: int (even), size of the sinusoidal noise embedding.
        num_classes: int or None; when set, one-hot labels `(B, num_classes)`
            are embedded and added to the noise embedding.
        dropout: float in [0, 1), dropout inside every residual block (training only).

    Call arguments:
        inputs: list `[x, c_noise]` or `[x, c_noise, labels]`.
        training: bool, enables dropout.

    Example:
    >>> net = MLPNetwork(hidden=64, depth=2)
    >>> tuple(net([np.zeros((3, 2)), np.zeros((3,))]).shape)
    (3, 2)
    """

    def __init__(self, hidden=128, depth=3, embed_dim=32, num_classes=None, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("hidden", hidden), ("depth", depth), ("embed_dim", embed_dim)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {name}={value!r}.")
        if embed_dim % 2:
            raise ValueError(f"`embed_dim` must be even, got embed_dim={embed_dim}.")
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
            raise ValueError(f"`num_classes` must be None or a positive integer, got num_classes={num_classes!r}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got dropout={dropout!r}.")
        self.hidden, self.depth, self.embed_dim, self.num_classes = hidden, depth, embed_dim, num_classes
        self.dropout = dropout

    @property
    def label_dim(self):
        """The number of classes, 0 when unconditional (as EDM's networks name it)."""
        return self.num_classes or 0

    def _dense(self, name, fan_in, units):
        kernel = self.add_weight(shape=(fan_in, units), initializer=WeightInit("xavier_uniform"),
                                 name=f"{name}_kernel")
        bias = self.add_weight(shape=(units,), initializer="zeros", name=f"{name}_bias")
        return kernel, bias

    def build(self, input_shape):
        dim, h = int(np.prod(input_shape[0][1:])), self.hidden
        self.map0 = self._dense("map0", self.embed_dim, h)
        self.map1 = self._dense("map1", h, h)
        self.map_label = self._dense("map_label", self.num_classes, h) if self.num_classes else None
        self.proj_in = self._dense("proj_in", dim, h)
        self.blocks = [[*self._dense(f"block{i}_emb", h, h), *self._dense(f"block{i}_in", h, h),
                        *self._dense(f"block{i}_out", h, h)] for i in range(self.depth)]
        self.norm_scale = self.add_weight(shape=(h,), initializer="ones", name="norm_scale")
        self.norm_bias = self.add_weight(shape=(h,), initializer="zeros", name="norm_bias")
        self.proj_out = self._dense("proj_out", h, dim)
        self.drop = Dropout(self.dropout, name="dropout") if self.dropout else None

    def call(self, inputs, training=False):
        dense = lambda x, w: ops.matmul(x, ops.cast(w[0], x.dtype)) + ops.cast(w[1], x.dtype)  # noqa: E731
        dtype = self.compute_dtype
        half = self.embed_dim // 2
        freqs = backend.constant(np.exp(np.log(64.0) * np.arange(half) / half), "float32")
        angle = ops.cast(ops.reshape(inputs[1], (-1, 1)), "float32") * freqs
        emb = dense(ops.cast(ops.concatenate([ops.cos(angle), ops.sin(angle)], axis=-1), dtype), self.map0)
        if self.map_label is not None:
            emb = emb + dense(ops.cast(inputs[2], dtype), self.map_label)
        emb = ops.silu(dense(ops.silu(emb), self.map1))
        x = inputs[0]
        h = dense(ops.cast(ops.reshape(x, (ops.shape(x)[0], -1)), dtype), self.proj_in)
        for w in self.blocks:
            r = dense(ops.silu(h), w[2:4]) + dense(emb, w[0:2])
            r = ops.silu(r) if self.drop is None else self.drop(ops.silu(r), training=training)
            h = h + dense(r, w[4:6])
        h32 = ops.cast(h, "float32")
        mean = ops.mean(h32, axis=-1, keepdims=True)
        h32 = (h32 - mean) * ops.rsqrt(ops.var(h32, axis=-1, keepdims=True) + 1e-5)
        h = ops.cast(h32 * self.norm_scale + self.norm_bias, dtype)
        return ops.reshape(dense(ops.silu(h), self.proj_out), ops.shape(x))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden, "depth": self.depth,
                "embed_dim": self.embed_dim, "num_classes": self.num_classes, "dropout": self.dropout}
