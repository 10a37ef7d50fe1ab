"""The TRACT paper's claims, measured: TRACT against binary distillation, the number of phases, mu_S, mu_I.

Berthelot et al. 2023 (arXiv 2303.04248) claim, on CIFAR-10 and ImageNet-64:
  1. at an equal training budget TRACT's 1-step student beats binary time distillation (BTD,
     progressive distillation), and its 2-step samples beat its 1-step ones;
  2. few phases beat many: two phases were best in the paper's ablation of the time schedule;
  3. the self-teacher EMA mu_S = 0.5 beats 0, 0.9 and 0.99;
  4. the inference EMA matters (mu_I = ema_residual ** (1 / steps per phase)); ml-tract also offers
     restarting it at each phase boundary (`--reset=phase`).
This script measures each on two teachers, with one teacher grid (Karras, 32 levels, Heun) so that
BTD can halve 32 -> 16 -> 8 -> 4 -> 2 -> 1, every method at the same budget of training samples:
  gmm     the exact denoiser of 8 Gaussians on a circle in 2-D (`GaussianMixtureDenoiser`); the student
          is a residual MLP under EDM preconditioning. Metrics from fixed noise: RMSE to the exact
          probability-flow ODE solution (float64, adaptive Runge-Kutta), RMSE to the teacher's own
          32-level Heun samples, Frechet distance to the mixture's exact mean and covariance.
  digits  the bundled digits teacher (an EDM U-Net on scikit-learn's 8x8 digits); the student starts
          as its copy. Metrics: pixel Frechet distance to the 360 held-out test digits, RMSE to the
          teacher's 32-level Heun samples from the same noise.
Every student is sampled at 1 and 2 DDIM steps. The study is written to `--out`.json after every run
(a rerun skips finished runs, so it can be stopped and resumed) and rendered to `--out`.md and .png.

Usage:
    pip install -e ".[jax,study]"
    KERAS_BACKEND=jax python benchmarks/paper_claims.py            # the full study (docs/paper_claims.*)
    KERAS_BACKEND=jax python benchmarks/paper_claims.py --quick   # 11 short runs, 2 minutes at most
    KERAS_BACKEND=jax python benchmarks/paper_claims.py --check=digits/tract-32-4-1/n270/s0
      # reruns one finished run and prints its committed numbers beside the new ones
"""

import datetime
import json
import math
import os
import platform
import sys
import time

import numpy as np

LEVELS = 32  # one Karras grid for every method: BTD halves it five times
PHASES = {"tract": [(32, 1), (32, 4, 1), (32, 8, 2, 1)], "binary": [(32, 16, 8, 4, 2, 1)]}
DEFAULT = {"time_schedule": (32, 4, 1), "mu_s": 0.5, "ema_residual": 1e-3, "reset": False}
ABLATIONS = {"mu_s": (0.0, 0.9, 0.99), "ema_residual": (1e-1, 1e-5), "reset": (True,)}

# Per teacher: batch, learning rate (constant, Adam eps 1e-8, as ml-tract), the two budgets in optimizer
# steps (multiples of 30: every phase count divides them), seeds, evaluation samples, and optionally
# fewer ablation values than ABLATIONS.
FULL = {
    "digits": {"batch": 64, "lr": 1e-3, "budgets": [90, 270], "seeds": 3, "samples": 500},
    "gmm": {"batch": 256, "lr": 1e-3, "budgets": [300, 1200], "seeds": 3, "samples": 4000},
}
QUICK = {"gmm": {"batch": 128, "lr": 2e-3, "budgets": [10, 30], "seeds": 1, "samples": 500,
                 "ablations": {"mu_s": [0.99], "ema_residual": [0.1], "reset": [True]}}}
NOISE_SEED = 2023  # the evaluation noise, the same for every run

METRICS = {  # "@k" suffixes: sampled with k DDIM steps
    "rmse_exact": "RMSE to the exact ODE solution (gmm)",
    "rmse_teacher": "RMSE to the teacher's 32-level Heun samples",
    "fd": "Frechet distance to the data (gmm: the mixture's exact moments; digits: the 360 test digits)",
}
HEADLINE = {"gmm": "rmse_exact", "digits": "fd"}


# ----------------------------------------------------------------------------------------------- grid

def ablations(settings):
    return settings.get("ablations", ABLATIONS)


