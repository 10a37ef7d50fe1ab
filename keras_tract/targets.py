"""Distillation targets as pure functions of denoisers and noise levels.

All levels are per-sample float32 tensors of shape `(B,)`; `x_t` is at `s0`.
The student is trained so that one DDIM step from `(x_t, s0)` to `s2` lands
on the endpoint computed here (TRACT, Berthelot et al. 2023, section 3, eq. 6).
"""

from keras import ops

from keras_tract.denoisers import expand_to
from keras_tract.solvers import ddim_from_denoised, denoise


def invert_ddim(x_t, x_end, s0, s2):
    """The clean estimate x0 for which the unclipped DDIM step `s0 -> s2` from `x_t` gives `x_end`.

    Solves `x_end = x0 + (s2 / s0) (x_t - x0)`: `x0 = (s0 x_end - s2 x_t) / (s0 - s2)`.
    """
    s0, s2 = expand_to(s0, x_t), expand_to(s2, x_t)
    return (s0 * x_end - s2 * x_t) / (s0 - s2)


def heun_to(denoiser, x, s0, s1, labels=None, clip_denoised=False):
    """Heun step `s0 -> s1`; where `s1 == 0` the result is `D(x; s0)` (EDM's final Euler step)."""
    to_zero = s1 <= 0.0
    x0 = denoise(denoiser, x, s0, labels, clip_denoised)
    s1_safe = ops.where(to_zero, s0, s1)
    step = expand_to(s1_safe - s0, x)
    d0 = (x - x0) / expand_to(s0, x)
    x_euler = x + step * d0
    d1 = (x_euler - denoise(denoiser, x_euler, s1_safe, labels, clip_denoised)) / expand_to(s1_safe, x)
    return ops.where(expand_to(to_zero, x), x0, x + step * 0.5 * (d0 + d1))


def ddim_to(denoiser, x, s0, s1, labels=None, clip_denoised=False):
    """DDIM step `s0 -> s1` (any `s1 >= 0`)."""
    return ddim_from_denoised(x, denoise(denoiser, x, s0, labels, clip_denoised), s0, s1)


def jump_to_group_end(denoiser, x1, s1, s2, at_end, labels=None, clip_denoised=True):
    """DDIM jump `s1 -> s2` by `denoiser`, or `x1` itself where `at_end` (`s1` is the group end)."""
    s1_safe = ops.where(at_end, ops.ones_like(s1), s1)
    x2 = ddim_to(denoiser, x1, s1_safe, s2, labels, clip_denoised)
    return ops.where(expand_to(at_end, x1), x1, x2)
