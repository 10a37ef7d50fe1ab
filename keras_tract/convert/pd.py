"""Progressive-distillation teachers -> `VPDenoiser(GoogleUNet)`.

Reads Google's Flax checkpoints (`gs://gresearch/diffusion-distillation/cifar_original`,
`imagenet_original`: msgpack of a dict whose `ema_params` are the `UNet` parameters) and
ml-tract's PyTorch conversions of them (`cifar_original.pt`: the state dict of its
`lib/zoo/unet.py` port, first rewritten into the Flax layout here). The architecture comes
from the parameters themselves (`infer_config`); what they cannot say has options.
"""

import re
import zipfile

import numpy as np

from keras_tract.convert import flax_msgpack
from keras_tract.convert.weights import WeightMap
from keras_tract.denoisers import VPDenoiser
from keras_tract.networks import GoogleUNet
from keras_tract.networks.layers import zero_init


def is_torch_file(path):
    """True for a `torch.save` file (zip, or the legacy pickle format)."""
    with open(path, "rb") as f:
        head = f.read(2)
    return zipfile.is_zipfile(path) or head[:1] == b"\x80"


def read(path, num_heads=None, head_dim=None):
    """The Flax-layout parameter tree of a Flax checkpoint or of ml-tract's `.pt` state dict.

    A `.pt` does not record attention heads: `num_heads`/`head_dim` set them, else the published
    configurations' rule applies (class-conditional, the ImageNet model: 64 channels per head;
    unconditional, the CIFAR-10 model: one head).
    """
    if is_torch_file(path):
        from keras_tract.fid.convert import load_state_dict

        return from_port(load_state_dict(path), num_heads, head_dim, path)
    tree = flax_msgpack.load(path)
    params = tree.get("ema_params", tree.get("params")) if isinstance(tree, dict) else None
    if not isinstance(params, dict) or "conv_in" not in params:
        found = sorted(tree)[:8] if isinstance(tree, dict) else type(tree).__name__
        raise ValueError(f"{path} holds no progressive-distillation UNet parameters (expected 'ema_params' "
                         f"with 'conv_in', found {found}).")
    return params


def _heads(heads, head_dim, channels, conditional):
    if heads is None and head_dim is None:
        head_dim, heads = (64, None) if conditional else (None, 1)
    per = head_dim or channels // heads
    if not per or channels % per:
        raise ValueError(f"Attention with {channels} channels does not split into heads of "
                         f"{'head_dim=' + str(head_dim) if head_dim else 'num_heads=' + str(heads)}; "
                         "set num_heads or head_dim to the model's.")
    return channels // per


def _port_block(state, prefix, out):
    """ml-tract's `ResBlock` tensors under `prefix` -> a Flax `ResnetBlock` dict."""
    get = lambda name: state.pop(f"{prefix}.{name}")  # noqa: E731
    out.update(norm1={"scale": get("norm1.weight"), "bias": get("norm1.bias")},
               conv1={"kernel": get("conv1.weight").transpose(2, 3, 1, 0), "bias": get("conv1.bias")},
               temb_proj={"kernel": get("time.1.weight").T, "bias": get("time.1.bias")},
               norm2={"scale": get("norm2.weight"), "bias": get("norm2.bias")},
               conv2={"kernel": get("conv2.weight").transpose(2, 3, 1, 0), "bias": get("conv2.bias")})
    if f"{prefix}.skip.weight" in state:
        out["nin_shortcut"] = {"kernel": get("skip.weight")[:, :, 0, 0].T, "bias": get("skip.bias")}
    return out


def _port_attention(state, prefix, heads):
    """ml-tract's fused `qkv` 1x1 conv (per head `[q | k | v]`) -> Flax's q, k, v, proj_out."""
    qkv_w, qkv_b = state.pop(f"{prefix}.qkv.weight")[:, :, 0, 0], state.pop(f"{prefix}.qkv.bias")
    channels = qkv_w.shape[1]
    per = channels // heads
    w, b = qkv_w.reshape(heads, 3, per, channels), qkv_b.reshape(heads, 3, per)
    out = {"norm": {"scale": state.pop(f"{prefix}.norm.weight"), "bias": state.pop(f"{prefix}.norm.bias")}}
    for i, name in enumerate("qkv"):
        out[name] = {"kernel": w[:, i].transpose(2, 0, 1), "bias": b[:, i]}
    out["proj_out"] = {"kernel": state.pop(f"{prefix}.out.weight")[:, :, 0, 0].T.reshape(heads, per, channels),
                       "bias": state.pop(f"{prefix}.out.bias")}
    return out


