"""Raw networks F called on `[x, c_noise]` or `[x, c_noise, labels]`."""

from keras_tract.networks.mlp import MLPNetwork

__all__ = ["MLPNetwork"]
