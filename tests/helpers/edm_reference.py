"""An independent PyTorch (NCHW) reference of EDM's `EDMPrecond`, `SongUNet` and `DhariwalUNet`
(NVlabs/edm `training/networks.py`), which also pickles the way EDM's `torch_utils.persistence`
writes its networks: `_reconstruct_persistent_obj(meta)` with the module's `__dict__` as `meta.state`.

`write_pickle` writes `{"ema": net, ...}` as NVlabs publishes it; loading it with EDM's own code
would execute `meta.module_src`, which the converter must never do.
"""

import pickle
import sys
import types

import numpy as np
import torch
import torch.nn.functional as F

silu = F.silu


def _persistence_module():
    """A stand-in `torch_utils.persistence` so pickle can name the reconstructor global."""
    pkg = sys.modules.setdefault("torch_utils", types.ModuleType("torch_utils"))
    mod = sys.modules.setdefault("torch_utils.persistence", types.ModuleType("torch_utils.persistence"))
    if not hasattr(mod, "_reconstruct_persistent_obj"):
        def _reconstruct_persistent_obj(meta):
            raise RuntimeError("the reference pickles are only written here")

        _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
        _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
        mod._reconstruct_persistent_obj = _reconstruct_persistent_obj
        pkg.persistence = mod
    return mod


class Persistent(torch.nn.Module):
    """A module that pickles as a `torch_utils.persistence` object, recording its non-default arguments."""

    module_src = "raise SystemExit('never executed')\n"  # EDM stores training/networks.py here

    def __init__(self, **init_kwargs):
        super().__init__()
        self._init_kwargs = init_kwargs

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src=type(self).module_src, class_name=type(self).__name__,
                    state=dict(self.__dict__))
        return _persistence_module()._reconstruct_persistent_obj, (meta,)


def _param(*shape):
    return torch.nn.Parameter(torch.randn(*shape) / np.sqrt(max(np.prod(shape[1:]), 1)))


class Linear(Persistent):
    def __init__(self, cin, cout, bias=True):
        super().__init__(in_features=cin, out_features=cout)
        self.weight = _param(cout, cin)
        self.bias = torch.nn.Parameter(0.1 * torch.randn(cout)) if bias else None

    def forward(self, x):
        return x @ self.weight.t() + (0 if self.bias is None else self.bias)


class Conv2d(Persistent):
    def __init__(self, cin, cout, kernel, up=False, down=False, resample_filter=(1, 1), fused_resample=False):
        super().__init__(in_channels=cin, out_channels=cout, kernel=kernel)
        self.cin, self.out_channels, self.up, self.down, self.fused = cin, cout, up, down, fused_resample
        self.weight = _param(cout, cin, kernel, kernel) if kernel else None
        self.bias = torch.nn.Parameter(0.1 * torch.randn(cout)) if kernel else None
        f = torch.as_tensor(resample_filter, dtype=torch.float32)
        self.register_buffer("resample_filter", (torch.outer(f, f) / f.sum() ** 2)[None, None] if up or down else None)

    def forward(self, x):
        w, f = self.weight, self.resample_filter
        w_pad = w.shape[-1] // 2 if w is not None else 0
        f_pad = (f.shape[-1] - 1) // 2 if f is not None else 0
        if f is not None:
            f = f.to(x.dtype)
        if self.fused and self.down and w is not None:
            x = F.conv2d(F.conv2d(x, w, padding=w_pad + f_pad), f.tile([self.out_channels, 1, 1, 1]),
                         groups=self.out_channels,
                         stride=2)
        else:
            if self.up:
                x = F.conv_transpose2d(x, 4 * f.tile([self.cin, 1, 1, 1]), groups=self.cin, stride=2, padding=f_pad)
            if self.down:
                x = F.conv2d(x, f.tile([self.cin, 1, 1, 1]), groups=self.cin, stride=2, padding=f_pad)
            if w is not None:
                x = F.conv2d(x, w, padding=w_pad)
        return x if self.bias is None else x + self.bias.reshape(1, -1, 1, 1)