def run_id(spec):
    """`teacher/method-schedule[/muS][/r][/reset]/nSTEPS/sSEED`: a run's key in the JSON."""
    parts = [spec["teacher"], f"{spec['method']}-{'-'.join(map(str, spec['time_schedule']))}"]
    if spec["method"] == "tract" and spec["mu_s"] != DEFAULT["mu_s"]:
        parts.append(f"muS{spec['mu_s']:g}")
    if spec["ema_residual"] != DEFAULT["ema_residual"]:
        parts.append(f"r{spec['ema_residual']:g}")
    if spec["reset"]:
        parts.append("reset")
    return "/".join(parts + [f"n{spec['steps']}", f"s{spec['seed']}"])


def grid(settings):
    """Every run of the study: the methods at both budgets, the ablations of the default TRACT
    schedule at the larger one; seed-major, so one seed of every configuration finishes first."""
    specs = {}
    for seed in range(max(s["seeds"] for s in settings.values())):
        for teacher, s in settings.items():
            if seed >= s["seeds"]:
                continue
            base = {"teacher": teacher, "method": "tract", **DEFAULT, "seed": seed}
            configs = [dict(base, method=m, time_schedule=ts, steps=n)
                       for n in s["budgets"][::-1] for m, schedules in PHASES.items() for ts in schedules]
            configs += [dict(base, steps=s["budgets"][-1], **{key: v}) for key, values in ablations(s).items()
                        for v in values]
            for spec in configs:
                specs.setdefault(run_id(spec), json.loads(json.dumps(spec)))  # as it reads back from the JSON
    return specs


# ------------------------------------------------------------------------------------------- teachers

def mixture():
    """8 Gaussians of std 0.05 on a circle of radius 0.7: `(means (8, 2), stds (8,), weights (8,))`."""
    angles = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    return 0.7 * np.stack([np.cos(angles), np.sin(angles)], axis=1), np.full(8, 0.05), np.full(8, 1 / 8)


def mixture_denoiser(x, sigma):
    """E[x0 | x0 + sigma n = x] of `mixture()`, float64 numpy (independent of the Keras teacher)."""
    means, stds, weights = mixture()
    var = stds**2 + sigma**2
    d2 = ((x[:, None, :] - means[None]) ** 2).sum(-1)
    logits = np.log(weights) - x.shape[1] / 2 * np.log(var) - d2 / (2 * var)
    r = np.exp(logits - logits.max(1, keepdims=True))
    r /= r.sum(1, keepdims=True)
    post = means[None] + (stds**2 / var)[None, :, None] * (x[:, None, :] - means[None])
    return (r[..., None] * post).sum(1)


def exact_ode_solution(noise, sigma_max, sigma_end=1e-5):
    """The probability-flow ODE dx/dsigma = (x - D(x, sigma)) / sigma of `mixture()`, solved from
    `sigma_max * noise` in u = ln(sigma) with DOP853 (rtol 1e-10) to `sigma_end`, then denoised there."""
    import scipy.integrate

    shape = noise.shape

    def f(u, y):
        x = y.reshape(shape)
        return (x - mixture_denoiser(x, math.exp(u))).ravel()

    sol = scipy.integrate.solve_ivp(f, (math.log(sigma_max), math.log(sigma_end)), (sigma_max * noise).ravel(),
                                    method="DOP853", rtol=1e-10, atol=1e-10)
    if not sol.success:
        raise RuntimeError(f"the exact ODE solve failed: {sol.message}")
    return mixture_denoiser(sol.y[:, -1].reshape(shape), sigma_end)


def mixture_moments():
    """Exact mean and covariance of `mixture()`."""
    means, stds, weights = mixture()
    mean = weights @ means
    second = sum(w * (s**2 * np.eye(2) + np.outer(m, m)) for m, s, w in zip(means, stds, weights))
    return mean, second - np.outer(mean, mean)


_TEACHERS = {}


def teacher_model(name):
    """The Keras teacher (loaded once per process)."""
    if name not in _TEACHERS:
        import keras

        import keras_tract as kt

        if name == "gmm":
            _TEACHERS[name] = kt.GaussianMixtureDenoiser(*mixture())
        else:
            _TEACHERS[name] = keras.saving.load_model(kt.data.DIGITS_TEACHER)
    return _TEACHERS[name]


