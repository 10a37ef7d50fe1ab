"""Image sources as uint8 batches, the FID network with provenance, and pool3 statistics of a source."""

import os

import keras
import numpy as np

from keras_tract.fid.inception import Preprocess, fid_inception
from keras_tract.fid.stats import FeatureStats
from keras_tract.images import sha256

WEIGHTS_ENV = "FID_INCEPTION_WEIGHTS"
KERAS_IMAGENET = "keras-imagenet"


def load_network(weights=None, mode="tf1", resolution=299, image_size=(32, 32)):
    """`(model, provenance)`: the FID Inception with converted weights, or Keras' ImageNet InceptionV3.

    Args:
        weights: a `.weights.h5` from `tools/fid.py convert`; default `$FID_INCEPTION_WEIGHTS`.
            `"keras-imagenet"` selects `keras.applications.InceptionV3` ImageNet weights,
            whose FIDs are not comparable with published numbers.
        mode: `"tf1"` or `"pytorch"` preprocessing.
        resolution: the network's input side (299 for FID).
        image_size: `(H, W)` of the images fed to the model.
    """
    if weights == KERAS_IMAGENET:
        try:
            backbone = keras.applications.InceptionV3(include_top=False, pooling="avg", weights="imagenet")
        except Exception as error:
            raise FileNotFoundError(f"Cannot get keras.applications.InceptionV3 ImageNet weights: "
                                    f"{(str(error).splitlines() or [''])[0]}") from None
        images = keras.Input(tuple(image_size) + (3,))
        model = keras.Model(images, backbone(Preprocess("pytorch", resolution)(images)))
        return model, {"network": "keras.applications.InceptionV3 imagenet (NOT comparable to published FIDs)",
                       "mode": "pytorch", "comparable": False}
    path = weights or os.environ.get(WEIGHTS_ENV)
    if not path:
        raise FileNotFoundError(f"No FID Inception weights: pass --weights=PATH (made by `tools/fid.py convert`) "
                                f"or set {WEIGHTS_ENV}.")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"FID Inception weights not found: --weights={path}")
    model = fid_inception(mode, resolution, tuple(image_size) + (3,))
    model.load_weights(path)
    pool3 = keras.Model(model.inputs, model.outputs[0])
    return pool3, {"network": "inception-2015-12-05 pool3", "mode": mode, "weights": os.path.abspath(path),
                   "weights_sha256": sha256(path), "comparable": resolution == 299}


def features(model, batches, batch_size, total=None, progress=True):
    """Streams uint8 batches `(B, H, W, C)` (C = 1 or 3) through `model` into `FeatureStats`.

    Every image counts (a last partial batch is padded to `batch_size` and trimmed), so one
    compiled shape serves the whole run.
    """
    stats = FeatureStats(model.outputs[0].shape[-1])
    bar = keras.utils.Progbar(total, unit_name="image") if progress else None
    for images in batches:
        images = np.asarray(images)
        if images.shape[-1] == 1:
            images = np.repeat(images, 3, axis=-1)
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            n = len(chunk)
            if n < batch_size:
                chunk = np.concatenate([chunk, np.repeat(chunk[:1], batch_size - n, axis=0)])
            out = keras.ops.convert_to_numpy(model.predict_on_batch(chunk.astype("float32")))
            stats.update(np.asarray(out, np.float64)[:n])
            if bar is not None:
                bar.add(n)
    return stats


# --- Sources: each yields uint8 (B, H, W, C) -------------------------------------------


def _take(batches, num):
    """The first `num` images of a stream of batches."""
    seen = 0
    for images in batches:
        images = images[:num - seen]
        seen += len(images)
        yield images
        if seen == num:
            return


def array_source(path, batch=500):
    """`.npy`, or `.npz` with key `arr_0`, `x`, `images` or a single array: uint8 `(N, H, W, C)`."""
    data = np.load(path, allow_pickle=False)
    if not isinstance(data, np.ndarray):
        keys = [k for k in ("arr_0", "x", "images") if k in data.files] or data.files
        if len(keys) > 1 and keys == data.files:
            raise ValueError(f"{path}: cannot tell which array holds the images among {data.files}.")
        data = data[keys[0]]
    if data.ndim != 4 or data.shape[-1] not in (1, 3) or data.dtype != np.uint8:
        raise ValueError(f"{path}: images must be uint8 (N, H, W, 1 or 3), got {data.dtype} {data.shape}.")
    return len(data), (data[i:i + batch] for i in range(0, len(data), batch))


def folder_source(path, batch=100):
    """Image files under `path` (`data.list_images`), decoded as RGB."""
    import tensorflow as tf

    from keras_tract.data import list_images

    files = list_images(path)

    def batches():
        for i in range(0, len(files), batch):
            yield np.stack([tf.io.decode_image(tf.io.read_file(f), channels=3, expand_animations=False).numpy()
                            for f in files[i:i + batch]])

    return len(files), batches()


def tfds_source(spec, data_dir=None, batch=500):
    """`tfds:NAME:SPLIT` from a prepared local TFDS `data_dir` (never downloads)."""
    import tensorflow_datasets as tfds

    parts = spec.split(":")
    if len(parts) != 3:
        raise ValueError(f"A TFDS input must look like tfds:NAME:SPLIT, got {spec!r}.")
    builder = tfds.builder(parts[1], data_dir=data_dir)
    if not builder.is_prepared():
        raise FileNotFoundError(f"TFDS dataset {parts[1]!r} is not prepared in {builder.data_dir!r}; "
                                "pass --data_dir where it is.")
    ds = builder.as_dataset(split=parts[2], shuffle_files=False).map(lambda item: item["image"]).batch(batch)
    return int(builder.info.splits[parts[2]].num_examples), (np.asarray(b) for b in tfds.as_numpy(ds))


def denoiser_source(path, num, **sampling):
    """Samples of a `.keras` denoiser (`solvers.sample_images(model, num=num, **sampling)`), uint8."""
    from keras_tract.solvers import sample_images

    if not os.path.isfile(path):
        raise FileNotFoundError(f"Model file not found: {path}")
    return num, sample_images(keras.saving.load_model(path), num=num, **sampling)


def open_source(spec, num=None, data_dir=None, **sampling):
    """`(count, uint8 batches)` for a folder, `.npz`/`.npy`, `tfds:NAME:SPLIT` or `.keras` denoiser.

    With `num`, exactly the first `num` images (a ValueError if there are fewer); `.keras`
    sources draw `num` samples with `sampling` (schedule, steps, solver, num_classes, seed).
    """
    if spec.startswith("tfds:"):
        count, batches = tfds_source(spec, data_dir)
    elif spec.endswith(".keras"):
        if num is None:
            raise ValueError("Sampling a .keras model needs --num.")
        count, batches = denoiser_source(spec, num, **sampling)
    elif os.path.isdir(spec):
        count, batches = folder_source(spec)
    elif spec.endswith((".npz", ".npy")) and os.path.isfile(spec):
        count, batches = array_source(spec)
    else:
        raise FileNotFoundError(f"Input not found or not understood: {spec} (a folder, .npz, .npy, "
                                "tfds:NAME:SPLIT or .keras)")
    if num is None:
        return count, batches
    if count < num:
        raise ValueError(f"The input {spec} holds {count} images, fewer than --num={num}.")
    return num, _take(batches, num)
