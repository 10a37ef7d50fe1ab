"""Assigning a checkpoint's arrays to a built network: each source tensor used once, each weight set once."""

import numpy as np


class WeightMap:
    """The weights of a built `network` by path below the network (`"enc_32x32_conv/kernel"`).

    `set` assigns a source array, `use` marks a source tensor read but not stored (a
    checked constant, a dropped input); `report` fails unless every source key was used
    exactly once and every weight was set. `notes` collect what a report should say.

    Args:
        network: a built Keras layer.
        source: str, the file named in errors.
    """

    def __init__(self, network, source):
        self.network, self.source = network, source
        self.targets = {w.path.split("/", 1)[1]: w for w in network.weights}
        self.assigned, self.used, self.notes = {}, set(), []

    def use(self, key):
        if key in self.used:
            raise ValueError(f"{self.source}: tensor {key!r} is used twice.")
        self.used.add(key)

    def set(self, path, array, key):
        """Assigns `array` (cast to float32) to the weight at `path`, from source tensor `key`."""
        if path not in self.targets:
            raise ValueError(f"{self.source}: tensor {key!r} {np.shape(array)} has no network weight {path!r}.")
        if path in self.assigned:
            raise ValueError(f"{self.source}: weight {path!r} is set twice ({self.assigned[path]!r}, {key!r}).")
        target = self.targets[path]
        if tuple(target.shape) != np.shape(array):
            raise ValueError(f"{self.source}: tensor {key!r} has shape {np.shape(array)}, weight {path!r} "
                             f"{tuple(target.shape)}.")
        target.assign(np.asarray(array, "float32"))
        self.assigned[path] = key
        self.use(key)

    def report(self, keys):
        """`{"tensors", "weights", "parameters", "notes"}` once every key in `keys` was used and every weight set."""
        unused = [k for k in keys if k not in self.used]
        if unused:
            raise ValueError(f"{self.source}: {len(unused)} tensors were not used, e.g. {unused[:3]}.")
        unset = sorted(set(self.targets) - set(self.assigned))
        if unset:
            raise ValueError(f"{self.source}: {len(unset)} network weights were not set, e.g. {unset[:3]}.")
        return {"tensors": len(self.used), "weights": len(self.assigned),
                "parameters": int(sum(np.prod(w.shape) for w in self.network.weights)), "notes": list(self.notes)}