def _port_resample(state, prefix, out_key, params):
    if f"{prefix}.norm1.weight" in state:
        params[out_key] = _port_block(state, prefix, {})
    else:  # Downsample (`prefix.0`) or Upsample (`prefix.1`): one conv
        conv = next(f"{prefix}.{i}" for i in (0, 1) if f"{prefix}.{i}.weight" in state)
        params[out_key] = {"kernel": state.pop(f"{conv}.weight").transpose(2, 3, 1, 0),
                           "bias": state.pop(f"{conv}.bias")}


def from_port(state, num_heads, head_dim, path):
    """ml-tract's `lib/zoo/unet.py` state dict -> the Flax parameter tree (every tensor used once)."""
    state = dict(state)
    if "down.0.weight" not in state or "time.0.weight" not in state:
        raise ValueError(f"{path} is not a state dict of ml-tract's UNet (no 'down.0.weight', 'time.0.weight').")
    conditional = "class_emb.weight" in state
    heads = lambda prefix: _heads(num_heads, head_dim, state[f"{prefix}.qkv.weight"].shape[1], conditional)  # noqa: E731
    params = {"conv_in": {"kernel": state.pop("down.0.weight").transpose(2, 3, 1, 0), "bias": state.pop("down.0.bias")},
              "dense0": {"kernel": state.pop("time.0.weight").T, "bias": state.pop("time.0.bias")},
              "dense1": {"kernel": state.pop("time.2.weight").T, "bias": state.pop("time.2.bias")},
              "norm_out": {"scale": state.pop("out.0.weight"), "bias": state.pop("out.0.bias")},
              "conv_out": {"kernel": state.pop("out.2.weight").transpose(2, 3, 1, 0), "bias": state.pop("out.2.bias")}}
    if conditional:
        params["class_emb"] = {"kernel": state.pop("class_emb.weight").T, "bias": state.pop("class_emb.bias")}
    for side in ("down", "up"):
        indices = sorted({int(m.group(1)) for k in state if (m := re.match(rf"{side}\.(\d+)\.", k))})
        entries = [(n, f"{side}.{n}.resblocks.norm1.weight" in state) for n in indices]
        levels = sum(not is_block for _, is_block in entries) + 1
        level, j = (0, 0) if side == "down" else (levels - 1, 0)
        for n, is_block in entries:
            prefix = f"{side}.{n}"
            if is_block:
                params[f"{side}_{level}.block_{j}"] = _port_block(state, f"{prefix}.resblocks", {})
                if f"{prefix}.attention.qkv.weight" in state:
                    params[f"{side}_{level}.attn_{j}"] = _port_attention(state, f"{prefix}.attention",
                                                                         heads(f"{prefix}.attention"))
                j += 1
            else:
                _port_resample(state, prefix, f"{side}_{level}.{'downsample' if side == 'down' else 'upsample'}",
                               params)
                level, j = level + (1 if side == "down" else -1), 0
    params["mid.block_1"] = _port_block(state, "mid.0.resblocks", {})
    params["mid.attn_1"] = _port_attention(state, "mid.0.attention", heads("mid.0.attention"))
    params["mid.block_2"] = _port_block(state, "mid.1.resblocks", {})
    if state:
        raise ValueError(f"{path}: {len(state)} tensors of an unknown layout, e.g. {sorted(state)[:3]}.")
    return params


