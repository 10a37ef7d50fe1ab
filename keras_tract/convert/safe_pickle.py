"""Reads EDM network pickles as data: no code from the file runs.

NVlabs/edm pickles its networks with `torch_utils.persistence`: each network object
unpickles through `_reconstruct_persistent_obj(meta)`, where `meta` holds the source
code of `training/networks.py`, a class name and the module's `__dict__`. EDM's own
loader executes that source. This reader never does: it knows the few globals such
files need and turns every module into a `Module` record of its class name, tensors,
submodules and constructor arguments. Any other global is refused, by name, before
anything is called.
"""

import collections
import io
import pickle

import numpy as np


class Module:
    """One pickled `torch.nn.Module`: `class_name` (`"EDMPrecond"`, `"ModuleDict"`, ...), `tensors`
    (parameters and buffers as NumPy arrays, None where unset), `modules` (name -> `Module`, in order)
    and `init_kwargs`."""

    def __init__(self, class_name, state):
        state = dict(state or {})
        self.class_name = class_name
        self.tensors = {**dict(state.get("_parameters") or {}), **dict(state.get("_buffers") or {})}
        self.modules = dict(state.get("_modules") or {})
        self.init_kwargs = dict(state.get("_init_kwargs") or {})

    def named_tensors(self, prefix=""):
        """`(dotted name, owning Module, tensor name, array)` for every tensor that is set, in order."""
        for name, value in self.tensors.items():
            if value is not None:
                yield prefix + name, self, name, value
        for name, child in self.modules.items():
            if child is not None:
                yield from child.named_tensors(f"{prefix}{name}.")


class _TorchModule:
    """A plain (not persistent) torch module such as `ModuleDict`, rebuilt by pickle's NEWOBJ/BUILD."""

    def __setstate__(self, state):
        self.state = state


def _persistent(meta):
    meta = dict(meta)
    if meta.get("type") != "class":
        raise pickle.UnpicklingError(f"unsupported persistent object type {meta.get('type')!r}")
    return Module(meta.get("class_name", "?"), meta.get("state"))


def _numpy_scalar(dtype, data=None):
    if dtype.hasobject:
        raise pickle.UnpicklingError(f"refusing a NumPy scalar of object dtype {dtype}")
    return np.frombuffer(data, dtype)[0]


def _torch():
    import torch

    return torch


def _load_storage(data):
    return _torch().load(io.BytesIO(data), weights_only=True)


def _rebuild_tensor(storage, offset, size, stride, *args):
    return _torch()._utils._rebuild_tensor_v2(storage, offset, size, stride, False, collections.OrderedDict())


def _rebuild_parameter(data, *args):
    return data


ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,  # files written with NumPy 1.x
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,  # and with NumPy 2
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("torch.nn.modules.container", "ModuleDict"): _TorchModule,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent,
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return ALLOWED[(module, name)]


def _to_numpy(value):
    """Tensors -> float32 NumPy arrays, plain modules -> `Module`, recursively through containers."""
    torch = _torch()
    if isinstance(value, torch.Tensor):
        return value.detach().to(torch.float32).numpy()
    if isinstance(value, Module):
        value.tensors = {k: _to_numpy(v) for k, v in value.tensors.items()}
        value.modules = {k: _to_numpy(v) for k, v in value.modules.items()}
        return value
    if isinstance(value, _TorchModule):
        return _to_numpy(Module("ModuleDict", value.state))
    if isinstance(value, dict):
        return {k: _to_numpy(v) for k, v in value.items()}
    return value


def load(path):
    """The pickle at `path` with every network as a `Module` and every tensor as a float32 array.

    Raises:
        ValueError: in one line, for a file that is truncated, corrupt, not a pickle, or needs a
            global this reader does not allow (named in the message); nothing from it has run.
    """
    try:
        with open(path, "rb") as f:
            return _to_numpy(_Unpickler(f).load())
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, RuntimeError,
            AttributeError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise ValueError(f"{path} is not a readable EDM network pickle ({first}).") from None
