"""Experiment configs: Python files whose `get_config()` returns nested dicts, plus typed overrides.

A config has the sections `data`, `teacher` (the `--stage=teacher` run), `distill`
and `run`, `evaluate`. Overrides are `section.key=value` strings; the value is a
Python literal (or a bare string) and must have the type of the default.
"""

import ast
import copy
import importlib.util
import os

SECTIONS = ("data", "teacher", "distill", "run", "evaluate")
CHOICES = {
    "data.name": ("digits", "cifar10", "imagenet64", "tfds", "folder", "npz"),
    "distill.method": ("tract", "binary"),
    "distill.schedule": ("karras", "cosine"),
    "distill.teacher_solver": ("heun", "ddim"),
    "distill.loss": ("edm", "snr_trunc"),
    "run.dtype_policy": ("float32", "mixed_bfloat16"),
}
POSITIVE = ("data.batch_size", "teacher.train_len", "teacher.lr", "distill.train_len", "distill.lr",
            "distill.num_steps", "run.checkpoint_every", "run.log_every", "run.micro_batches", "run.sample_every",
            "run.num_images", "evaluate.num_samples", "evaluate.batch_size")


def defaults():
    """Every config key with its default: TRACT-EDM's published settings where they exist (tract_spec)."""
    return {
        "data": {
            "name": "digits",  # digits | cifar10 | imagenet64 | tfds (path = TFDS name) | folder | npz
            "batch_size": 512,  # global batch of the TRACT-EDM README (tract_spec §3.3)
            "flip": False,
            "labels": False,  # one-hot class labels for conditional models
            "data_dir": None,  # TFDS data_dir
            "path": None,  # folder, .npz or TFDS name
            "resolution": None,  # folder images resized to a square
        },
        "teacher": {  # --stage=teacher: EDM training (tract_spec §7)
            "network": "ddpmpp_small",  # a keras_tract.networks preset
            "network_kwargs": {},
            "sigma_data": 0.5,
            "p_mean": -1.2,
            "p_std": 1.2,
            "train_len": 200_000_000,  # samples (EDM: 200 Mimg on CIFAR-10)
            "lr": 1e-3,
            "lr_rampup": 10_000_000,  # samples of linear warm-up (EDM: 10 Mimg)
            "ema_halflife_kimg": 500.0,
            "ema_rampup_ratio": 0.05,
        },
        "distill": {
            "teacher": None,  # a .keras teacher (or --teacher)
            "method": "tract",  # tract | binary
            "schedule": "karras",  # karras (EDM, sigma 0.002..80, rho 7) | cosine (VP logSNR)
            "num_steps": 40,  # the teacher's grid (tract_spec §10.14)
            "time_schedule": [40, 1],
            "teacher_solver": "heun",  # heun (EDM teachers) | ddim
            "train_len": 96 * 2**20,  # samples over all phases; "96M" = 96 * 2^20 (tract_spec §3.2)
            "lr": 1e-3,  # tc_distill_edm.py (tract_spec §3.3)
            "lr_warmup": 0,  # samples of linear warm-up
            "self_teacher_momentum": 0.5,  # mu_S (tract_spec §4.2)
            "ema_residual": 1e-3,  # mu_I = ema_residual ** (1 / steps_per_phase) (tract_spec §4.3)
            "inference_momentum": None,  # mu_I given directly instead
            "loss": "edm",  # edm: F-space MSE, mean over pixels | snr_trunc: max(SNR, 1), sum over pixels
            "clip_teacher": None,  # None: Heun unclipped, DDIM clipped (tract_spec §10.3)
            "global_clipnorm": None,  # VP runs: 1.0 (tract_spec §10.2)
            "reset_inference_ema_on_phase": False,  # reset = 'none' (tract_spec §4.4)
        },
        "run": {
            "seed": 0,
            "micro_batches": 1,  # gradient accumulation: each step runs the batch in this many parts
            "dtype_policy": "float32",  # mixed_bfloat16: the student trains in bfloat16; EMAs, targets, loss float32
            "checkpoint_every": 2000,  # optimizer steps
            "sample_every": 10000,
            "log_every": 100,
            "num_images": 64,  # images in each periodic sample grid
        },
        "evaluate": {  # after distillation: teacher vs naive teacher vs student (pixel FD, RMSE)
            "num_samples": 1000,
            "batch_size": 250,
            "seed": 1,
            "reference_split": "test",  # None: no FD (use tools/fid.py for FID)
            "steps": [1, 2],
        },
    }


def load(path, overrides=()):
    """Runs `get_config()` from the Python file `path`, applies `overrides` and validates the result."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Config file not found: --config={path}")
    spec = importlib.util.spec_from_file_location(f"keras_tract_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"Config file {path} must define get_config().")
    config = module.get_config()
    for item in overrides:
        config = override(config, item)
    return validate(config)


def _parse(text):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _typed(key, default, value):
    """`value` converted to the type of `default`, or a ValueError naming `key`."""
    if default is None or value is None:
        return value
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(default, bool) and isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float))
        value = float(value) if ok else value
    elif isinstance(default, (list, tuple)):
        ok = isinstance(value, (list, tuple))
        value = list(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ValueError(f"Config value {key}={value!r} must be of type {type(default).__name__} "
                         f"(the default is {default!r}).")
    return value


def override(config, item):
    """A copy of `config` with one `section.key=value` override applied."""
    if "=" not in item:
        raise ValueError(f"An override must look like section.key=value, got {item!r}.")
    key, text = item.split("=", 1)
    section, _, name = key.strip().partition(".")
    if section not in config or not isinstance(config[section], dict) or name not in config[section]:
        known = sorted(f"{s}.{k}" for s in config if isinstance(config[s], dict) for k in config[s])
        raise ValueError(f"Unknown config key {key.strip()!r}; known keys: {', '.join(known)}.")
    config = copy.deepcopy(config)
    config[section][name] = _typed(key.strip(), config[section][name], _parse(text.strip()))
    return config


def validate(config):
    """Checks sections, choices and positive numbers; returns `config`."""
    missing = [s for s in SECTIONS if not isinstance(config.get(s), dict)]
    if missing:
        raise ValueError(f"Config is missing the sections {missing}.")
    extra = sorted(set(config) - set(SECTIONS))
    if extra:
        raise ValueError(f"Config has unknown sections {extra}; allowed: {list(SECTIONS)}.")
    for key, choices in CHOICES.items():
        value = get(config, key)
        if value not in choices:
            raise ValueError(f"Config value {key}={value!r} must be one of {list(choices)}.")
    for key in POSITIVE:
        value = get(config, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"Config value {key}={value!r} must be a positive number.")
    batch = config["data"]["batch_size"]
    if batch % config["run"]["micro_batches"]:
        raise ValueError(f"Config value data.batch_size={batch} must be a multiple of "
                         f"run.micro_batches={config['run']['micro_batches']}.")
    for stage in ("teacher", "distill"):
        if config[stage]["train_len"] < batch:
            raise ValueError(f"Config value {stage}.train_len={config[stage]['train_len']} is shorter than "
                             f"one batch (data.batch_size={batch}).")
    return config


def get(config, key):
    section, name = key.split(".")
    if name not in config[section]:
        raise ValueError(f"Config lacks the key {key!r}.")
    return config[section][name]
