"""pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` state dict -> the Keras FID Inception's weights."""

import numpy as np

BN_PARAMS = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}


def load_state_dict(path):
    """The `.pth` state dict as NumPy arrays (needs torch). Only tensors are read (`weights_only`):
    a file that is not such a state dict fails in one line and no code from it runs."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"{path} is not a PyTorch state dict of tensors ({first[:200]}).") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} is not a PyTorch state dict of tensors (it holds a {type(state).__name__}).")
    return {key: value.numpy() for key, value in state.items()}


def assign_state_dict(model, state):
    """Sets every weight of `model` (`fid_inception()`) from a pytorch-fid-layout state dict.

    Every tensor is used exactly once (BatchNorm's `num_batches_tracked` counters are
    read and dropped) and every Keras weight is set exactly once; anything else is an error.

    Returns:
        A report: tensors used, values assigned, and `max |gamma - 1|` over the BatchNorms
        (the 2015 graph applies no BatchNorm scale, so this should be 0).
    """
    targets = {w.path: w for w in model.weights}
    assigned, used = set(), set()
    for key, value in state.items():
        module, _, param = key.rpartition(".")
        layer = module.replace(".", "__")
        if param == "num_batches_tracked":
            used.add(key)
            continue
        if module.endswith(".bn") and param in BN_PARAMS:
            path, array = f"{layer}/{BN_PARAMS[param]}", value
        elif param == "weight" and value.ndim == 4:
            path, array = f"{layer}/kernel", value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        elif module == "fc":
            path, array = f"fc/{'kernel' if param == 'weight' else 'bias'}", value.T if param == "weight" else value
        else:
            raise ValueError(f"Unexpected tensor {key!r} {value.shape} in the state dict.")
        if path not in targets:
            raise ValueError(f"State-dict tensor {key!r} has no Keras weight {path!r}.")
        if path in assigned:
            raise ValueError(f"Keras weight {path!r} is set twice (last from {key!r}).")
        if tuple(targets[path].shape) != array.shape:
            raise ValueError(f"{key!r}: shape {array.shape} does not fit {path!r} {tuple(targets[path].shape)}.")
        targets[path].assign(array.astype("float32"))
        assigned.add(path)
        used.add(key)
    missing = sorted(set(targets) - assigned)
    if missing:
        raise ValueError(f"The state dict lacks {len(missing)} weights, e.g. {missing[:3]}.")
    gammas = [np.abs(v - 1).max() for k, v in state.items() if k.endswith(".bn.weight")]
    return {"tensors": len(used), "values": int(sum(np.prod(w.shape) for w in model.weights)),
            "max_abs_gamma_minus_1": float(max(gammas, default=0.0))}
