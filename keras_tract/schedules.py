"""Noise-level grids in VE (sigma) form, index 0 at the clean end.

Every schedule is a float64 NumPy array `sigmas` of length `num_steps + 1`,
ascending, computed once at construction. Teachers walk all levels; a student
with `k` steps walks every `num_steps // k`-th level (`coarse_indices`).
"""

import numpy as np
from keras.saving import register_keras_serializable


def _check_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {name}={value!r}.")
    return int(value)


class Schedule:
    """Base class: an ascending grid of `num_steps + 1` noise levels."""

    def __init__(self, num_steps):
        self.num_steps = _check_int("num_steps", num_steps)

    @property
    def sigmas(self):
        """float64 array of shape `(num_steps + 1,)`, ascending."""
        return self._sigmas.copy()

    def coarse_indices(self, steps):
        """Grid indices `[0, d, 2d, ..., num_steps]` of a `steps`-step sampler, `d = num_steps // steps`."""
        steps = _check_int("steps", steps)
        if self.num_steps % steps:
            raise ValueError(
                f"`steps` must divide num_steps={self.num_steps}, got steps={steps}."
            )
        return np.arange(0, self.num_steps + 1, self.num_steps // steps)

    def coarse_sigmas(self, steps):
        """float64 sigmas of the `steps`-step sub-grid, ascending, length `steps + 1`."""
        return self._sigmas[self.coarse_indices(steps)]

    def get_config(self):
        return {"num_steps": self.num_steps}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


@register_keras_serializable(package="keras_tract")
class KarrasSchedule(Schedule):
    """EDM's grid (Karras et al. 2022, eq. 5) with `sigmas[0] = 0`.

    `sigma_k = (sigma_min^(1/rho) + (k-1)/(N-1) (sigma_max^(1/rho) - sigma_min^(1/rho)))^rho`
    for `k = 1..N`. The grid `sigmas[1:]` equals EDM's sampler with `num_steps=N`.

    Args:
        num_steps: int, the number of levels `N` above zero.
        sigma_min: float > 0, the smallest nonzero level.
        sigma_max: float > sigma_min, the largest level.
        rho: float > 0, the warping exponent.

    Example:
    >>> KarrasSchedule(40).sigmas[:3].round(5)
    array([0.     , 0.002  , 0.00368])
    """

    def __init__(self, num_steps=40, sigma_min=0.002, sigma_max=80.0, rho=7.0):
        super().__init__(num_steps)
        if not 0 < sigma_min < np.inf:
            raise ValueError(f"`sigma_min` must be finite and > 0, got sigma_min={sigma_min!r}.")
        if not sigma_min < sigma_max < np.inf:
            raise ValueError(
                f"`sigma_max` must be finite and > sigma_min={sigma_min!r}, got sigma_max={sigma_max!r}."
            )
        if not 0 < rho < np.inf:
            raise ValueError(f"`rho` must be > 0, got rho={rho!r}.")
        self.sigma_min, self.sigma_max, self.rho = float(sigma_min), float(sigma_max), float(rho)
        n = self.num_steps
        frac = np.arange(n, dtype=np.float64) / max(n - 1, 1) if n > 1 else np.ones(1)
        lo, hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
        self._sigmas = np.concatenate([[0.0], (lo + frac * (hi - lo)) ** self.rho])

    def get_config(self):
        return {**super().get_config(), "sigma_min": self.sigma_min,
                "sigma_max": self.sigma_max, "rho": self.rho}


@register_keras_serializable(package="keras_tract")
class CosineSchedule(Schedule):
    """The cosine logSNR grid of progressive-distillation teachers, as VE sigmas.

    With `t = i / num_steps`, `b = arctan(exp(-logsnr_max / 2))` and
    `a = arctan(exp(-logsnr_min / 2)) - b`: `logsnr(t) = -2 log tan(a t + b)`,
    so `sigma(t) = exp(-logsnr / 2) = tan(a t + b)`. `sigmas[0]` is
    `exp(-logsnr_max / 2)`, not zero, as in the VP sampler that ends at logsnr_max.

    Args:
        num_steps: int, the number of steps `T` of the grid.
        logsnr_min: float, the logSNR at `t = 1` (pure noise end).
        logsnr_max: float > logsnr_min, the logSNR at `t = 0` (clean end).

    Example:
    >>> s = CosineSchedule(1024)
    >>> round(float(s.logsnr[1]), 2)
    12.9
    """

    def __init__(self, num_steps=1024, logsnr_min=-20.0, logsnr_max=20.0):
        super().__init__(num_steps)
        if not -np.inf < logsnr_min < logsnr_max < np.inf:
            raise ValueError(
                f"`logsnr_min` < `logsnr_max` must be finite, got logsnr_min={logsnr_min!r}, logsnr_max={logsnr_max!r}."
            )
        self.logsnr_min, self.logsnr_max = float(logsnr_min), float(logsnr_max)
        b = np.arctan(np.exp(-self.logsnr_max / 2))
        a = np.arctan(np.exp(-self.logsnr_min / 2)) - b
        t = np.arange(self.num_steps + 1, dtype=np.float64) / self.num_steps
        self._sigmas = np.tan(a * t + b)

    @property
    def logsnr(self):
        """float64 logSNR of each level, descending from logsnr_max to logsnr_min."""
        return -2.0 * np.log(self._sigmas)

    def get_config(self):
        return {**super().get_config(), "logsnr_min": self.logsnr_min,
                "logsnr_max": self.logsnr_max}


SCHEDULES = {"karras": KarrasSchedule, "cosine": CosineSchedule}


def get(name, num_steps):
    """The schedule `name` (`"karras"` or `"cosine"`) with `num_steps` levels and its default range."""
    if name not in SCHEDULES:
        raise ValueError(f"Unknown schedule name={name!r}; choose one of {sorted(SCHEDULES)}.")
    return SCHEDULES[name](num_steps)
