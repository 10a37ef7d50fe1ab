"""Distillation targets as pure functions of denoisers and noise levels.

All levels are per-sample float32 tensors of shape `(B,)`; `x_t` is at `s0`.
The student is trained so that one DDIM step from `(x_t, s0)` to `s2` lands
on the endpoint computed here (TRACT, Berthelot et al. 2023, section 3).
"""

from keras import ops

from keras_tract.denoisers import expand_to
from keras_tract.solvers import ddim_step


def invert_ddim(x_t, x_end, s0, s2):
    """The clean estimate x0 for which the unclipped DDIM step `s0 -> s2` from `x_t` gives `x_end`.

    Solves `x_end = x0 + (s2 / s0) (x_t - x0)`: `x0 = (s0 x_end - s2 x_t) / (s0 - s2)`.
    """
    s0, s2 = expand_to(s0, x_t), expand_to(s2, x_t)
    return (s0 * x_end - s2 * x_t) / (s0 - s2)


def jump_to_group_end(denoiser, x1, s1, s2, at_end, labels=None, clip_denoised=True):
    """DDIM jump `s1 -> s2` by `denoiser`, or `x1` itself where `at_end` (`s1` is the group end)."""
    s1_safe = ops.where(at_end, ops.ones_like(s1), s1)
    x2 = ddim_step(denoiser, x1, s1_safe, s2, labels, clip_denoised)
    return ops.where(expand_to(at_end, x1), x1, x2)
