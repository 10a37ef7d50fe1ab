"""DDPM++ and NCSN++ (Song et al. 2021) as EDM re-implements them, channels-last."""

import numpy as np
from keras import ops
from keras.saving import register_keras_serializable

from keras_tract.networks.layers import (
    Conv2D,
    FourierEmbedding,
    GroupNorm,
    Linear,
    PositionalEmbedding,
    UNetBase,
    UNetBlock,
)


@register_keras_serializable(package="keras_tract")
class SongUNet(UNetBase):
    """EDM's `SongUNet`: the DDPM++ (positional embedding, standard encoder, [1,1] filter) and
    NCSN++ (Fourier embedding, residual encoder, [1,3,3,1] filter) architectures.

    Args:
        out_channels: int or None (None: as many as the input).
        label_dim: int, number of classes (0: unconditional).
        model_channels, channel_mult, channel_mult_emb, num_blocks, attn_resolutions, dropout,
        embedding_type ("positional" | "fourier"), channel_mult_noise,
        encoder_type ("standard" | "skip" | "residual"), decoder_type ("standard" | "skip"),
        resample_filter: as EDM's `SongUNet`.

    Call arguments:
        inputs: `[x, c_noise]` or `[x, c_noise, labels]`, `x` `(B, H, W, C)`,
            `c_noise` `(B,)`, `labels` `(B, label_dim)` one-hot.
        training: bool, enables dropout.

    Example:
    >>> net = keras_tract.networks.get("ddpmpp_small")
    >>> tuple(net([np.zeros((2, 8, 8, 1)), np.zeros((2,))]).shape)
    (2, 8, 8, 1)
    """

    def __init__(self, out_channels=None, label_dim=0, model_channels=128, channel_mult=(1, 2, 2, 2),
                 channel_mult_emb=4, num_blocks=4, attn_resolutions=(16,), dropout=0.10,
                 embedding_type="positional", channel_mult_noise=1, encoder_type="standard",
                 decoder_type="standard", resample_filter=(1, 1), **kwargs):
        super().__init__(out_channels, label_dim, model_channels, channel_mult, channel_mult_emb, num_blocks,
                         attn_resolutions, dropout, **kwargs)
        for name, value, choices in (("embedding_type", embedding_type, ("fourier", "positional")),
                                     ("encoder_type", encoder_type, ("standard", "skip", "residual")),
                                     ("decoder_type", decoder_type, ("standard", "skip"))):
            if value not in choices:
                raise ValueError(f"`{name}` must be one of {choices}, got {name}={value!r}.")
        self.embedding_type, self.channel_mult_noise = embedding_type, channel_mult_noise
        self.encoder_type, self.decoder_type = encoder_type, decoder_type
        self.resample_filter = list(resample_filter)

    def build(self, input_shape):
        x_shape = tuple(input_shape[0])
        resolution, in_channels = x_shape[1], x_shape[-1]
        out_channels = self.out_channels or in_channels
        policy, mc = self.dtype_policy, self.model_channels
        emb_channels, noise_channels = mc * self.channel_mult_emb, mc * self.channel_mult_noise
        init = {"init_mode": "xavier_uniform"}
        init_zero = {"init_mode": "xavier_uniform", "init_weight": 1e-5}
        init_attn = {"init_mode": "xavier_uniform", "init_weight": float(np.sqrt(0.2))}
        block = dict(num_heads=1, dropout=self.dropout, skip_scale=float(np.sqrt(0.5)), eps=1e-6,
                     resample_filter=self.resample_filter, resample_proj=True, adaptive_scale=False,
                     init=init, init_zero=init_zero, init_attn=init_attn, dtype=policy)

        if self.embedding_type == "positional":
            self.map_noise = PositionalEmbedding(noise_channels, endpoint=True, dtype=policy, name="map_noise")
        else:
            self.map_noise = FourierEmbedding(noise_channels, dtype=policy, name="map_noise")
        self.map_label = Linear(noise_channels, **init, dtype=policy, name="map_label") if self.label_dim else None
        self.map_layer0 = Linear(emb_channels, **init, dtype=policy, name="map_layer0")
        self.map_layer1 = Linear(emb_channels, **init, dtype=policy, name="map_layer1")

        # Encoder and decoder as EDM's ModuleDicts: (key, layer, input channels) in call order.
        enc, dec = [], []
        add_enc = lambda key, layer, cin: enc.append((key, layer, cin))  # noqa: E731
        cout, caux = in_channels, in_channels
        for level, mult in enumerate(self.channel_mult):
            res = resolution >> level
            if level == 0:
                cout = mc
                add_enc(f"{res}x{res}_conv", Conv2D(cout, 3, **init, dtype=policy, name=f"enc_{res}x{res}_conv"),
                        in_channels)
            else:
                add_enc(f"{res}x{res}_down", UNetBlock(cout, down=True, **block, name=f"enc_{res}x{res}_down"), cout)
                if self.encoder_type == "skip":
                    add_enc(f"{res}x{res}_aux_down", Conv2D(caux, 0, down=True, resample_filter=self.resample_filter,
                                                            dtype=policy, name=f"enc_{res}x{res}_aux_down"), caux)
                    add_enc(f"{res}x{res}_aux_skip",
                            Conv2D(cout, 1, **init, dtype=policy, name=f"enc_{res}x{res}_aux_skip"), caux)
                if self.encoder_type == "residual":
                    add_enc(f"{res}x{res}_aux_residual", Conv2D(
                        cout, 3, down=True, resample_filter=self.resample_filter, fused_resample=True, **init,
                        dtype=policy, name=f"enc_{res}x{res}_aux_residual"), caux)
                    caux = cout
            for idx in range(self.num_blocks):
                cin, cout = cout, mc * mult
                add_enc(f"{res}x{res}_block{idx}", UNetBlock(cout, attention=res in self.attn_resolutions, **block,
                                                             name=f"enc_{res}x{res}_block{idx}"), cin)
        skips = [layer.out_channels for key, layer, _ in enc if "aux" not in key]

        add_dec = lambda key, layer, cin: dec.append((key, layer, cin))  # noqa: E731
        for level, mult in reversed(list(enumerate(self.channel_mult))):
            res = resolution >> level
            if level == len(self.channel_mult) - 1:
                add_dec(f"{res}x{res}_in0", UNetBlock(cout, attention=True, **block, name=f"dec_{res}x{res}_in0"), cout)
                add_dec(f"{res}x{res}_in1", UNetBlock(cout, **block, name=f"dec_{res}x{res}_in1"), cout)
            else:
                add_dec(f"{res}x{res}_up", UNetBlock(cout, up=True, **block, name=f"dec_{res}x{res}_up"), cout)
            for idx in range(self.num_blocks + 1):
                cin, cout = cout + skips.pop(), mc * mult
                attn = idx == self.num_blocks and res in self.attn_resolutions
                add_dec(f"{res}x{res}_block{idx}",
                        UNetBlock(cout, attention=attn, **block, name=f"dec_{res}x{res}_block{idx}"), cin)
            if self.decoder_type == "skip" or level == 0:
                if self.decoder_type == "skip" and level < len(self.channel_mult) - 1:
                    up = Conv2D(out_channels, 0, up=True, resample_filter=self.resample_filter, dtype=policy,
                                name=f"dec_{res}x{res}_aux_up")
                    add_dec(f"{res}x{res}_aux_up", up, out_channels)
                add_dec(f"{res}x{res}_aux_norm", GroupNorm(eps=1e-6, dtype=policy, name=f"dec_{res}x{res}_aux_norm"),
                        cout)
                add_dec(f"{res}x{res}_aux_conv",
                        Conv2D(out_channels, 3, **init_zero, dtype=policy, name=f"dec_{res}x{res}_aux_conv"), cout)

        self.enc_keys, self.enc = [e[0] for e in enc], [e[1] for e in enc]
        self.dec_keys, self.dec = [d[0] for d in dec], [d[1] for d in dec]
        self.dec_in_channels = [d[2] for d in dec]
        self._build_sublayers(x_shape, emb_channels, noise_channels)

    def _build_sublayers(self, x_shape, emb_channels, noise_channels):
        batch = x_shape[0]
        self.map_noise.build((batch,))
        if self.map_label is not None:
            self.map_label.build((batch, self.label_dim))
        self.map_layer0.build((batch, noise_channels))
        self.map_layer1.build((batch, emb_channels))
        emb_shape = (batch, emb_channels)
        shape = aux_shape = x_shape
        skips = []
        for key, layer in zip(self.enc_keys, self.enc):
            if "aux" in key:
                layer.build(aux_shape)
                if "aux_skip" not in key:
                    aux_shape = layer.compute_output_shape(aux_shape)
            elif isinstance(layer, UNetBlock):
                layer.build((shape, emb_shape))
                shape = layer.compute_output_shape((shape, emb_shape))
                skips.append(shape)
            else:
                layer.build(shape)
                shape = layer.compute_output_shape(shape)
                skips.append(shape)
        aux_shape = None
        for key, layer, cin in zip(self.dec_keys, self.dec, self.dec_in_channels):
            if "aux_up" in key:
                layer.build(aux_shape)
                aux_shape = layer.compute_output_shape(aux_shape)
            elif "aux" in key:
                layer.build(shape)
                aux_shape = layer.compute_output_shape(shape)
            else:
                if shape[-1] != cin:
                    shape = shape[:-1] + (shape[-1] + skips.pop()[-1],)
                layer.build((shape, emb_shape))
                shape = layer.compute_output_shape((shape, emb_shape))

    def call(self, inputs, training=False):
        x, c_noise = inputs[0], inputs[1]
        emb = self.map_noise.call(c_noise)
        half = emb.shape[-1] // 2
        emb = ops.concatenate([emb[:, half:], emb[:, :half]], axis=-1)  # [sin, cos] as EDM
        emb = ops.cast(emb, self.compute_dtype)
        if self.map_label is not None:
            emb = emb + self.map_label.call(ops.cast(inputs[2], self.compute_dtype) * np.sqrt(self.label_dim))
        emb = ops.silu(self.map_layer1.call(ops.silu(self.map_layer0.call(emb))))

        x = ops.cast(x, self.compute_dtype)
        skips, aux = [], x
        for name, layer in zip(self.enc_keys, self.enc):
            if "aux_down" in name:
                aux = layer.call(aux)
            elif "aux_skip" in name:
                x = skips[-1] = x + layer.call(aux)
            elif "aux_residual" in name:
                x = skips[-1] = aux = (x + layer.call(aux)) / np.sqrt(2)
            else:
                x = layer.call([x, emb], training=training) if isinstance(layer, UNetBlock) else layer.call(x)
                skips.append(x)
        aux = tmp = None
        for name, layer, cin in zip(self.dec_keys, self.dec, self.dec_in_channels):
            if "aux_up" in name:
                aux = layer.call(aux)
            elif "aux_norm" in name:
                tmp = layer.call(x)
            elif "aux_conv" in name:
                tmp = layer.call(ops.silu(tmp))
                aux = tmp if aux is None else tmp + aux
            else:
                if x.shape[-1] != cin:
                    x = ops.concatenate([x, skips.pop()], axis=-1)
                x = layer.call([x, emb], training=training)
        return aux

    def get_config(self):
        return {**super().get_config(), "embedding_type": self.embedding_type,
                "channel_mult_noise": self.channel_mult_noise, "encoder_type": self.encoder_type,
                "decoder_type": self.decoder_type, "resample_filter": self.resample_filter}
