"""Deterministic probability-flow ODE steps in VE form, and a compiled sampler.

Every step takes per-sample noise levels `sigma`, `sigma_next` of shape `(B,)`
so the same code serves samplers (one level for the batch) and distillation
targets (a level per sample).
"""

import json
import weakref
import zipfile

import keras
import numpy as np
from keras import ops

from keras_tract import backend
from keras_tract.denoisers import as_float32, expand_to, image_shape
from keras_tract.images import to_uint8

SOLVERS = ("heun", "ddim")


def denoise(denoiser, x, sigma, labels=None, clip_denoised=False):
    """`denoiser(x, sigma, labels)`, optionally clipped to [-1, 1]."""
    x0 = denoiser(x, sigma, labels) if labels is not None else denoiser(x, sigma)
    if not clip_denoised:
        return x0
    dtype = keras.backend.standardize_dtype(x0.dtype)
    return ops.clip(x0, backend.constant(-1.0, dtype), backend.constant(1.0, dtype))


def ddim_step(denoiser, x, sigma, sigma_next, labels=None, clip_denoised=False):
    """One DDIM step (= Euler step of dx/dsigma = (x - D) / sigma) from `sigma` to `sigma_next >= 0`.

    `x_next = x0 + sigma_next (x - x0) / sigma` with `x0 = D(x; sigma)`; at
    `sigma_next = 0` it returns `x0`.
    """
    x, sigma, sigma_next = as_float32(x, sigma, sigma_next)
    x0 = denoise(denoiser, x, sigma, labels, clip_denoised)
    return ddim_from_denoised(x, x0, sigma, sigma_next)


def ddim_from_denoised(x, x0, sigma, sigma_next):
    """The DDIM step given the clean estimate `x0` at `(x, sigma)`."""
    ratio = expand_to(sigma_next / sigma, x)
    return x0 + ratio * (x - x0)


def heun_step(denoiser, x, sigma, sigma_next, labels=None, clip_denoised=False):
    """EDM's deterministic Heun step (Algorithm 1, S_churn = 0) from `sigma` to `sigma_next`.

    Per sample: where `sigma_next > 0` the Heun (trapezoidal) step of two evaluations; where
    `sigma_next == 0` EDM's last step, the Euler step, which lands on `x0 = D(x; sigma)`.
    """
    x, sigma, sigma_next = as_float32(x, sigma, sigma_next)
    to_zero = sigma_next <= 0.0
    x0 = denoise(denoiser, x, sigma, labels, clip_denoised)
    safe_next = ops.where(to_zero, sigma, sigma_next)
    step = expand_to(safe_next - sigma, x)
    d0 = (x - x0) / expand_to(sigma, x)
    x_euler = x + step * d0
    d1 = (x_euler - denoise(denoiser, x_euler, safe_next, labels, clip_denoised)) / expand_to(safe_next, x)
    return ops.where(expand_to(to_zero, x), x0, x + step * 0.5 * (d0 + d1))


def check_solver(solver):
    if solver not in SOLVERS:
        raise ValueError(f"`solver` must be one of {SOLVERS}, got solver={solver!r}.")


_CACHE = weakref.WeakKeyDictionary()


def _sampler(denoiser, levels, solver, clip_denoised, jit_compile):
    """A compiled `f(noise, labels)` walking the descending float64 `levels`."""
    # EDM's last step to sigma = 0 is an Euler (= DDIM) step: one evaluation, not Heun's two.
    last_to_zero = solver == "heun" and levels[-1] == 0.0
    table = levels.astype("float32")
    num_loop = len(levels) - 1 - int(last_to_zero)
    step = heun_step if solver == "heun" else ddim_step

    def run(noise, labels):
        sigmas = backend.constant(table, "float32")
        ones = ops.ones((ops.shape(noise)[0],), "float32")
        x = ops.cast(noise, "float32") * sigmas[0]

        def body(i, x):
            return step(denoiser, x, ones * sigmas[i], ones * sigmas[i + 1], labels, clip_denoised)

        if num_loop:
            x = ops.fori_loop(0, num_loop, body, x)
        if last_to_zero:
            x = ddim_step(denoiser, x, ones * sigmas[-2], ones * sigmas[-1], labels, clip_denoised)
        return x

    kwargs = {} if jit_compile is None else {"jit_compile": jit_compile}
    return backend.compile_function(denoiser, run, **kwargs)


