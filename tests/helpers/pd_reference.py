"""An independent PyTorch (NCHW, float64) reference of the progressive-distillation U-Net
(google-research `diffusion_distillation/unet.py`) evaluated on a Flax-layout parameter tree,
random trees for it, and writers of the two checkpoint formats: Flax msgpack
(`flax.serialization.to_bytes`, written here with the `msgpack` package) and ml-tract's
PyTorch port state dict (`lib/zoo/unet.py`, q/k/v fused per head as [q|k|v]).
"""

import math

import msgpack
import numpy as np
import torch
import torch.nn.functional as F


def random_params(rng, in_ch=3, ch=32, emb=64, mult=(1, 2), blocks=1, attn_levels=(1,), heads=1, head_dim=None,
                  out_ch=3, classes=0, resblock_resample=True):
    """A Flax `ema_params` tree with every weight random (no zero-initialised layer hides a mapping error)."""
    r = lambda *shape: rng.normal(0, 1 / math.sqrt(max(np.prod(shape[:-1]), 1)), shape).astype("float32")  # noqa: E731
    dense = lambda cin, cout: {"kernel": r(cin, cout), "bias": r(cout) * 0.1}  # noqa: E731
    conv = lambda cin, cout: {"kernel": r(3, 3, cin, cout), "bias": r(cout) * 0.1}  # noqa: E731
    norm = lambda c: {"scale": 1 + 0.1 * r(c), "bias": 0.1 * r(c)}  # noqa: E731

    def block(cin, cout):
        out = {"norm1": norm(cin), "conv1": conv(cin, cout), "temb_proj": dense(emb, 2 * cout), "norm2": norm(cout),
               "conv2": conv(cout, cout)}
        if cin != cout:
            out["nin_shortcut"] = dense(cin, cout)
        return out

    def attn(c):
        n = heads or c // head_dim
        d = c // n
        gen = lambda: {"kernel": r(c, n, d), "bias": 0.1 * r(n, d)}  # noqa: E731
        return {"norm": norm(c), "q": gen(), "k": gen(), "v": gen(),
                "proj_out": {"kernel": r(n, d, c), "bias": 0.1 * r(c)}}

    resample = (lambda c: block(c, c)) if resblock_resample else (lambda c: conv(c, c))
    p = {"dense0": dense(ch, emb), "dense1": dense(emb, emb), "conv_in": conv(in_ch, ch)}
    if classes:
        p["class_emb"] = dense(classes, emb)
    skips, c = [ch], ch
    for i, m in enumerate(mult):
        for j in range(blocks):
            p[f"down_{i}.block_{j}"], c = block(c, ch * m), ch * m
            if i in attn_levels:
                p[f"down_{i}.attn_{j}"] = attn(c)
            skips.append(c)
        if i != len(mult) - 1:
            p[f"down_{i}.downsample"] = resample(c)
            skips.append(c)
    p["mid.block_1"], p["mid.attn_1"], p["mid.block_2"] = block(c, c), attn(c), block(c, c)
    for i in reversed(range(len(mult))):
        for j in range(blocks + 1):
            p[f"up_{i}.block_{j}"], c = block(c + skips.pop(), ch * mult[i]), ch * mult[i]
            if i in attn_levels:
                p[f"up_{i}.attn_{j}"] = attn(c)
        if i != 0:
            p[f"up_{i}.upsample"] = resample(c)
    p["norm_out"], p["conv_out"] = norm(c), conv(c, out_ch)
    return p


def _t(a):
    return torch.as_tensor(np.asarray(a, np.float64))


def _conv(p, x, stride=1):
    w = _t(p["kernel"]).permute(3, 2, 0, 1)
    if stride == 2:  # Flax "SAME" with stride 2 on an even size pads (0, 1)
        return F.conv2d(F.pad(x, (0, 1, 0, 1)), w, _t(p["bias"]), stride=2)
    return F.conv2d(x, w, _t(p["bias"]), padding=1)


def _dense(p, x):
    return x @ _t(p["kernel"]) + _t(p["bias"])


