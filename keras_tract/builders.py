"""Pure builders from a config (`keras_tract.config`): schedule, data, the trainers of both stages.

Nothing here touches a workdir; `keras_tract.experiment.Run` calls these and owns the files.
"""

import os
import zipfile

import keras
import numpy as np

from keras_tract import data, schedules
from keras_tract.denoisers import EDMPrecond, build_denoiser, image_shape
from keras_tract.distiller import METHODS, student_from
from keras_tract.networks import get as get_network
from keras_tract.teacher import EDMTrainer, LinearRampUp

# Teachers that ship with the package, by the portable name a config uses.
BUNDLED = {"bundled:digits": data.DIGITS_TEACHER}


def teacher_file(teacher):
    """The `.keras` file of a teacher: a path, a `BUNDLED` name, or a published name (`edm:...`,
    `pd:...`: `keras_tract.convert.PUBLISHED`), downloaded and converted once into the Keras cache."""
    if teacher in BUNDLED:
        return BUNDLED[teacher]
    if isinstance(teacher, str) and teacher.split(":", 1)[0] in ("edm", "pd") and not os.path.exists(teacher):
        from keras_tract import convert

        return convert.published(teacher)
    return teacher


def schedule(config):
    """The teacher's grid, `distill.schedule` with `distill.num_steps` levels."""
    return schedules.get(config["distill"]["schedule"], config["distill"]["num_steps"])


def dataset(config, split="train", start=0, repeat=True, shard=(0, 1)):
    """The config's `tf.data` pipeline, `start` examples into its seeded stream; `repeat=False`: one
    unflipped pass over every example of `split` (folder and .npz sources have no splits);
    `shard=(i, n)`: process `i` of `n` gets its slice of every batch (`keras_tract.data`)."""
    d, seed = config["data"], config["run"]["seed"]
    common = dict(flip=d["flip"] and repeat, seed=seed, start=start, repeat=repeat, shard=shard)
    batch = d["batch_size"]
    if d["name"] == "digits":
        return data.digits(batch, split, labels=d["labels"], **common)
    tfds = dict(data_dir=d["data_dir"], labels=d["labels"], download=d["download"], **common)
    if d["name"] in ("cifar10", "imagenet64"):
        return getattr(data, d["name"])(batch, split, **tfds)
    if d["name"] == "tfds":
        return data.tfds_images(d["path"], batch, split, **tfds)
    return images_at(d["path"], batch, d, **common)


def images_at(path, batch, data_config, **kwargs):
    """The pipeline of an image folder or an .npz/.npy file, read as `data_config` says."""
    if os.path.isdir(path):
        return data.image_folder(path, batch, resolution=data_config["resolution"], **kwargs)
    return data.npz_images(path, batch, key=data_config["key"], **kwargs)


def reference_images(config):
    """`(images, label)`: the held-out images in [-1, 1] that the evaluation's Frechet distance uses,
    each once, and a label saying what they are; `(None, None)` for no distance.

    `evaluate.reference` (a folder or .npz) serves any source; otherwise digits and TFDS sources use
    their split `evaluate.reference_split`. Folder and .npz sources have no split: without
    `evaluate.reference` the distance is to the training images, and the label says so.
    """
    e, d = config["evaluate"], config["data"]
    if e["reference"]:
        stream, label = images_at(e["reference"], e["batch_size"], d, repeat=False), e["reference"]
    elif e["reference_split"] is None:
        return None, None
    elif d["name"] in ("folder", "npz"):
        stream, label = dataset(config, repeat=False), "train (no held-out set: evaluate.reference)"
    else:
        stream, label = dataset(config, split=e["reference_split"], repeat=False), e["reference_split"]
    images = np.concatenate([np.asarray(b[0] if isinstance(b, tuple) else b) for b in stream])
    return images, f"{label}, {len(images)} images"


def load_model_file(path, flag="--teacher"):
    """A `.keras` model, with one-line errors for a missing, corrupt or unreadable file."""
    if not path:
        raise ValueError(f"No model given: pass {flag}=PATH.keras.")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"File not found: {flag}={path}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{flag}={path} is not a readable .keras file (corrupt or truncated).")
    try:
        return keras.saving.load_model(path)
    except Exception as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"Cannot load {flag}={path}: {first}") from None


def teacher_trainer(config, shape, num_classes=None):
    """A compiled `EDMTrainer` of a new `EDMPrecond(teacher.network)` for images of `shape`."""
    t, run, batch = config["teacher"], config["run"], config["data"]["batch_size"]
    keras.utils.set_random_seed(run["seed"])
    policy = run["dtype_policy"]
    network = get_network(t["network"], image_shape=None, dtype=policy, **t["network_kwargs"])
    denoiser = EDMPrecond(network, sigma_data=t["sigma_data"], name="teacher", dtype=policy)
    build_denoiser(denoiser, shape, None if num_classes is None else np.eye(num_classes, dtype="float32")[:1])
    trainer = EDMTrainer(denoiser, t["p_mean"], t["p_std"], t["ema_halflife_kimg"], t["ema_rampup_ratio"],
                         seed=run["seed"], micro_batches=run["micro_batches"])
    trainer.compile(optimizer=keras.optimizers.Adam(LinearRampUp(t["lr"], t["lr_rampup"] // batch), epsilon=1e-8))
    return trainer


def distiller(config, teacher_path, shape):
    """A compiled distiller (`distill.method`) of the `.keras` teacher at `teacher_path` for images of
    `shape`, its student a copy of the teacher, phases splitting `distill.train_len` evenly."""
    c, run, batch = config["distill"], config["run"], config["data"]["batch_size"]
    teacher = load_model_file(teacher_path)
    teacher_shape = image_shape(teacher)
    if teacher_shape is not None and teacher_shape != tuple(shape):
        raise ValueError(f"The teacher {teacher_path} takes images of shape {teacher_shape}, but the data "
                         f"(data.name={config['data']['name']!r}) has images of shape {tuple(shape)}.")
    student = student_from(teacher, run["dtype_policy"])
    steps_per_phase = max(c["train_len"] // batch // (len(c["time_schedule"]) - 1), 1)
    kwargs = dict(teacher_solver=c["teacher_solver"], steps_per_phase=steps_per_phase, loss=c["loss"],
                  reset_inference_ema_on_phase=c["reset_inference_ema_on_phase"], clip_teacher=c["clip_teacher"],
                  seed=run["seed"], micro_batches=run["micro_batches"])
    if c["method"] == "tract":
        kwargs.update(self_teacher_momentum=c["self_teacher_momentum"], ema_residual=c["ema_residual"],
                      inference_momentum=c["inference_momentum"])
    else:
        kwargs.update(inference_momentum=c["inference_momentum"] or 0.9995)
    model = METHODS[c["method"]](teacher, student, schedule(config), tuple(c["time_schedule"]), **kwargs)
    rate = LinearRampUp(c["lr"], c["lr_warmup"] // batch)
    model.compile(optimizer=keras.optimizers.Adam(rate, epsilon=1e-8, global_clipnorm=c["global_clipnorm"]))
    return model
