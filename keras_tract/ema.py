"""Bias-corrected exponential moving averages over frozen copies of a model (ml-tract's `lib/optim.py` `ModuleEMA`)."""

import math

from keras import ops

from keras_tract import backend


def freeze(model):
    """Makes every variable of `model` non-trainable (toggled: TF skips a False -> False assignment)."""
    model.trainable = True
    model.trainable = False
    return model


def _unshared(config):
    """`config` without `shared_object_id` keys, so deserializing makes new objects even inside
    `load_model` (whose object-sharing scope would otherwise hand back the source's sub-layers)."""
    if isinstance(config, dict):
        return {k: _unshared(v) for k, v in config.items() if k != "shared_object_id"}
    if isinstance(config, list):
        return [_unshared(v) for v in config]
    return config


def _with_policy(config, policy):
    """`config` with every layer's dtype policy replaced by the policy named `policy`."""
    if isinstance(config, dict):
        return {k: policy if k == "dtype" and isinstance(v, dict) and "DTypePolicy" in v.get("class_name", "")
                else _with_policy(v, policy) for k, v in config.items()}
    if isinstance(config, list):
        return [_with_policy(v, policy) for v in config]
    return config


def clone(denoiser, name, config=None, dtype_policy=None):
    """A frozen copy of `denoiser` (same class, its config or `config`, its current weights), built like it.

    With `dtype_policy` (e.g. `"mixed_bfloat16"`) every layer of the copy computes under that
    policy; the weights stay float32 under the mixed policies.
    """
    config = _unshared({**(config or denoiser.get_config()), "name": name})
    if dtype_policy is not None:
        config = _with_policy(config, dtype_policy)
    copy = type(denoiser).from_config(config)
    build_config = denoiser.get_build_config()
    if build_config and not copy.built:
        copy.build_from_config(build_config)
    copy.set_weights(denoiser.get_weights())
    return freeze(copy)


def weight_pairs(average, source):
    """`(floats, others)`: the pairs `(average weight, source weight)` of float dtype, and the rest, in order."""
    pairs = list(zip(average.weights, source.weights))
    return [p for p in pairs if "float" in str(p[0].dtype)], [p for p in pairs if "float" not in str(p[0].dtype)]


def ema_update(average, source, momentum, counter, active, pairs=None):
    """One bias-corrected EMA step of `average`'s weights towards `source`'s, where `active`.

    `counter <- counter + 1`, `d = (1 - momentum) / (1 - momentum^counter)` and
    `w_avg <- w_avg + d (w_src - w_avg)`: the average of the source iterates since
    the counter was last zero, weighted by `momentum^age`. Where `active` is
    False (a skipped step) nothing changes.

    Args:
        average, source: models with matching `weights`.
        momentum: Python float in [0, 1).
        counter: int32 scalar variable, the number of updates so far.
        active: bool scalar tensor.
        pairs: `weight_pairs(average, source)`, if kept from an earlier step.
    """
    count = counter + ops.cast(active, "int32")
    if momentum == 0.0:
        rate = ops.ones((), "float32")
    else:
        decay = ops.cast(count, "float32") * math.log(momentum)
        rate = (1.0 - momentum) / -ops.expm1(ops.minimum(decay, backend.constant(-1e-30, "float32")))
    rate = ops.where(active, rate, backend.constant(0.0, "float32"))
    floats, others = pairs or weight_pairs(average, source)
    backend.lerp_variables([a for a, _ in floats], [s for _, s in floats], rate)
    for avg, src in others:
        avg.assign(ops.where(active, src.value, avg.value))
    counter.assign(count)