def _norm(p, x):
    return F.group_norm(x, 32 if x.shape[1] >= 32 else x.shape[1], _t(p["scale"]), _t(p["bias"]), eps=1e-6)


def _block(p, x, emb, resample=None):
    h = F.silu(_norm(p["norm1"], x))
    if resample == "up":
        h, x = F.interpolate(h, scale_factor=2, mode="nearest"), F.interpolate(x, scale_factor=2, mode="nearest")
    elif resample == "down":
        h, x = F.avg_pool2d(h, 2), F.avg_pool2d(x, 2)
    h = _conv(p["conv1"], h)
    scale, shift = _dense(p["temb_proj"], F.silu(emb))[:, :, None, None].chunk(2, dim=1)
    h = _conv(p["conv2"], F.silu(_norm(p["norm2"], h) * (1 + scale) + shift))
    if "nin_shortcut" in p:
        shortcut = p["nin_shortcut"]
        x = torch.einsum("bchw,cd->bdhw", x, _t(shortcut["kernel"])) + _t(shortcut["bias"])[:, None, None]
    return x + h


def _attn(p, x):
    b, c, hh, ww = x.shape
    h = _norm(p["norm"], x).reshape(b, c, hh * ww)
    q, k, v = (torch.einsum("bcl,cnd->blnd", h, _t(p[n]["kernel"])) + _t(p[n]["bias"]) for n in "qkv")
    w = torch.softmax(torch.einsum("bqnd,bknd->bnqk", q, k) / math.sqrt(q.shape[-1]), dim=-1)
    out = torch.einsum("bnqk,bknd->bqnd", w, v)
    out = torch.einsum("blnd,ndc->bcl", out, _t(p["proj_out"]["kernel"])) + _t(p["proj_out"]["bias"])[:, None]
    return x + out.reshape(b, c, hh, ww)


def unet(p, z_nhwc, logsnr, labels=None):
    """The network's NHWC output for NHWC `z`, logSNR `(B,)` and one-hot labels, as a float64 array."""
    levels = 1 + max(int(k.split(".")[0][5:]) for k in p if k.startswith("down_"))
    blocks = 1 + max(int(k.rsplit("_", 1)[1]) for k in p if k.startswith("down_0.block_"))
    resblock = "norm1" in p.get("down_0.downsample", {"norm1": 0})
    with torch.no_grad():
        u = torch.arctan(torch.exp(-0.5 * torch.clip(_t(logsnr), -20, 20))) / (math.pi / 2) * 1000
        half = p["conv_in"]["kernel"].shape[-1] // 2
        t = u[:, None] * torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float64) / (half - 1))
        emb = _dense(p["dense1"], F.silu(_dense(p["dense0"], torch.cat([t.sin(), t.cos()], dim=1))))
        if labels is not None:
            emb = emb + _dense(p["class_emb"], _t(labels))
        hs = [_conv(p["conv_in"], _t(z_nhwc).permute(0, 3, 1, 2))]
        for i in range(levels):
            for j in range(blocks):
                h = _block(p[f"down_{i}.block_{j}"], hs[-1], emb)
                hs.append(_attn(p[f"down_{i}.attn_{j}"], h) if f"down_{i}.attn_{j}" in p else h)
            if i != levels - 1:
                d = p[f"down_{i}.downsample"]
                hs.append(_block(d, hs[-1], emb, "down") if resblock else _conv(d, hs[-1], stride=2))
        h = _block(p["mid.block_2"], _attn(p["mid.attn_1"], _block(p["mid.block_1"], hs[-1], emb)), emb)
        for i in reversed(range(levels)):
            for j in range(blocks + 1):
                h = _block(p[f"up_{i}.block_{j}"], torch.cat([h, hs.pop()], dim=1), emb)
                if f"up_{i}.attn_{j}" in p:
                    h = _attn(p[f"up_{i}.attn_{j}"], h)
            if i != 0:
                u = p[f"up_{i}.upsample"]
                h = _block(u, h, emb, "up") if resblock else _conv(u, F.interpolate(h, scale_factor=2, mode="nearest"))
        out = _conv(p["conv_out"], F.silu(_norm(p["norm_out"], h)))
    return out.permute(0, 2, 3, 1).numpy()


