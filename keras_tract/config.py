"""Experiment configs: Python files whose `get_config()` returns nested dicts, plus typed overrides.

A config has the sections `data`, `teacher` (the `--stage=teacher` run), `distill`
and `run`, `evaluate`. Overrides are `section.key=value` strings; the value is a
Python literal (or a bare string) and must have the type of the default.
"""

import ast
import copy
import difflib
import importlib.util
import os

SECTIONS = ("data", "teacher", "distill", "run", "evaluate")
# Keys whose default is None: the type a set value must have.
OPTIONAL = {"data.data_dir": str, "data.path": str, "data.resolution": int, "data.key": str,
            "distill.teacher": str, "distill.inference_momentum": float, "distill.clip_teacher": bool,
            "distill.global_clipnorm": float, "evaluate.reference_split": str, "evaluate.reference": str,
            "evaluate.fid_ref": str}
POSITIVE = ("data.batch_size", "data.resolution", "teacher.train_len", "teacher.lr", "teacher.sigma_data",
            "teacher.p_std", "teacher.ema_halflife_kimg", "distill.train_len", "distill.lr", "distill.num_steps",
            "distill.global_clipnorm", "run.checkpoint_every", "run.log_every", "run.micro_batches",
            "run.sample_every", "run.num_images", "evaluate.num_samples", "evaluate.batch_size",
            "evaluate.fid_samples")
NON_NEGATIVE = ("teacher.lr_rampup", "distill.lr_warmup", "run.seed", "evaluate.seed", "evaluate.fid_every")
UNIT = ("distill.self_teacher_momentum", "distill.inference_momentum")  # in [0, 1)


def choices():
    """The allowed values of the keys that name something, taken from the code that implements them."""
    from keras_tract import data, distiller, networks, schedules, solvers, trainer

    return {"data.name": data.SOURCES, "teacher.network": tuple(sorted(networks.PRESETS)),
            "distill.method": tuple(distiller.METHODS), "distill.schedule": tuple(schedules.SCHEDULES),
            "distill.teacher_solver": solvers.SOLVERS, "distill.loss": distiller.LOSSES,
            "run.dtype_policy": trainer.DTYPE_POLICIES}