def infer_config(params, resolution=None):
    """`GoogleUNet` arguments and the image shape from a Flax parameter tree.

    The image size is not in the parameters; `resolution=None` takes the published models'
    rule: the last level is 8x8 (CIFAR-10: 3 levels, 32x32; ImageNet: 4 levels, 64x64).
    """
    levels = 1 + max(int(re.match(r"down_(\d+)\.", k).group(1)) for k in params if k.startswith("down_"))
    blocks = 1 + max(int(k.rsplit("_", 1)[1]) for k in params if k.startswith("down_0.block_"))
    conv_in, base = params["conv_in"]["kernel"], params["conv_in"]["kernel"].shape[-1]
    in_channels, out_channels = conv_in.shape[2], params["conv_out"]["kernel"].shape[-1]
    resolution = resolution or 8 << (levels - 1)
    q_kernels = [v["q"]["kernel"] for k, v in params.items() if ".attn_" in k]
    heads = {q.shape[1] for q in q_kernels}
    head_dims = {q.shape[2] for q in q_kernels}
    heads_args = dict(num_heads=1, head_dim=None) if heads == {1} else (
        dict(num_heads=None, head_dim=head_dims.pop()) if len(head_dims) == 1 else dict(num_heads=heads.pop()))
    config = dict(
        out_channels=int(out_channels), label_dim=int(params["class_emb"]["kernel"].shape[0]) if "class_emb" in params
        else 0, model_channels=int(base), emb_channels=int(params["dense0"]["kernel"].shape[-1]),
        channel_mult=[int(params[f"down_{i}.block_0"]["conv1"]["kernel"].shape[-1] // base) for i in range(levels)],
        num_blocks=blocks, attn_resolutions=sorted({resolution >> i for i in range(levels)
                                                    if f"down_{i}.attn_0" in params}),
        dropout=0.0, resblock_resample="norm1" in params.get("down_0.downsample", {"norm1": 1}), **heads_args)
    if out_channels not in (in_channels, 2 * in_channels):
        raise ValueError(f"conv_out has {out_channels} channels for {in_channels} input channels: expected an "
                         "x-prediction (same) or x-and-eps model (twice).")
    return config, (resolution, resolution, int(in_channels))


def _flat(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{key}/")
        else:
            yield f"{prefix}{key}", np.asarray(value)


def assign(weights, params):
    """Sets the network's weights from the Flax tree; returns the source keys."""
    keys = []
    for key, value in _flat(params):
        keys.append(key)
        *module, leaf = key.split("/")
        parent = module[-1] if module else ""
        if parent.startswith("norm"):
            leaf = {"scale": "gamma", "bias": "beta"}[leaf]
        elif parent in ("q", "k", "v") and value.ndim >= 2:
            value = value.reshape(value.shape[0], -1) if leaf == "kernel" else value.reshape(-1)
        elif parent == "proj_out" and leaf == "kernel":
            value = value.reshape(-1, value.shape[-1])
        weights.set("/".join([module[0].replace(".", "_")] + module[1:] + [leaf]), value, key)
    return keys


def convert(path, resolution=None, num_heads=None, head_dim=None, logsnr_input_type="inv_cos"):
    """`(VPDenoiser, report)` from a progressive-distillation checkpoint at `path`."""
    params = read(path, num_heads, head_dim)
    config, shape = infer_config(params, resolution)
    network = GoogleUNet(logsnr_input_type=logsnr_input_type, **config)
    labels = [(None, network.label_dim)] if network.label_dim else []
    with zero_init():  # every weight is assigned below
        network.build([(None, *shape), (None,)] + labels)
    weights = WeightMap(network, path)
    keys = assign(weights, params)
    report = weights.report(keys)
    prediction = "x" if config["out_channels"] == shape[-1] else "both"
    heads = f"{config['num_heads']} head(s)" if config["num_heads"] else f"{config['head_dim']} channels per head"
    report["notes"].append(f"{prediction}-prediction, {heads}, attention at {config['attn_resolutions']} "
                           f"for {shape[0]}x{shape[1]} images, logsnr input {logsnr_input_type}")
    denoiser = VPDenoiser(network, prediction=prediction, name="teacher")
    denoiser.build((None, *shape), (None,))
    report["network"] = f"GoogleUNet {shape[0]}x{shape[1]}x{shape[2]}"
    return denoiser, report