def write_flax(path, params, step=0):
    """Writes `params` as `flax.serialization.to_bytes` writes a checkpoint dict with `ema_params`."""
    def ext(x):
        if isinstance(x, np.ndarray):
            return msgpack.ExtType(1, msgpack.packb((x.shape, x.dtype.name, x.tobytes("C")), use_bin_type=True))
        if isinstance(x, np.generic):
            return msgpack.ExtType(3, msgpack.packb(((), x.dtype.name, np.asarray(x).tobytes()), use_bin_type=True))
        return x

    tree = {"step": np.int32(step), "optimizer": None, "ema_params": params, "num_sample_steps": 0}
    with open(path, "wb") as f:
        f.write(msgpack.packb(tree, default=ext, strict_types=True))


def write_port(path, params):
    """Writes `params` as ml-tract's `teacher/download_and_convert_jax.py` saves its port's state dict."""
    sd = {}
    conv = lambda k, p: sd.update({f"{k}.weight": p["kernel"].transpose(3, 2, 0, 1), f"{k}.bias": p["bias"]})  # noqa: E731
    fc = lambda k, p: sd.update({f"{k}.weight": p["kernel"].T, f"{k}.bias": p["bias"]})  # noqa: E731
    gn = lambda k, p: sd.update({f"{k}.weight": p["scale"], f"{k}.bias": p["bias"]})  # noqa: E731

    def block(k, p):
        gn(f"{k}.norm1", p["norm1"]), conv(f"{k}.conv1", p["conv1"]), fc(f"{k}.time.1", p["temb_proj"])
        gn(f"{k}.norm2", p["norm2"]), conv(f"{k}.conv2", p["conv2"])
        if "nin_shortcut" in p:
            sd.update({f"{k}.skip.weight": p["nin_shortcut"]["kernel"].T[:, :, None, None],
                       f"{k}.skip.bias": p["nin_shortcut"]["bias"]})

    def attn(k, p):
        gn(f"{k}.norm", p["norm"])
        w = np.concatenate([p[n]["kernel"] for n in "qkv"], axis=2)  # (C, heads, 3 * head_dim)
        sd[f"{k}.qkv.weight"] = w.reshape(w.shape[0], -1).T[:, :, None, None]
        sd[f"{k}.qkv.bias"] = np.concatenate([p[n]["bias"] for n in "qkv"], axis=1).reshape(-1)
        sd[f"{k}.out.weight"] = p["proj_out"]["kernel"].reshape(-1, w.shape[0]).T[:, :, None, None]
        sd[f"{k}.out.bias"] = p["proj_out"]["bias"]

    conv("down.0", p=params["conv_in"])
    fc("time.0", params["dense0"]), fc("time.2", params["dense1"])
    gn("out.0", params["norm_out"]), conv("out.2", params["conv_out"])
    if "class_emb" in params:
        fc("class_emb", params["class_emb"])
    for side in ("down", "up"):
        keys = [k for k in params if k.startswith(side + "_") and ".attn_" not in k]
        keys.sort(key=lambda k: (int(k.split(".")[0][len(side) + 1:]) * (1 if side == "down" else -1),
                                 "sample" in k, k))
        for n, key in enumerate(keys, start=1 if side == "down" else 0):
            if "sample" in key:
                if "norm1" in params[key]:
                    block(f"{side}.{n}", params[key])
                else:
                    conv(f"{side}.{n}.{0 if side == 'down' else 1}", params[key])
            else:
                block(f"{side}.{n}.resblocks", params[key])
                if key.replace("block", "attn") in params:
                    attn(f"{side}.{n}.attention", params[key.replace("block", "attn")])
    block("mid.0.resblocks", params["mid.block_1"]), attn("mid.0.attention", params["mid.attn_1"])
    block("mid.1.resblocks", params["mid.block_2"])
    torch.save({k: torch.as_tensor(np.ascontiguousarray(v)) for k, v in sd.items()}, path)