def sample(denoiser, schedule, noise, steps=None, solver="heun", labels=None,
           clip_denoised=False, jit_compile=None):
    """Solves the probability-flow ODE from `schedule.sigmas[-1] * noise` down to level 0.

    Args:
        denoiser: a VE denoiser `D(x, sigma, labels=None)`.
        schedule: a `Schedule`; its levels are walked from the top.
        noise: `(B, ...)` standard-normal noise.
        steps: int dividing `schedule.num_steps`; walks every
            `num_steps // steps`-th level. Default: all levels.
        solver: `"heun"` (EDM; 2 evaluations a step, `2 steps - 1` when the last
            level is 0) or `"ddim"` (1 evaluation a step).
        labels: optional `(B, num_classes)` one-hot labels.
        clip_denoised: bool, clip each denoised estimate to [-1, 1].
        jit_compile: None for the backend's default (XLA on JAX and TensorFlow,
            eager `no_grad` on PyTorch), or a bool.

    Returns:
        float32 tensor with the shape of `noise`: the sample at level 0.

    The compiled function is cached per denoiser and reads its weights at each
    call, so it can be reused while the weights train.
    """
    check_solver(solver)
    steps = schedule.num_steps if steps is None else steps
    levels = schedule.coarse_sigmas(steps)[::-1]
    noise = ops.convert_to_tensor(noise, "float32")
    expected = image_shape(denoiser)
    if len(noise.shape) < 2 or (expected is not None and tuple(noise.shape[1:]) != expected):
        raise ValueError(f"`noise` must have shape (B, {', '.join(map(str, expected)) if expected else '...'})"
                         f"{' for this denoiser' if expected else ''}, got noise.shape={tuple(noise.shape)}.")
    if not denoiser.built:  # build outside the compiled function
        denoise(denoiser, noise[:1], ops.ones((1,)), None if labels is None else labels[:1])
    key = (tuple(levels.tolist()), solver, bool(clip_denoised), jit_compile)
    cache = _CACHE.setdefault(denoiser, {})
    if key not in cache:
        cache[key] = _sampler(denoiser, levels, solver, clip_denoised, jit_compile)
    return cache[key](noise, labels)


def sample_images(denoiser, schedule, num, steps=None, solver="ddim", num_classes=0, label=None, seed=0,
                  batch_size=250, shape=None):
    """Yields uint8 image batches (EDM's quantization) of `num` samples drawn from seeded noise.

    Args:
        denoiser: a built VE denoiser of images in [-1, 1].
        schedule, steps, solver: as in `sample`; DDIM steps clip the denoised estimate.
        num: number of images. num_classes: > 0 for a class-conditional denoiser.
        label: one class for every image; default labels drawn uniformly.
        seed: seeds the noise (and labels). batch_size: images per `sample` call.
        shape: `(H, W, C)`, default the shape the denoiser was built for.
    """
    rng = np.random.default_rng(seed)
    shape = tuple(shape or image_shape(denoiser))
    for start in range(0, num, batch_size):
        n = min(batch_size, num - start)
        noise = rng.standard_normal((n,) + shape).astype("float32")
        labels = None
        if num_classes:
            ids = np.full(n, label) if label is not None else rng.integers(0, num_classes, n)
            labels = np.eye(num_classes, dtype="float32")[ids]
        x = sample(denoiser, schedule, noise, steps=steps, solver=solver, labels=labels,
                   clip_denoised=solver == "ddim")
        yield to_uint8(ops.convert_to_numpy(x))


def saved_sampling(path):
    """The `sampling` record of a `.keras` denoiser file (`Denoiser`), read without loading its weights;
    `{}` when it has none. Raises ValueError for a file that is not a `.keras` archive."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, ValueError):
        raise ValueError(f"{path} is not a readable .keras file (corrupt or truncated).") from None
    return dict(config.get("config", {}).get("sampling") or {})


def resolve_sampling(saved, schedule=None, num_steps=None, solver=None, steps=None):
    """`(schedule, solver, steps)` from a `sampling` record and command-line choices.

    A choice left None takes the record's value (else Karras 40 levels, DDIM, every level); a
    schedule or solver that contradicts the record raises ValueError, as does `steps` that does
    not divide the schedule, so a bad command fails before any weights load.
    """
    recorded = keras.saving.deserialize_keras_object(saved["schedule"]) if "schedule" in saved else None
    if schedule is None and num_steps is None and recorded is not None:
        chosen = recorded
    else:
        from keras_tract import schedules

        name = schedule or next((k for k, v in schedules.SCHEDULES.items() if isinstance(recorded, v)), "karras")
        chosen = schedules.get(name, num_steps or (recorded.num_steps if recorded is not None else 40))
        if recorded is not None and chosen.get_config() != recorded.get_config():
            raise ValueError(f"The model was trained to sample on {recorded!r}, not on {chosen!r}; "
                             "leave --schedule and --num_steps out to use its own.")
    if solver is not None and saved.get("solver") not in (None, solver):
        raise ValueError(f"The model samples with solver={saved['solver']!r}, not {solver!r}; leave --solver out.")
    solver = solver or saved.get("solver", "ddim")
    check_solver(solver)
    steps = steps or saved.get("steps")
    if steps is not None:
        chosen.coarse_indices(steps)
    return chosen, solver, steps
