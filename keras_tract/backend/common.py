"""Adapter pieces shared by several backends."""

import contextlib

from keras import ops


def constant(value, dtype):
    """`value` (a number or an array) as a `dtype` tensor; inside a traced step, a constant of the program."""
    return ops.convert_to_tensor(value, dtype)


def conv(x, kernel, bias=None, padding="valid"):
    """`ops.conv` of channels-last `x` `(B, H, W, I)` with a `(kh, kw, I, O)` kernel, plus `bias` `(O,)` or None."""
    y = ops.conv(x, kernel, padding=padding)
    return y if bias is None else y + bias


def average_pool2(x):
    """The mean of each 2x2 block of channels-last `x`: `(B, H, W, C)` -> `(B, H // 2, W // 2, C)`."""
    return ops.average_pool(x, 2, 2)


def group_norm(x, groups, gamma, beta, eps):
    """Group normalization of channels-last float32 `x` `(B, ..., C)` over pixels and `groups` groups of channels."""
    shape = ops.shape(x)
    batch, channels = shape[0], shape[-1]

    def group_mean(h):
        # The pixel mean first, a reduction along one axis, then the mean over each group's channels.
        per_channel = ops.mean(ops.reshape(h, (batch, -1, channels)), axis=1)
        per_group = ops.mean(ops.reshape(per_channel, (batch, groups, channels // groups)), axis=-1, keepdims=True)
        per_channel = ops.broadcast_to(per_group, (batch, groups, channels // groups))
        return ops.reshape(per_channel, (batch,) + (1,) * (len(shape) - 2) + (channels,))

    h = x - group_mean(x)
    return h * (ops.rsqrt(group_mean(ops.square(h)) + eps) * gamma) + beta


def lerp_variables(targets, sources, rate):
    """`t <- t + rate (s - t)` for each pair of float variables; `rate` a scalar tensor."""
    for t, s in zip(targets, sources):
        t.assign(t + ops.cast(rate, t.dtype) * (s - t))


def scope_of(model):
    """No scope: these backends make variables the same way inside and outside data parallelism."""
    del model
    return contextlib.nullcontext()


def process_index():
    """This process's index among the processes of a multi-process run: 0 here, one process."""
    return 0


def process_count():
    return 1


def barrier(name):
    """Waits until every process reaches `barrier(name)`; one process never waits."""
    del name


def reached_preemption_sync_point(step):
    """Whether every process agreed to stop at `step` after a preemption notice: never with one process,
    which takes SIGTERM itself (`keras_tract.preemption`)."""
    del step
    return False


def global_batch_size(local):
    """The global batch that an input batch of `local` examples belongs to: the same, one process."""
    return local
