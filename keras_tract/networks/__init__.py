"""Raw networks F called on `[x, c_noise]` or `[x, c_noise, labels]`, and presets by name."""

from keras_tract.networks.dhariwal_unet import DhariwalUNet
from keras_tract.networks.google_unet import GoogleUNet
from keras_tract.networks.mlp import MLPNetwork
from keras_tract.networks.song_unet import SongUNet

_NCSNPP = dict(embedding_type="fourier", channel_mult_noise=2, encoder_type="residual", resample_filter=[1, 3, 3, 1])
_SMALL = dict(model_channels=16, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4], dropout=0.0)

# EDM's configurations (training dropout included; distillation sets dropout=0).
PRESETS = {
    "ncsnpp_cifar10": (SongUNet, dict(model_channels=128, channel_mult=[2, 2, 2], num_blocks=4,
                                      attn_resolutions=[16], dropout=0.13, **_NCSNPP)),
    "ddpmpp_cifar10": (SongUNet, dict(model_channels=128, channel_mult=[2, 2, 2], num_blocks=4,
                                      attn_resolutions=[16], dropout=0.13)),
    "adm_imagenet64": (DhariwalUNet, dict(model_channels=192, channel_mult=[1, 2, 3, 4], num_blocks=3,
                                          attn_resolutions=[32, 16, 8], dropout=0.10, label_dim=1000)),
    "ncsnpp_small": (SongUNet, dict(**_SMALL, **_NCSNPP)),
    "ddpmpp_small": (SongUNet, dict(_SMALL)),
    "adm_small": (DhariwalUNet, dict(_SMALL, channels_per_head=16)),
    "mlp_small": (MLPNetwork, dict(hidden=128, depth=3)),
    # Progressive distillation's teachers (diffusion_distillation/config/{cifar,imagenet64}_base.py).
    "pd_cifar10": (GoogleUNet, dict(model_channels=256, emb_channels=1024, channel_mult=[1, 1, 1], num_blocks=3,
                                    attn_resolutions=[8, 16], num_heads=1, dropout=0.2)),
    "pd_imagenet64": (GoogleUNet, dict(model_channels=192, emb_channels=768, channel_mult=[1, 2, 3, 4],
                                       num_blocks=3, attn_resolutions=[8, 16, 32], num_heads=None, head_dim=64,
                                       dropout=0.1, label_dim=1000, out_channels=6)),
    "pd_small": (GoogleUNet, dict(model_channels=32, emb_channels=64, channel_mult=[1, 2], num_blocks=1,
                                  attn_resolutions=[4], dropout=0.0)),
}


# The image shapes of the presets' datasets (EDM's `img_resolution`, `in_channels`).
IMAGE_SHAPES = {"ncsnpp_cifar10": (32, 32, 3), "ddpmpp_cifar10": (32, 32, 3), "adm_imagenet64": (64, 64, 3),
                "pd_cifar10": (32, 32, 3), "pd_imagenet64": (64, 64, 3)}


def get(name, image_shape="preset", **overrides):
    """The preset network `name` (see `PRESETS`) with keyword overrides, built for `image_shape`.

    Args:
        name: a key of `PRESETS`.
        image_shape: `(H, W, C)` to build the network for at once (its weights exist and
            `count_params()` works); `"preset"`, the default, uses the preset's dataset shape
            (`IMAGE_SHAPES`; the small presets have none); None leaves it to build on its first call.
        **overrides: constructor arguments replacing the preset's.

    Example:
    >>> net = keras_tract.networks.get("ddpmpp_cifar10", dropout=0.0)
    >>> net.count_params()
    55732739
    """
    if name not in PRESETS:
        raise ValueError(f"Unknown network preset name={name!r}; choose one of {sorted(PRESETS)}.")
    cls, kwargs = PRESETS[name]
    network = cls(**{**kwargs, **overrides})
    shape = IMAGE_SHAPES.get(name) if isinstance(image_shape, str) and image_shape == "preset" else image_shape
    if shape is not None:
        label_dim = network.label_dim
        network.build([(None, *shape), (None,)] + ([(None, label_dim)] if label_dim else []))
    return network


__all__ = ["DhariwalUNet", "GoogleUNet", "IMAGE_SHAPES", "MLPNetwork", "PRESETS", "SongUNet", "get"]