def noise_for(name, settings):
    shape = (settings["samples"], 2) if name == "gmm" else (settings["samples"], 8, 8, 1)
    return np.random.default_rng(NOISE_SEED).standard_normal(shape).astype("float32")


def references(name, settings, cache_dir):
    """`{"teacher": 32-level Heun samples, "exact": ODE solution (gmm), "data": held-out digits}`, and
    the teacher's own samplers' metrics; computed once and kept in `cache_dir`."""
    import keras

    import keras_tract as kt

    backend = keras.config.backend()
    path = os.path.join(cache_dir, f"references-{name}-{settings['samples']}-{backend}.npz")
    if os.path.exists(path):
        with np.load(path) as f:
            refs = dict(f)
        return refs, json.loads(str(refs.pop("baselines")))
    teacher, schedule, noise = teacher_model(name), kt.KarrasSchedule(LEVELS), noise_for(name, settings)
    refs = {"teacher": _as_np(kt.sample(teacher, schedule, noise, solver="heun"))}
    if name == "gmm":
        refs["exact"] = exact_ode_solution(noise.astype(np.float64), schedule.sigmas[-1])
    else:
        refs["data"] = kt.data.digits_arrays("test")[0] / 127.5 - 1.0
    rows = {"teacher, Heun 32 levels (63 NFE)": refs["teacher"]}
    for k in (1, 2):
        rows[f"teacher, DDIM {k} step{'s' * (k > 1)}"] = _as_np(
            kt.sample(teacher, schedule, noise, steps=k, solver="ddim", clip_denoised=True))
    baselines = {label: metrics(name, x, refs) for label, x in rows.items()}
    os.makedirs(cache_dir, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp.npz"
    np.savez(tmp, baselines=json.dumps(baselines), **refs)
    os.replace(tmp, path)
    return refs, baselines


def _as_np(x):
    import keras

    return np.asarray(keras.ops.convert_to_numpy(x), np.float64)


def metrics(name, x, refs):
    """The metrics of samples `x` (clipped to [-1, 1], as the samplers clip)."""
    from keras_tract.fid.stats import frechet_distance, frechet_distance_of
    from keras_tract.images import to_uint8

    x = np.clip(x, -1.0, 1.0)
    rmse = lambda a, b: float(np.sqrt(np.mean(np.sum((a - b).reshape(len(a), -1) ** 2, axis=1))))  # noqa: E731
    out = {"rmse_teacher": rmse(x, np.clip(refs["teacher"], -1, 1))}
    if name == "gmm":
        out["rmse_exact"] = rmse(x, refs["exact"])
        out["fd"] = frechet_distance(x.mean(0), np.cov(x, rowvar=False), *mixture_moments())[0]
    else:
        out["fd"] = frechet_distance_of(to_uint8(x) / 127.5 - 1.0, refs["data"])
    return out


# ----------------------------------------------------------------------------------------------- runs

def train_and_measure(spec, settings, cache_dir):
    """One run: distill with the spec's method and settings, then sample the inference EMA at 1 and 2 steps."""
    import keras
    import tensorflow as tf

    import keras_tract as kt

    name, seed = spec["teacher"], spec["seed"]
    refs, _ = references(name, settings, cache_dir)
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    teacher, schedule = teacher_model(name), kt.KarrasSchedule(LEVELS)
    if name == "gmm":
        student = kt.EDMPrecond(kt.networks.MLPNetwork(hidden=128, depth=3))
        student(np.zeros((1, 2), "float32"), np.ones((1,), "float32"))
        means, stds, _ = mixture()
        rng = np.random.default_rng(seed)
        data = (means[rng.integers(0, 8, 100_000)] + stds[0] * rng.standard_normal((100_000, 2))).astype("float32")
        dataset = tf.data.Dataset.from_tensor_slices(data).shuffle(20_000, seed=seed).repeat()
        dataset = dataset.batch(settings["batch"], drop_remainder=True).prefetch(2)
    else:
        student = kt.student_from(teacher)
        dataset = kt.data.digits(batch_size=settings["batch"], seed=seed)
    ts = tuple(spec["time_schedule"])
    phases = len(ts) - 1
    per_phase = spec["steps"] // phases
    common = dict(steps_per_phase=per_phase, reset_inference_ema_on_phase=spec["reset"], seed=seed)
    if spec["method"] == "tract":
        distiller = kt.TRACTDistiller(teacher, student, schedule, ts, self_teacher_momentum=spec["mu_s"],
                                      ema_residual=spec["ema_residual"], **common)
    else:  # BTD gets TRACT's inference EMA rule (ml-tract's fixed 0.9995 is tuned for 50k-step phases)
        distiller = kt.BinaryDistiller(teacher, student, schedule, ts, teacher_solver="heun", loss="edm",
                                       inference_momentum=spec["ema_residual"] ** (1 / per_phase), **common)
    distiller.compile(optimizer=keras.optimizers.Adam(settings["lr"], epsilon=1e-8))
    start = time.perf_counter()
    history = distiller.fit(dataset, epochs=1, steps_per_epoch=phases * per_phase, verbose=0)
    seconds = time.perf_counter() - start
    noise = noise_for(name, settings)
    result = {"train_seconds": round(seconds, 2), "final_loss": float(history.history["loss"][-1])}
    for k in (1, 2):
        for key, value in metrics(name, _as_np(distiller.generate(noise, steps=k)), refs).items():
            result[f"{key}@{k}"] = value
    return result


def _worker_init(counter, cache_dir):
    """Each worker process: one core, and (on JAX) a compilation cache shared by the workers, so the
    seeds of a configuration compile once."""
    with counter.get_lock():
        core, counter.value = counter.value, counter.value + 1
    cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cores[core % len(cores)]})
    single_thread()
    _compilation_cache(cache_dir)


