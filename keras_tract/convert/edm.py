"""EDM network pickles (NVlabs/edm, `edm-*.pkl` and its training snapshots) -> `EDMPrecond`.

The pickle is read as data (`safe_pickle`). Its `ema` entry is an `EDMPrecond` around a
`SongUNet` (DDPM++, NCSN++) or `DhariwalUNet` (ADM); the Keras network is built from the
model's own constructor arguments, EDM's defaults filled in where a file omits them
(`training/networks.py`). Tensors map by name: `model.enc.32x32_block0.conv0.weight`
becomes `enc_32x32_block0/conv0/kernel`, PyTorch's `(out, in, kh, kw)` and `(out, in)`
layouts transposed to Keras'.
"""

import numpy as np

from keras_tract.convert import safe_pickle
from keras_tract.convert.weights import WeightMap
from keras_tract.denoisers import EDMPrecond
from keras_tract.networks import DhariwalUNet, SongUNet
from keras_tract.networks.layers import zero_init

# EDM's constructor defaults (training/networks.py); pickles store only the arguments passed.
PRECOND_DEFAULTS = dict(label_dim=0, use_fp16=False, sigma_min=0, sigma_max=float("inf"), sigma_data=0.5,
                        model_type="DhariwalUNet")
_COMMON = dict(label_dim=0, augment_dim=0, channel_mult_emb=4, dropout=0.10, label_dropout=0)
MODEL_DEFAULTS = {
    "SongUNet": (SongUNet, dict(
        _COMMON, model_channels=128, channel_mult=[1, 2, 2, 2], num_blocks=4, attn_resolutions=[16],
        embedding_type="positional", channel_mult_noise=1, encoder_type="standard", decoder_type="standard",
        resample_filter=[1, 1])),
    "DhariwalUNet": (DhariwalUNet, dict(
        _COMMON, model_channels=192, channel_mult=[1, 2, 3, 4], num_blocks=3, attn_resolutions=[32, 16, 8])),
}
# Arguments the Keras network does not take: the image shape (its build shape) and training-only ones.
_NOT_NETWORK_ARGS = ("img_resolution", "in_channels", "out_channels", "augment_dim", "dropout", "label_dropout")


def read(path):
    """The `EDMPrecond` record (`safe_pickle.Module`) of an EDM pickle: its `ema` entry, or the object itself."""
    data = safe_pickle.load(path)
    net = data.get("ema") if isinstance(data, dict) else data
    if not isinstance(net, safe_pickle.Module):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path} holds no EDM network (expected a dict with 'ema', found {found}).")
    if net.class_name != "EDMPrecond":
        raise ValueError(f"{path}: the network is a {net.class_name}; only EDM's EDMPrecond networks convert "
                         "(the edm-*.pkl files).")
    return net


def network_from(precond):
    """`(Keras network, image shape, precond arguments, notes)` for an `EDMPrecond` record."""
    args = {**PRECOND_DEFAULTS, **precond.init_kwargs}
    model = precond.modules.get("model")
    if model is None or model.class_name not in MODEL_DEFAULTS:
        name = None if model is None else model.class_name
        raise ValueError(f"Unsupported EDM model {name!r}; expected one of {sorted(MODEL_DEFAULTS)}.")
    cls, defaults = MODEL_DEFAULTS[model.class_name]
    kwargs = {**defaults, **model.init_kwargs}
    unknown = sorted(set(kwargs) - set(defaults) - set(_NOT_NETWORK_ARGS))
    if unknown:
        raise ValueError(f"Unknown {model.class_name} arguments {unknown} in the pickle.")
    notes = [f"EDM {model.class_name}: dropout {kwargs['dropout']} (training) -> 0"]
    if kwargs["augment_dim"]:
        notes.append(f"augmentation labels (augment_dim={kwargs['augment_dim']}) dropped: zero at inference")
    if args["use_fp16"]:
        notes.append("use_fp16=True in the pickle: computed in float32")
    network_args = {k: v for k, v in kwargs.items() if k not in _NOT_NETWORK_ARGS}
    for key in ("channel_mult", "attn_resolutions", "resample_filter"):
        if key in network_args:
            network_args[key] = [int(v) for v in network_args[key]]
    network = cls(out_channels=None, label_dim=int(network_args.pop("label_dim")), dropout=0.0, **network_args)
    shape = (int(kwargs["img_resolution"]),) * 2 + (int(kwargs["in_channels"]),)
    return network, shape, args, notes


def _layer(network, path):
    first, *rest = path.split("/")
    layer = getattr(network, first, None) or {x.name: x for x in network.enc + network.dec}[first]
    for name in rest:
        layer = getattr(layer, name)
    return layer


def _assign(weights, network, precond):
    kind = {"GroupNorm": {"weight": ("gamma", None), "bias": ("beta", None)},
            "Linear": {"weight": ("kernel", (1, 0)), "bias": ("bias", None)},
            "Conv2d": {"weight": ("kernel", (2, 3, 1, 0)), "bias": ("bias", None)},
            "FourierEmbedding": {"freqs": ("freqs", None)}}
    keys = []
    for key, owner, name, value in precond.named_tensors():
        keys.append(key)
        parts = key.split(".")[1:-1]  # below `model`, without the tensor name
        if parts[0] in ("enc", "dec"):
            parts = [f"{parts[0]}_{parts[1]}"] + parts[2:]
        path, cls = "/".join(parts), owner.class_name
        if path == "map_augment":
            weights.use(key)
        elif cls == "Conv2d" and name == "resample_filter":
            taps = np.asarray(_layer(network, path).resample_filter, np.float64)
            expected = np.outer(taps, taps) / taps.sum() ** 2
            if not np.allclose(value.reshape(expected.shape), expected, atol=1e-6):
                raise ValueError(f"{weights.source}: {key} is not the normalized filter of {taps.tolist()}.")
            weights.use(key)
        elif name in kind.get(cls, {}):
            leaf, axes = kind[cls][name]
            weights.set(f"{path}/{leaf}", value if axes is None else value.transpose(axes), key)
        else:
            raise ValueError(f"{weights.source}: unexpected tensor {key} {value.shape} of a {cls}.")
    return keys


def convert(path):
    """`(EDMPrecond, report)` from the EDM pickle at `path`; the report lists what was mapped."""
    precond = read(path)
    network, shape, args, notes = network_from(precond)
    labels = [(None, network.label_dim)] if network.label_dim else []
    with zero_init():  # every weight is assigned below
        network.build([(None, *shape), (None,)] + labels)
    weights = WeightMap(network, path)
    keys = _assign(weights, network, precond)
    weights.notes.extend(notes)
    report = weights.report(keys)
    denoiser = EDMPrecond(network, sigma_data=float(args["sigma_data"]), name="teacher")
    denoiser.build((None, *shape), (None,))
    report["network"] = f"{type(network).__name__} {shape[0]}x{shape[1]}x{shape[2]}"
    return denoiser, report