class GroupNorm(Persistent):
    def __init__(self, channels, eps=1e-5):
        super().__init__(num_channels=channels, eps=eps)
        self.groups, self.eps = min(32, channels // 4), eps
        self.weight = torch.nn.Parameter(1 + 0.1 * torch.randn(channels))
        self.bias = torch.nn.Parameter(0.1 * torch.randn(channels))

    def forward(self, x):
        return F.group_norm(x, self.groups, self.weight, self.bias, self.eps)


class UNetBlock(Persistent):
    def __init__(self, cin, cout, emb, up=False, down=False, attention=False, num_heads=None, skip_scale=1.0,
                 eps=1e-5, resample_filter=(1, 1), resample_proj=False, adaptive_scale=True):
        super().__init__(in_channels=cin, out_channels=cout, emb_channels=emb, skip_scale=np.float64(skip_scale))
        self.in_channels, self.out_channels = cin, cout
        self.num_heads = 0 if not attention else num_heads or cout // 64
        self.skip_scale, self.adaptive_scale = skip_scale, adaptive_scale
        resample = dict(up=up, down=down, resample_filter=resample_filter)
        self.norm0 = GroupNorm(cin, eps)
        self.conv0 = Conv2d(cin, cout, 3, **resample)
        self.affine = Linear(emb, cout * (2 if adaptive_scale else 1))
        self.norm1 = GroupNorm(cout, eps)
        self.conv1 = Conv2d(cout, cout, 3)
        self.skip = None
        if cout != cin or up or down:
            self.skip = Conv2d(cin, cout, 1 if resample_proj or cout != cin else 0, **resample)
        if self.num_heads:
            self.norm2 = GroupNorm(cout, eps)
            self.qkv = Conv2d(cout, 3 * cout, 1)
            self.proj = Conv2d(cout, cout, 1)

    def forward(self, x, emb):
        orig = x
        x = self.conv0(silu(self.norm0(x)))
        params = self.affine(emb)[:, :, None, None]
        if self.adaptive_scale:
            scale, shift = params.chunk(2, dim=1)
            x = silu(shift + self.norm1(x) * (scale + 1))
        else:
            x = silu(self.norm1(x + params))
        x = (self.conv1(x) + (orig if self.skip is None else self.skip(orig))) * self.skip_scale
        if self.num_heads:
            b, c, h, w = x.shape
            # qkv channels: (heads, channels per head, 3), interleaved per channel.
            q, k, v = self.qkv(self.norm2(x)).reshape(b * self.num_heads, c // self.num_heads, 3, h * w).unbind(2)
            weights = torch.einsum("ncq,nck->nqk", q, k / np.sqrt(k.shape[1])).softmax(dim=2)
            x = (self.proj(torch.einsum("nqk,nck->ncq", weights, v).reshape(b, c, h, w)) + x) * self.skip_scale
        return x


class PositionalEmbedding(Persistent):
    def __init__(self, channels, endpoint=False):
        super().__init__(num_channels=channels, endpoint=endpoint)
        self.channels, self.endpoint = channels, endpoint

    def forward(self, x):
        half = self.channels // 2
        freqs = (1 / 10000) ** (torch.arange(half, dtype=x.dtype) / (half - int(self.endpoint)))
        x = torch.outer(x, freqs)
        return torch.cat([x.cos(), x.sin()], dim=1)


class FourierEmbedding(Persistent):
    def __init__(self, channels):
        super().__init__(num_channels=channels)
        self.register_buffer("freqs", torch.randn(channels // 2) * 16)

    def forward(self, x):
        x = torch.outer(x, 2 * np.pi * self.freqs.to(x.dtype))
        return torch.cat([x.cos(), x.sin()], dim=1)


class SongUNet(Persistent):
    """DDPM++ / NCSN++ with EDM's `SongUNet` arguments (`augment_dim` adds the bias-free `map_augment`)."""

    def __init__(self, img_resolution, in_channels, out_channels, label_dim=0, augment_dim=0, model_channels=16,
                 channel_mult=(1, 2), num_blocks=1, attn_resolutions=(4,), embedding_type="positional",
                 channel_mult_noise=1, encoder_type="standard", decoder_type="standard", resample_filter=(1, 1)):
        super().__init__(img_resolution=img_resolution, in_channels=in_channels, out_channels=out_channels,
                         label_dim=label_dim, augment_dim=augment_dim, model_channels=model_channels,
                         channel_mult=list(channel_mult), num_blocks=num_blocks,
                         attn_resolutions=list(attn_resolutions), embedding_type=embedding_type,
                         channel_mult_noise=channel_mult_noise, encoder_type=encoder_type,
                         resample_filter=list(resample_filter), dropout=0.13)
        emb, noise = model_channels * 4, model_channels * channel_mult_noise
        block = dict(emb=emb, num_heads=1, skip_scale=np.sqrt(0.5), eps=1e-6, resample_filter=resample_filter,
                     resample_proj=True, adaptive_scale=False)
        self.map_noise = (PositionalEmbedding(noise, endpoint=True) if embedding_type == "positional"
                          else FourierEmbedding(noise))
        self.map_label = Linear(label_dim, noise) if label_dim else None
        self.map_augment = Linear(augment_dim, noise, bias=False) if augment_dim else None
        self.map_layer0, self.map_layer1 = Linear(noise, emb), Linear(emb, emb)
        self.enc, self.dec = torch.nn.ModuleDict(), torch.nn.ModuleDict()
        cout = caux = in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                cout = model_channels
                self.enc[f"{res}x{res}_conv"] = Conv2d(in_channels, cout, 3)
            else:
                self.enc[f"{res}x{res}_down"] = UNetBlock(cout, cout, down=True, **block)
                if encoder_type == "skip":
                    self.enc[f"{res}x{res}_aux_down"] = Conv2d(caux, caux, 0, down=True,
                                                               resample_filter=resample_filter)
                    self.enc[f"{res}x{res}_aux_skip"] = Conv2d(caux, cout, 1)
                if encoder_type == "residual":
                    self.enc[f"{res}x{res}_aux_residual"] = Conv2d(caux, cout, 3, down=True, fused_resample=True,
                                                                   resample_filter=resample_filter)
                    caux = cout
            for idx in range(num_blocks):
                cin, cout = cout, model_channels * mult
                self.enc[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=res in attn_resolutions, **block)
        skips = [b.out_channels for name, b in self.enc.items() if "aux" not in name]
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            if level == len(channel_mult) - 1:
                self.dec[f"{res}x{res}_in0"] = UNetBlock(cout, cout, attention=True, **block)
                self.dec[f"{res}x{res}_in1"] = UNetBlock(cout, cout, **block)
            else:
                self.dec[f"{res}x{res}_up"] = UNetBlock(cout, cout, up=True, **block)
            for idx in range(num_blocks + 1):
                cin, cout = cout + skips.pop(), model_channels * mult
                attn = idx == num_blocks and res in attn_resolutions
                self.dec[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=attn, **block)
            if level == 0:
                self.dec[f"{res}x{res}_aux_norm"] = GroupNorm(cout, eps=1e-6)
                self.dec[f"{res}x{res}_aux_conv"] = Conv2d(cout, out_channels, 3)

    def forward(self, x, noise_labels, class_labels):
        emb = self.map_noise(noise_labels)
        emb = emb.reshape(emb.shape[0], 2, -1).flip(1).reshape(*emb.shape)  # [sin, cos]
        if self.map_label is not None:
            emb = emb + self.map_label(class_labels * np.sqrt(self.map_label.weight.shape[1]))
        emb = silu(self.map_layer1(silu(self.map_layer0(emb))))
        skips, aux = [], x
        for name, block in self.enc.items():
            if "aux_down" in name:
                aux = block(aux)
            elif "aux_skip" in name:
                x = skips[-1] = x + block(aux)
            elif "aux_residual" in name:
                x = skips[-1] = aux = (x + block(aux)) / np.sqrt(2)
            else:
                x = block(x, emb) if isinstance(block, UNetBlock) else block(x)
                skips.append(x)
        tmp = None
        for name, block in self.dec.items():
            if "aux_norm" in name:
                tmp = block(x)
            elif "aux_conv" in name:
                x = block(silu(tmp))
            else:
                if x.shape[1] != block.in_channels:
                    x = torch.cat([x, skips.pop()], dim=1)
                x = block(x, emb)
        return x


class DhariwalUNet(Persistent):
    """ADM with EDM's `DhariwalUNet` arguments."""

    def __init__(self, img_resolution, in_channels, out_channels, label_dim=0, model_channels=16,
                 channel_mult=(1, 2), num_blocks=1, attn_resolutions=(4,)):
        super().__init__(img_resolution=img_resolution, in_channels=in_channels, out_channels=out_channels,
                         label_dim=label_dim, model_channels=model_channels, channel_mult=list(channel_mult),
                         num_blocks=num_blocks, attn_resolutions=list(attn_resolutions))
        emb = model_channels * 4
        self.map_noise = PositionalEmbedding(model_channels)
        self.map_layer0, self.map_layer1 = Linear(model_channels, emb), Linear(emb, emb)
        self.map_label = Linear(label_dim, emb, bias=False) if label_dim else None
        self.enc, self.dec = torch.nn.ModuleDict(), torch.nn.ModuleDict()
        cout = in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                cout = model_channels * mult
                self.enc[f"{res}x{res}_conv"] = Conv2d(in_channels, cout, 3)
            else:
                self.enc[f"{res}x{res}_down"] = UNetBlock(cout, cout, emb, down=True)
            for idx in range(num_blocks):
                cin, cout = cout, model_channels * mult
                self.enc[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, emb, attention=res in attn_resolutions)
        skips = [b.out_channels for b in self.enc.values()]
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            if level == len(channel_mult) - 1:
                self.dec[f"{res}x{res}_in0"] = UNetBlock(cout, cout, emb, attention=True)
                self.dec[f"{res}x{res}_in1"] = UNetBlock(cout, cout, emb)
            else:
                self.dec[f"{res}x{res}_up"] = UNetBlock(cout, cout, emb, up=True)
            for idx in range(num_blocks + 1):
                cin, cout = cout + skips.pop(), model_channels * mult
                self.dec[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, emb, attention=res in attn_resolutions)
        self.out_norm = GroupNorm(cout)
        self.out_conv = Conv2d(cout, out_channels, 3)

    def forward(self, x, noise_labels, class_labels):
        emb = self.map_layer1(silu(self.map_layer0(self.map_noise(noise_labels))))
        if self.map_label is not None:
            emb = emb + self.map_label(class_labels)
        emb = silu(emb)
        skips = []
        for block in self.enc.values():
            x = block(x, emb) if isinstance(block, UNetBlock) else block(x)
            skips.append(x)
        for block in self.dec.values():
            if x.shape[1] != block.in_channels:
                x = torch.cat([x, skips.pop()], dim=1)
            x = block(x, emb)
        return self.out_conv(silu(self.out_norm(x)))


class EDMPrecond(Persistent):
    def __init__(self, img_resolution, img_channels, label_dim=0, use_fp16=False, sigma_data=0.5,
                 model_type="DhariwalUNet", **model_kwargs):
        super().__init__(img_resolution=img_resolution, img_channels=img_channels, label_dim=label_dim,
                         use_fp16=use_fp16, sigma_data=sigma_data, model_type=model_type, **model_kwargs)
        self.sigma_data = sigma_data
        self.model = {"SongUNet": SongUNet, "DhariwalUNet": DhariwalUNet}[model_type](
            img_resolution, img_channels, img_channels, label_dim=label_dim, **model_kwargs)

    def forward(self, x, sigma, class_labels=None):
        sigma = sigma.reshape(-1, 1, 1, 1)
        total = sigma**2 + self.sigma_data**2
        c_skip, c_out, c_in = self.sigma_data**2 / total, sigma * self.sigma_data / total.sqrt(), 1 / total.sqrt()
        return c_skip * x + c_out * self.model(c_in * x, (sigma.log() / 4).flatten(), class_labels)


def write_pickle(path, net, **extra):
    """Pickles `{"ema": net, **extra}` as an EDM snapshot (float32 tensors, persistence objects)."""
    _persistence_module()
    with open(path, "wb") as f:
        pickle.dump({"ema": net.float().eval(), **extra}, f)


def denoise(net, x_nhwc, sigma, labels=None):
    """The reference output for NHWC `x`, computed in float64, as an NHWC NumPy array."""
    net = net.double()
    with torch.no_grad():
        x = torch.as_tensor(np.asarray(x_nhwc, np.float64)).permute(0, 3, 1, 2)
        y = torch.as_tensor(np.asarray(labels, np.float64)) if labels is not None else None
        out = net(x, torch.as_tensor(np.asarray(sigma, np.float64)), y).permute(0, 2, 3, 1).numpy()
    net.float()
    return out