def single_thread():
    """One compute thread on every backend (before it starts): a run's numbers then do not depend on the
    machine's core count, and `--check` reproduces a worker's run."""
    os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ.get("KERAS_BACKEND") == "torch":
        import torch  # before tensorflow: the other order can crash

        torch.set_num_threads(1)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def _compilation_cache(cache_dir):
    import keras

    if keras.config.backend() == "jax":
        import jax

        jax.config.update("jax_compilation_cache_dir", os.path.join(cache_dir, "jax"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _work(spec, settings, cache_dir):
    start = time.perf_counter()
    result = train_and_measure(spec, settings, cache_dir)
    return {**spec, "metrics": result, "seconds": round(time.perf_counter() - start, 1)}


# ---------------------------------------------------------------------------------------------- study

def load_study(path, header):
    """The study in `path`, or a new one; refuses a file made with other settings or on another backend."""
    if not os.path.exists(path):
        return {**header, "runs": {}}
    with open(path) as f:
        study = json.load(f)
    for key in ("settings", "backend"):
        if study.get(key) != header[key]:
            raise SystemExit(f"{path} holds a study with another {key} ({study.get(key)!r}, not {header[key]!r}): "
                             "pass another --out, or delete the file to start over.")
    return study


def save_study(path, study):
    from keras_tract.images import write_atomic

    write_atomic(path, (json.dumps(study, indent=1, sort_keys=True) + "\n").encode())


def run_study(settings, out, workers=0, cache_dir=None, log=print):
    """Runs every missing run of `grid(settings)` (in this process, or in `workers` processes), saving
    `out`.json after each; then renders `out`.md and `out`.png. Returns the study."""
    import keras

    cache_dir = cache_dir or default_cache_dir()
    header = {"settings": settings, "backend": keras.config.backend()}
    path = f"{out}.json"
    study = load_study(path, header)
    specs = grid(settings)
    todo = [(k, spec) for k, spec in specs.items() if k not in study["runs"]]
    pool = None
    if workers and todo:
        import concurrent.futures
        import multiprocessing

        _compilation_cache(cache_dir)
        context = multiprocessing.get_context("spawn")
        counter = context.Value("i", 0)
        pool = concurrent.futures.ProcessPoolExecutor(workers, context, _worker_init, (counter, cache_dir))
        for _ in range(workers):  # start the workers now: they import while the references are computed
            pool.submit(int)
    try:
        for name, s in settings.items():
            if name not in study.get("baselines", {}):
                study.setdefault("baselines", {})[name] = references(name, s, cache_dir)[1]
        log(f"{len(specs) - len(todo)} of {len(specs)} runs done; {len(todo)} to run on {keras.config.backend()} "
            f"with {workers or 1} process{'es' * bool(workers > 1)}.")
        failed = _run_all(study, path, todo, settings, pool, cache_dir, log)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    save_study(path, study)
    render(study, out)
    if failed:
        raise SystemExit(f"{len(failed)} run(s) failed ({', '.join(failed[:3])}{', ...' * (len(failed) > 3)}); "
                         "the others are saved: run the same command again to retry them.")
    return study


def _run_all(study, path, todo, settings, pool, cache_dir, log):
    """Runs `todo` (in `pool`, else here), saving the study after each run; returns the keys of failed runs."""
    import concurrent.futures

    start, failed = time.perf_counter(), []

    def settle(i, key, work):
        try:
            run = work()
        except Exception as error:  # one failed run does not lose the others; a rerun retries it
            failed.append(key)
            log(f"[{i + 1}/{len(todo)}] {key} failed: {type(error).__name__}: {error}")
            return
        study["runs"][key] = run
        study["versions"] = versions()
        save_study(path, study)
        left = (time.perf_counter() - start) / (i + 1) * (len(todo) - i - 1)
        headline, m = HEADLINE[run["teacher"]], run["metrics"]
        log(f"[{i + 1}/{len(todo)}] {key}: {headline}@1 {m[headline + '@1']:.4f}, @2 {m[headline + '@2']:.4f} "
            f"({run['seconds']:.0f} s; ~{left / 60:.0f} min left)")

    if pool is not None:
        futures = {pool.submit(_work, spec, settings[spec["teacher"]], cache_dir): key for key, spec in todo}
        for i, future in enumerate(concurrent.futures.as_completed(futures)):
            settle(i, futures[future], future.result)
    else:
        for i, (key, spec) in enumerate(todo):
            settle(i, key, lambda spec=spec: _work(spec, settings[spec["teacher"]], cache_dir))
    if todo:
        study["wall_seconds"] = round(study.get("wall_seconds", 0) + time.perf_counter() - start, 1)
    return failed


def default_cache_dir():
    home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return os.path.join(home, "keras_tract", "paper_claims_cache")


def versions():
    import keras

    mods = {"keras": keras.__version__, "python": platform.python_version(), "numpy": np.__version__}
    backend = keras.config.backend()
    mods[backend] = sys.modules[{"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]].__version__
    return {**mods, "machine": f"{platform.machine()}, {os.cpu_count()} cores", "date": str(datetime.date.today())}


# --------------------------------------------------------------------------------------------- report

def describe(spec):
    ts = "->".join(map(str, spec["time_schedule"]))
    if spec["method"] == "binary":
        return f"BTD {ts} ({len(spec['time_schedule']) - 1} phases)"
    phases = len(spec["time_schedule"]) - 1
    return f"TRACT {ts} ({phases} phase{'s' * (phases > 1)})"


def select(runs, steps, **fields):
    """The runs at `steps` whose configuration is the default TRACT one but for `fields`."""
    want = json.loads(json.dumps({**DEFAULT, "method": "tract", **fields}))
    return [r for r in runs if r["steps"] == steps and all(r[k] == v for k, v in want.items())]


def tables(study):
    """`[(teacher, title, [(label, [runs over seeds]), ...]), ...]`: the study's tables, from its runs."""
    out = []
    for name, s in study["settings"].items():
        runs = [r for r in study["runs"].values() if r["teacher"] == name]
        for n in s["budgets"]:
            rows = [(describe({"method": m, "time_schedule": ts}), select(runs, n, method=m, time_schedule=ts))
                    for m, schedules in PHASES.items() for ts in schedules]
            out.append((name, f"Methods and phases, {n} steps of batch {s['batch']} ({n * s['batch']:,} samples)",
                        rows))
        n, default = s["budgets"][-1], "->".join(map(str, DEFAULT["time_schedule"]))
        values = ablations(s)
        rows = [(f"mu_S = {v:g}", select(runs, n, mu_s=v)) for v in sorted({DEFAULT["mu_s"], *values["mu_s"]})]
        out.append((name, f"Self-teacher EMA mu_S, TRACT {default}, {n} steps", rows))
        rows = [(f"ema_residual = {v:g}", select(runs, n, ema_residual=v))
                for v in sorted({DEFAULT["ema_residual"], *values["ema_residual"]}, reverse=True)]
        rows.append((f"ema_residual = {DEFAULT['ema_residual']:g}, reset at the phase boundary",
                     select(runs, n, reset=True)))
        out.append((name, f"Inference EMA, TRACT {default}, {n} steps", rows))
    return out


def columns(name):
    keys = ["rmse_exact", "rmse_teacher", "fd"] if name == "gmm" else ["fd", "rmse_teacher"]
    return [f"{key}@{k}" for k in (1, 2) for key in keys]


def mean_std(runs, key):
    """Mean and sample standard deviation over seeds (std 0 for one seed)."""
    values = np.array([r["metrics"][key] for r in runs], np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def cell(mean, std):
    return f"{mean:.4f} ± {std:.4f}"


def render(study, out):
    """Writes `out`.md (tables: mean ± std over seeds, best mean in bold) and `out`.png."""
    from keras_tract.images import write_atomic

    s, v = study["settings"], study.get("versions", {})
    n_seeds = max(x["seeds"] for x in s.values())
    made_with = ", ".join(f"{k} {x}" for k, x in sorted(v.items()))
    lines = [
        "# The TRACT paper's claims, measured",
        "",
        f"Made by `benchmarks/paper_claims.py` on {study['backend']} ({made_with}): "
        f"{len(study['runs'])} runs in {study.get('wall_seconds', 0) / 60:.0f} min. Every cell is the mean ± the "
        f"standard deviation over {n_seeds} seed{'s' * (n_seeds > 1)} (the training seed: student initialisation, "
        "data order, the levels and noise of each step); the evaluation noise is the same for every run. "
        "Bold: the best mean of a column. Teacher grid: Karras, 32 levels, Heun teacher; every method trains "
        "the same number of steps at the same batch, split equally over its phases; Adam with a constant "
        "learning rate; EDM's loss; mu_I = ema_residual ** (1 / steps per phase) for TRACT and BTD alike.",
        "",
        "Metrics (`@k`: the inference EMA sampled with k DDIM steps): " + "; ".join(
            f"`{k}` {d}" for k, d in METRICS.items()) + ".",
        "",
        f"Rerun: `KERAS_BACKEND={study['backend']} python benchmarks/paper_claims.py"
        f"{' --quick' * (s == QUICK)}` (finished runs are kept); "
        "one run against its saved numbers: `--check=RUN_ID` (the ids are the keys of `runs` in the JSON).",
        "",
    ]
    for name in s:
        lines += [f"## Teacher `{name}`: its own samplers", "", "| sampler | " + " | ".join(
            c.split("@")[0] for c in columns(name)[: len(columns(name)) // 2]) + " |",
                  "|---|" + "---:|" * (len(columns(name)) // 2)]
        for label, m in study["baselines"][name].items():
            lines.append(f"| {label} | " + " | ".join(f"{m[c.split('@')[0]]:.4f}"
                                                      for c in columns(name)[: len(columns(name)) // 2]) + " |")
        lines.append("")
    for name, title, rows in tables(study):
        cols = columns(name)
        lines += [f"## `{name}`: {title}", "", "| | seeds | " + " | ".join(f"`{c}`" for c in cols) + " |",
                  "|---|---:|" + "---:|" * len(cols)]
        stats = {label: {c: mean_std(runs, c) for c in cols} for label, runs in rows if runs}
        best = {c: min(x[c][0] for x in stats.values()) for c in cols} if stats else {}
        for label, runs in rows:
            parts = [cell(*stats[label][c]) if runs else "-" for c in cols]
            parts = [f"**{p}**" if runs and stats[label][c][0] == best[c] else p for p, c in zip(parts, cols)]
            lines.append(f"| {label} | {len(runs)} | " + " | ".join(parts) + " |")
        lines.append("")
    write_atomic(f"{out}.md", "\n".join(lines).encode())
    figure(study, f"{out}.png")


def figure(study, path):
    """Per teacher: the headline 1-step metric against the budget per method, and the ablations as bars."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from keras_tract.images import write_atomic

    names = list(study["settings"])
    fig, axes = plt.subplots(len(names), 3, figsize=(15, 4.2 * len(names)), squeeze=False)
    by_teacher = {}
    for name, title, rows in tables(study):
        by_teacher.setdefault(name, []).append((title, rows))
    for ax_row, name in zip(axes, names):
        key = HEADLINE[name] + "@1"
        s = study["settings"][name]
        budgets = np.array(s["budgets"]) * s["batch"]
        method_tables = by_teacher[name][: len(s["budgets"])]
        for i, (label, _) in enumerate(method_tables[0][1]):
            done = [(b, mean_std(rows[i][1], key)) for b, (_, rows) in zip(budgets, method_tables) if rows[i][1]]
            ax_row[0].errorbar([b for b, _ in done], [m for _, (m, _) in done], [sd for _, (_, sd) in done],
                               marker="o", capsize=4, label=label, linestyle="--" if label.startswith("BTD") else "-")
        ax_row[0].set(xscale="log", xlabel="training samples (equal for every method)",
                      ylabel=f"{key} (lower is better)", title=f"{name}: 1-step student, TRACT against BTD")
        ax_row[0].set_xticks(budgets, [f"{b:,}" for b in budgets])
        ax_row[0].minorticks_off()
        ax_row[0].legend(fontsize=8)
        for ax, (title, rows) in zip(ax_row[1:], by_teacher[name][len(s["budgets"]):]):
            shown = [(label, runs) for label, runs in rows if runs]
            stats = [mean_std(runs, key) for _, runs in shown]
            default = [all(r[k] == json.loads(json.dumps(v)) for r in runs for k, v in DEFAULT.items())
                       for _, runs in shown]
            ax.bar(range(len(stats)), [m for m, _ in stats], yerr=[sd for _, sd in stats], capsize=5,
                   color=["tab:orange" if d else "tab:blue" for d in default])
            labels = [label.replace("ema_residual", "r").replace(", reset at the phase boundary", "\n+ reset")
                      for label, _ in shown]
            ax.set_xticks(range(len(stats)), labels, fontsize=8)
            ax.set(ylabel=f"{key} (orange: the default)", title=f"{name}: {title.split(',')[0]}, "
                   f"{s['budgets'][-1] * s['batch']:,} samples")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    write_atomic(path, buffer.getvalue())


def check(study, key, cache_dir):
    """Reruns the finished run `key` in this process and prints its committed metrics beside the new ones."""
    if key not in study["runs"]:
        raise SystemExit(f"--check={key!r} is not a finished run of this study; run ids look like "
                         f"{next(iter(study['runs']), 'digits/tract-32-4-1/n270/s0')!r}.")
    old = study["runs"][key]
    spec = {k: old[k] for k in grid(study["settings"])[key]}
    new = _work(spec, study["settings"][spec["teacher"]], cache_dir)
    print(f"{'metric':<16} {'committed':>12} {'rerun':>12} {'difference':>12}")
    for m, value in old["metrics"].items():
        if m != "train_seconds":
            print(f"{m:<16} {value:>12.6f} {new['metrics'][m]:>12.6f} {new['metrics'][m] - value:>12.2e}")
    return new


def main(argv):
    from absl import flags

    f = flags.FLAGS
    out = f.out or ("/tmp/paper_claims_quick" if f.quick else os.path.normpath(os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "docs", "paper_claims")))
    settings = QUICK if f.quick else FULL
    cache_dir = f.cache_dir or default_cache_dir()
    if f.check:
        if not os.path.exists(f"{out}.json"):
            raise SystemExit(f"--check: {out}.json does not exist; run the study first (or pass its --out).")
        single_thread()
        _compilation_cache(cache_dir)
        import keras

        with open(f"{out}.json") as fh:
            study = json.load(fh)
        if study["backend"] != keras.config.backend():
            raise SystemExit(f"{out}.json was made on {study['backend']}: rerun with KERAS_BACKEND={study['backend']}.")
        check(study, f.check, cache_dir)
        return
    workers = len(os.sched_getaffinity(0)) if f.workers is None else f.workers
    study = run_study(settings, out, workers=workers, cache_dir=cache_dir)
    print(f"Wrote {out}.json, .md and .png ({len(study['runs'])} runs, {study.get('wall_seconds', 0) / 60:.1f} min).")


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_bool("quick", False, "The reduced grid: the exact teacher, one seed, 11 short runs (2 minutes at "
                      "most on 2 cores).")
    flags.DEFINE_string("out", None, "Output prefix (default docs/paper_claims; with --quick /tmp/paper_claims_quick).")
    flags.DEFINE_integer("workers", None, "Worker processes, one core each (default: one per core; 0: in this "
                         "process).", lower_bound=0)
    flags.DEFINE_string("cache_dir", None, "Teacher references and JAX's compilation cache (default: "
                        "$KERAS_HOME/keras_tract/paper_claims_cache).")
    flags.DEFINE_string("check", None, "Rerun one finished run by id and compare it with the saved numbers.")
    app.run(main)