def defaults():
    """Every config key with its default: TRACT-EDM's published settings where they exist (the paper's
    section 5 and appendix, and the defaults of ml-tract's `tc_distill_edm.py`)."""
    return {
        "data": {
            "name": "digits",  # digits | cifar10 | imagenet64 | tfds (path = TFDS name) | folder | npz
            "batch_size": 512,  # global batch of ml-tract's TRACT-EDM README command
            "flip": False,
            "labels": False,  # one-hot class labels for conditional models
            "data_dir": None,  # TFDS data_dir
            "download": False,  # let TFDS download and prepare a missing dataset (needs internet)
            "path": None,  # folder, .npz or TFDS name
            "key": None,  # the .npz array that holds the images (default: the first)
            "resolution": None,  # folder images resized to a square
        },
        "teacher": {  # --stage=teacher: EDM training (Karras et al. 2022, section 5 and Table 7)
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
            "num_steps": 40,  # the teacher's grid (TRACT-EDM: 40 Karras levels)
            "time_schedule": [40, 1],
            "teacher_solver": "heun",  # heun (EDM teachers) | ddim
            "train_len": 96 * 2**20,  # samples over all phases; "96M" = 96 * 2^20 (tc_distill_edm.py --train_len)
            "lr": 1e-3,  # tc_distill_edm.py
            "lr_warmup": 0,  # samples of linear warm-up
            "self_teacher_momentum": 0.5,  # mu_S (paper, section 3.2)
            "ema_residual": 1e-3,  # mu_I = ema_residual ** (1 / steps_per_phase) (tc_distill_edm.py)
            "inference_momentum": None,  # mu_I given directly instead
            "loss": "edm",  # edm: F-space MSE, mean over pixels | snr_trunc: max(SNR, 1), sum over pixels
            "clip_teacher": None,  # None: Heun unclipped, DDIM clipped (as the official scripts)
            "global_clipnorm": None,  # VP runs: 1.0 (tc_distill.py)
            "reset_inference_ema_on_phase": False,  # the official default: no reset
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
            "reference_split": "test",  # held-out split of digits / TFDS data for the FD; None: no FD
            "reference": None,  # held-out images (folder or .npz) for the FD, any data source
            "steps": [1, 2],
            # During distillation (keras_tract.fid.monitor): the student's FID at `steps` every `fid_every`
            # training samples (0: never; checked at each checkpoint), from `fid_samples` images, against
            # the statistics `fid_ref` (tools/fid.py stats, or EDM's fid-refs); needs FID Inception weights.
            "fid_every": 0,
            "fid_samples": 10_000,
            "fid_ref": None,
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


def _nearest(name, names):
    close = difflib.get_close_matches(name, list(names), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f"; valid: {', '.join(sorted(names))}"


def _typed(key, default, value):
    """`value` converted to the type of `default` (or of `OPTIONAL[key]`), or a ValueError naming `key`."""
    if value is None and (default is None or key in OPTIONAL):
        return None
    if default is None:
        default = OPTIONAL[key]()
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
        raise ValueError(f"Config value {key}={value!r} must be of type {type(default).__name__}"
                         + (" or None." if key in OPTIONAL else f" (the default is {default!r})."))
    return value


def override(config, item):
    """A copy of `config` with one `section.key=value` override applied."""
    if "=" not in item:
        raise ValueError(f"An override must look like section.key=value, got {item!r}.")
    key, text = (part.strip() for part in item.split("=", 1))
    _check_key(key)
    section, name = key.split(".")
    config = copy.deepcopy(config)
    config.setdefault(section, {})[name] = _parse(text)
    return config


def _check_key(key):
    section, _, name = key.partition(".")
    reference = defaults()
    if section not in reference:
        raise ValueError(f"Unknown config section {section!r} in {key!r}{_nearest(section, reference)}.")
    if name not in reference[section]:
        raise ValueError(f"Unknown config key {key!r}{_nearest(key, [f'{section}.{k}' for k in reference[section]])}.")


def validate(config):
    """Checks every key, type, choice and range before anything runs; returns `config` with its values typed."""
    if not isinstance(config, dict):
        raise ValueError(f"A config must be a dict of the sections {list(SECTIONS)}, got {type(config).__name__}.")
    reference = defaults()
    for section in SECTIONS:
        if not isinstance(config.get(section), dict):
            raise ValueError(f"Config lacks the section {section!r}: start from keras_tract.config.defaults().")
    for section, values in config.items():
        if section not in reference:
            raise ValueError(f"Unknown config section {section!r}{_nearest(section, reference)}.")
        for name, value in values.items():
            _check_key(f"{section}.{name}")
            values[name] = _typed(f"{section}.{name}", reference[section][name], value)
    for section, names in reference.items():
        missing = sorted(set(names) - set(config[section]))
        if missing:
            raise ValueError(f"Config lacks the keys {', '.join(f'{section}.{k}' for k in missing)}: "
                             "start from keras_tract.config.defaults().")
    for key, allowed in choices().items():
        if get(config, key) not in allowed:
            raise ValueError(f"Config value {key}={get(config, key)!r} must be one of {list(allowed)}.")
    _check_ranges(config)
    _check_consistency(config)
    return config


def _check_ranges(config):
    for keys, test, words in ((POSITIVE, lambda v: v > 0, "a positive number"),
                              (NON_NEGATIVE, lambda v: v >= 0, "a number >= 0"),
                              (UNIT, lambda v: 0 <= v < 1, "in [0, 1)")):
        for key in keys:
            value = get(config, key)
            if value is not None and not test(value):
                raise ValueError(f"Config value {key}={value!r} must be {words}.")
    if not 0 < config["distill"]["ema_residual"] < 1:
        raise ValueError(f"Config value distill.ema_residual={config['distill']['ema_residual']!r} must be in (0, 1).")


def _check_consistency(config):
    from keras_tract.distiller import check_time_schedule
    from keras_tract.trainer import check_batch_size

    d, c, batch = config["data"], config["distill"], config["data"]["batch_size"]
    try:
        check_batch_size(batch, config["run"]["micro_batches"])
    except ValueError as error:
        raise ValueError(f"Config value data.batch_size={batch}: {error}") from None
    for stage in ("teacher", "distill"):
        if config[stage]["train_len"] < batch:
            raise ValueError(f"Config value {stage}.train_len={config[stage]['train_len']} is shorter than "
                             f"one batch (data.batch_size={batch}).")
    if d["name"] in ("tfds", "folder", "npz") and not d["path"]:
        raise ValueError(f"Config value data.path is needed for data.name={d['name']!r} "
                         "(a TFDS name, an image folder or an .npz file).")
    try:
        check_time_schedule(c["time_schedule"], c["num_steps"])
    except ValueError as error:
        raise ValueError(f"Config value distill.time_schedule={c['time_schedule']!r}: {error}") from None
    steps = config["evaluate"]["steps"]
    if not steps or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 or c["num_steps"] % k
                        for k in steps):
        raise ValueError(f"Config value evaluate.steps={steps!r} must be student step counts that divide "
                         f"distill.num_steps={c['num_steps']}.")
    split = config["evaluate"]["reference_split"]
    if d["name"] == "digits" and split not in (None, "train", "test", "all"):
        raise ValueError(f"Config value evaluate.reference_split={split!r} must be 'train', 'test', 'all' or None "
                         "for data.name='digits'.")


def get(config, key):
    section, name = key.split(".")
    return config[section][name]
