"""Adapter pieces shared by the JAX and TensorFlow backends."""

from keras import ops


def lerp_variables(targets, sources, rate):
    """`t <- t + rate (s - t)` for each pair of float variables; `rate` a scalar tensor."""
    for t, s in zip(targets, sources):
        t.assign(t + ops.cast(rate, t.dtype) * (s - t))
