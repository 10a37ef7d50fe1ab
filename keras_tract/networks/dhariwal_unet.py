"""ADM (Dhariwal & Nichol 2021) as EDM re-implements it, channels-last."""

import numpy as np
from keras import ops
from keras.saving import register_keras_serializable

from keras_tract.networks.layers import Conv2D, GroupNorm, Linear, PositionalEmbedding, UNetBase, UNetBlock


@register_keras_serializable(package="keras_tract")
class DhariwalUNet(UNetBase):
    """EDM's `DhariwalUNet` (ADM): adaptive scale/shift blocks, attention with 64 channels per head,
    class labels added to the embedding after `map_layer1`.

    Args:
        out_channels: int or None (None: as many as the input).
        label_dim: int, number of classes (0: unconditional).
        model_channels, channel_mult, channel_mult_emb, num_blocks, attn_resolutions, dropout,
        channels_per_head: as EDM's `DhariwalUNet`.

    Call arguments:
        inputs: `[x, c_noise]` or `[x, c_noise, labels]`, `x` `(B, H, W, C)`,
            `c_noise` `(B,)`, `labels` `(B, label_dim)` one-hot.
        training: bool, enables dropout.
    """

    def __init__(self, out_channels=None, label_dim=0, model_channels=192, channel_mult=(1, 2, 3, 4),
                 channel_mult_emb=4, num_blocks=3, attn_resolutions=(32, 16, 8), dropout=0.10,
                 channels_per_head=64, **kwargs):
        super().__init__(out_channels, label_dim, model_channels, channel_mult, channel_mult_emb, num_blocks,
                         attn_resolutions, dropout, **kwargs)
        self.channels_per_head = channels_per_head

    def build(self, input_shape):
        x_shape = tuple(input_shape[0])
        batch, resolution, in_channels = x_shape[0], x_shape[1], x_shape[-1]
        policy, mc = self.dtype_policy, self.model_channels
        emb_channels = mc * self.channel_mult_emb
        third = float(np.sqrt(1 / 3))
        init = {"init_mode": "kaiming_uniform", "init_weight": third, "init_bias": third}
        init_zero = {"init_mode": "kaiming_uniform", "init_weight": 0.0, "init_bias": 0.0}
        block = dict(channels_per_head=self.channels_per_head, dropout=self.dropout, init=init,
                     init_zero=init_zero, dtype=policy)

        self.map_noise = PositionalEmbedding(mc, dtype=policy, name="map_noise")
        self.map_layer0 = Linear(emb_channels, **init, dtype=policy, name="map_layer0")
        self.map_layer1 = Linear(emb_channels, **init, dtype=policy, name="map_layer1")
        self.map_label = Linear(emb_channels, use_bias=False, init_mode="kaiming_normal",
                                init_weight=float(np.sqrt(self.label_dim)), dtype=policy,
                                name="map_label") if self.label_dim else None

        self.enc, self.dec, self.dec_in_channels = [], [], []
        cout = in_channels
        for level, mult in enumerate(self.channel_mult):
            res = resolution >> level
            if level == 0:
                cout = mc * mult
                self.enc.append(Conv2D(cout, 3, **init, dtype=policy, name=f"enc_{res}x{res}_conv"))
            else:
                self.enc.append(UNetBlock(cout, down=True, **block, name=f"enc_{res}x{res}_down"))
            for idx in range(self.num_blocks):
                cout = mc * mult
                self.enc.append(UNetBlock(cout, attention=res in self.attn_resolutions, **block,
                                          name=f"enc_{res}x{res}_block{idx}"))
        skips = [layer.out_channels for layer in self.enc]
        for level, mult in reversed(list(enumerate(self.channel_mult))):
            res = resolution >> level
            if level == len(self.channel_mult) - 1:
                self.dec += [UNetBlock(cout, attention=True, **block, name=f"dec_{res}x{res}_in0"),
                             UNetBlock(cout, **block, name=f"dec_{res}x{res}_in1")]
                self.dec_in_channels += [cout, cout]
            else:
                self.dec.append(UNetBlock(cout, up=True, **block, name=f"dec_{res}x{res}_up"))
                self.dec_in_channels.append(cout)
            for idx in range(self.num_blocks + 1):
                cin, cout = cout + skips.pop(), mc * mult
                self.dec.append(UNetBlock(cout, attention=res in self.attn_resolutions, **block,
                                          name=f"dec_{res}x{res}_block{idx}"))
                self.dec_in_channels.append(cin)
        self.out_norm = GroupNorm(dtype=policy, name="out_norm")
        self.out_conv = Conv2D(self.out_channels or in_channels, 3, **init_zero, dtype=policy, name="out_conv")

        self.map_noise.build((batch,))
        self.map_layer0.build((batch, mc))
        self.map_layer1.build((batch, emb_channels))
        if self.map_label is not None:
            self.map_label.build((batch, self.label_dim))
        emb_shape, shape, shapes = (batch, emb_channels), x_shape, []
        for layer in self.enc:
            args = (shape, emb_shape) if isinstance(layer, UNetBlock) else shape
            layer.build(args)
            shape = layer.compute_output_shape(args)
            shapes.append(shape)
        for layer, cin in zip(self.dec, self.dec_in_channels):
            if shape[-1] != cin:
                shape = shape[:-1] + (shape[-1] + shapes.pop()[-1],)
            layer.build((shape, emb_shape))
            shape = layer.compute_output_shape((shape, emb_shape))
        self.out_norm.build(shape)
        self.out_conv.build(shape)

    def call(self, inputs, training=False):
        x, c_noise = inputs[0], inputs[1]
        emb = ops.cast(self.map_noise.call(c_noise), self.compute_dtype)
        emb = self.map_layer1.call(ops.silu(self.map_layer0.call(emb)))
        if self.map_label is not None:
            emb = emb + self.map_label.call(ops.cast(inputs[2], self.compute_dtype))
        emb = ops.silu(emb)
        x = ops.cast(x, self.compute_dtype)
        skips = []
        for layer in self.enc:
            x = layer.call([x, emb], training=training) if isinstance(layer, UNetBlock) else layer.call(x)
            skips.append(x)
        for layer, cin in zip(self.dec, self.dec_in_channels):
            if x.shape[-1] != cin:
                x = ops.concatenate([x, skips.pop()], axis=-1)
            x = layer.call([x, emb], training=training)
        return self.out_conv.call(ops.silu(self.out_norm.call(x)))

    def get_config(self):
        return {**super().get_config(), "channels_per_head": self.channels_per_head}
