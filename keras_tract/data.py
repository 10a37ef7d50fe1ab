"""tf.data input pipelines: float32 images in [-1, 1], optionally with one-hot labels.

Every builder returns a shuffled, repeated, batched (remainder dropped) and
prefetched `tf.data.Dataset` of `x` `(B, H, W, C)` or `(x, labels)`. The stream
is a function of `seed` alone: epoch `e` permutes each block of up to
`shuffle_buffer` examples with a stateless seed `(seed, e, block)`, and each
image's flip is keyed on its position in the stream. So
`start=n` (examples already consumed) resumes the stream exactly, reading at
most one epoch to get there. `shard=(i, n)` gives process `i` of `n` only its
slice of every global batch (examples `i * B / n` to `(i + 1) * B / n - 1` of each,
in batches of `B / n`); images are decoded and converted after that cut, so a
process decodes only its own share. Only `tf.*` ops run inside the pipeline, so it
feeds `fit()` on every Keras backend. TensorFlow is imported when a pipeline is
built, not with this module: its import takes seconds that sampling or loading a
model does not need.
"""

import os
import struct

import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
# The data sources a config names (`data.name`): the builders below, `tfds` by name, folders and .npz files.
SOURCES = ("digits", "cifar10", "imagenet64", "tfds", "folder", "npz")
DIGITS_TEACHER = os.path.join(os.path.dirname(__file__), "assets", "digits_teacher.keras")


def _finish(ds, num_examples, batch_size, num_classes, labels, flip, seed, start=0, repeat=True, shard=(0, 1),
            decode=None, shuffle_buffer=50_000):
    import tensorflow as tf

    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got batch_size={batch_size!r}.")
    index, count = shard
    if not 0 <= index < count or batch_size % count:
        raise ValueError(f"`shard` must be (index, count) with 0 <= index < count and count dividing the batch "
                         f"size {batch_size}, got shard={shard!r}.")
    if not isinstance(start, (int, np.integer)) or start < 0:
        raise ValueError(f"`start` must be a non-negative integer, got start={start!r}.")
    if repeat and num_examples < batch_size:
        raise ValueError(f"`batch_size`={batch_size} exceeds the {num_examples} examples of the dataset.")

    def convert(index, image, label):
        x = tf.cast(image if decode is None else decode(image), tf.float32) / 127.5 - 1.0
        if flip:
            x = tf.image.stateless_random_flip_left_right(x, seed=tf.stack([tf.cast(seed, tf.int64), index]))
        if not labels:
            return x
        return x, tf.one_hot(tf.cast(label, tf.int32), num_classes, dtype=tf.float32)

    block = min(num_examples, shuffle_buffer)

    def epoch(e):  # stateless: each block of `block` examples permuted with seed (seed, e, block index)
        def permute(b, images, labels):
            order = tf.random.experimental.stateless_shuffle(
                tf.range(tf.shape(images)[0]), seed=tf.stack([tf.cast(seed, tf.int64), e * 1_000_003 + b]))
            return tf.gather(images, order), tf.gather(labels, order)

        return ds.batch(block).enumerate().map(lambda b, item: permute(b, *item)).unbatch()

    if repeat:
        ds = tf.data.Dataset.counter(int(start) // num_examples).flat_map(epoch).skip(int(start) % num_examples)
    else:
        ds = epoch(tf.constant(0, tf.int64))
    first = int(start) if repeat else 0
    ds = ds.enumerate(start=first)
    part = batch_size // count
    if count > 1:
        ds = ds.filter(lambda i, item: (i - first) % batch_size // part == index)
    ds = ds.map(lambda i, item: convert(i, *item), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(part, drop_remainder=repeat).prefetch(tf.data.AUTOTUNE)  # one pass keeps every image


def from_arrays(images, batch_size, labels=None, num_classes=None, flip=False, seed=0, start=0, repeat=True,
                shard=(0, 1)):
    """Pipeline over uint8 images `(N, H, W, C)` (or `(N, H, W)`) and optional integer labels `(N,)`.

    `repeat=False` gives one shuffled pass over every image (the last batch may be smaller; no resume)."""
    import tensorflow as tf

    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"`images` must be uint8 of shape (N, H, W, C), got {images.dtype} {images.shape}.")
    if labels is not None:
        labels = np.asarray(labels).astype("int64").reshape(-1)
        if labels.shape[0] != images.shape[0]:
            raise ValueError(f"`labels` must have {images.shape[0]} entries, got labels.shape={labels.shape}.")
        num_classes = num_classes or int(labels.max()) + 1
    ds = tf.data.Dataset.from_tensor_slices((images, np.zeros(len(images), "int64") if labels is None else labels))
    return _finish(ds, len(images), batch_size, num_classes, labels is not None, flip, seed, start, repeat, shard)


def digits(batch_size, split="train", labels=False, flip=False, seed=0, start=0, repeat=True, shard=(0, 1)):
    """scikit-learn's bundled 8x8 handwritten digits as `(B, 8, 8, 1)` images (offline).

    The 1797 images (grey levels 0..16) are scaled to uint8; `split="train"` is
    the first 1437 (80%), `"test"` the remaining 360.
    """
    images, targets = digits_arrays(split)
    return from_arrays(images, batch_size, labels=targets if labels else None, num_classes=10, flip=flip,
                       seed=seed, start=start, repeat=repeat, shard=shard)


def digits_arrays(split="train"):
    """`(images uint8 (N, 8, 8, 1), labels (N,))` of the digits split."""
    from sklearn.datasets import load_digits

    if split not in ("train", "test", "all"):
        raise ValueError(f'`split` must be "train", "test" or "all", got split={split!r}.')
    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype("uint8")[..., None]
    cut = int(0.8 * len(images))
    part = {"train": slice(0, cut), "test": slice(cut, None), "all": slice(None)}[split]
    return images[part], bunch.target[part]


def tfds_images(name, batch_size, split="train", data_dir=None, labels=False, flip=False, seed=0, start=0,
                download=False, image_key="image", label_key="label", repeat=True, shard=(0, 1)):
    """A TFDS image dataset through the common pipeline; clear one-line errors when it is missing.

    A dataset that is not prepared in `data_dir` fails at once unless `download=True` lets TFDS
    download and prepare it (which needs internet; offline, TFDS retries for minutes).
    `repeat=False` gives one pass over every example of `split` (for held-out sets)."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as error:
        raise ValueError(f"Unknown TFDS dataset {name!r}: {error}") from None
    if not builder.is_prepared():
        if not download:
            raise FileNotFoundError(
                f"TFDS dataset {name!r} is not prepared in {builder.data_dir!r}; prepare it there "
                f"(tfds build {name} --data_dir=DIR), point data_dir= (data.data_dir) at it, or allow "
                "download=True (data.download=True) on a machine with internet.")
        try:
            builder.download_and_prepare()
        except Exception as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise FileNotFoundError(
                f"TFDS dataset {name!r} is not prepared in {builder.data_dir!r} and could not be downloaded "
                f"({first}); prepare it on a connected machine and pass data_dir=.") from None
    num_classes = builder.info.features[label_key].num_classes if labels else None
    # The pipeline shuffles (seeded per epoch) the encoded images and decodes them after the shard's cut.
    ds = builder.as_dataset(split=split, shuffle_files=False, decoders={image_key: tfds.decode.SkipDecoding()})
    ds = ds.map(lambda item: (item[image_key], item[label_key] if labels else tf.zeros((), tf.int64)))
    num_examples = int(ds.cardinality())
    if num_examples < 0:
        num_examples = int(ds.reduce(0, lambda n, _: n + 1))
    return _finish(ds, num_examples, batch_size, num_classes, labels, flip, seed, start, repeat, shard,
                   decode=builder.info.features[image_key].decode_example)


def cifar10(batch_size, split="train", data_dir=None, labels=False, flip=True, seed=0, start=0, download=False,
            repeat=True, shard=(0, 1)):
    """CIFAR-10 (TFDS `cifar10`), `(B, 32, 32, 3)`, random horizontal flips as EDM and TRACT train."""
    return tfds_images("cifar10", batch_size, split, data_dir, labels, flip, seed, start, download, repeat=repeat,
                       shard=shard)


def imagenet64(batch_size, split="train", data_dir=None, labels=True, flip=False, seed=0, start=0, download=False,
               repeat=True, shard=(0, 1)):
    """ImageNet 64x64 (TFDS `imagenet_resized/64x64`, needs a manual download), with 1000-class labels."""
    return tfds_images("imagenet_resized/64x64", batch_size, split, data_dir, labels, flip, seed, start, download,
                       repeat=repeat, shard=shard)


def list_images(path):
    """Image files under the folder `path`, recursively, sorted; errors when there are none."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"Image folder not found: path={path!r}.")
    files = sorted(os.path.join(root, f) for root, _, names in os.walk(path) for f in names
                   if f.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
        raise ValueError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) found under path={path!r}.")
    return files


def image_size(file):
    """`(height, width)` from the header of a PNG, GIF, BMP or JPEG file, without decoding it;
    ValueError naming the file when the header cannot be read."""
    with open(file, "rb") as f:
        head = f.read(1 << 16)
    try:
        if head.startswith(b"\x89PNG\r\n\x1a\n"):
            width, height = struct.unpack(">II", head[16:24])
        elif head[:6] in (b"GIF87a", b"GIF89a"):
            width, height = struct.unpack("<HH", head[6:10])
        elif head.startswith(b"BM"):
            width, height = struct.unpack("<ii", head[18:26])
            height = abs(height)
        elif head.startswith(b"\xff\xd8"):
            height, width = _jpeg_size(head)
        else:
            raise ValueError("unknown format")
    except (struct.error, ValueError) as error:
        raise ValueError(f"Cannot read the image {file}: not a readable PNG, JPEG, GIF or BMP ({error}).") from None
    return int(height), int(width)


def _jpeg_size(head):
    """`(height, width)` of the first start-of-frame segment of JPEG bytes."""
    i = 2
    while i + 9 < len(head):
        if head[i] != 0xFF:
            raise ValueError("corrupt JPEG segments")
        marker, length = head[i + 1], struct.unpack(">H", head[i + 2:i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return struct.unpack(">HH", head[i + 5:i + 9])
        i += 2 + length
    raise ValueError("no JPEG frame header in the first 64 KiB")


def image_folder(path, batch_size, resolution=None, channels=3, flip=False, seed=0, start=0, repeat=True,
                 shard=(0, 1)):
    """All images under `path` (recursively), decoded with `channels` channels.

    Images must share one size, or `resolution` resizes them (area) to a square. Every file's
    header is read first, so an unreadable file or a folder of mixed sizes fails at once, in one
    line that names a file. `repeat=False` gives one pass over every image.
    """
    import tensorflow as tf

    files = list_images(path)
    sizes = {}
    for file in files:
        sizes.setdefault(image_size(file), file)
    if len(sizes) > 1 and not resolution:
        (a, file_a), (b, file_b) = list(sizes.items())[:2]
        raise ValueError(f"Images under {path} differ in size ({file_a} is {a[1]}x{a[0]} pixels, {file_b} "
                         f"{b[1]}x{b[0]}); pass resolution= (data.resolution in a config) to resize them to one "
                         "square size.")
    size = (resolution, resolution) if resolution else next(iter(sizes))

    def load(file):  # after the shuffle and the shard's cut: the stream holds file names
        image = tf.io.decode_image(tf.io.read_file(file), channels=channels, expand_animations=False)
        if resolution:
            image = tf.cast(tf.image.resize(image, size, method="area", antialias=True) + 0.5, tf.uint8)
        tf.debugging.assert_equal(tf.shape(image)[:2], size,
                                  message=f"images under {path} differ in size; pass resolution= "
                                          "(data.resolution in a config)")
        image.set_shape(size + (channels,))
        return image

    ds = tf.data.Dataset.from_tensor_slices((files, np.zeros(len(files), "int64")))
    return _finish(ds, len(files), batch_size, None, False, flip, seed, start, repeat, shard, decode=load)


def npz_images(path, batch_size, key=None, labels_key=None, flip=False, seed=0, start=0, repeat=True, shard=(0, 1)):
    """Images from an `.npz` (or `.npy`) of uint8 `(N, H, W, C)`; `key` defaults to the first array.

    `repeat=False` gives one pass over every image."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Image file not found: path={path!r}.")

    def fail(reason):
        return ValueError(f"Cannot read images from {path!r}: {reason}.")

    try:
        data = np.load(path, allow_pickle=False)
        label_values = None
        if not isinstance(data, np.ndarray):
            files = data.files
            key = key or (files[0] if files else None)
            if key is not None and key in files:
                label_values = data[labels_key] if labels_key else None
                data = data[key]
    except Exception as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise fail(f"not a readable .npz/.npy of uint8 images ({reason})") from None
    if not isinstance(data, np.ndarray):
        raise fail(f"key={key!r} is not among its arrays {files}" if files else "it holds no arrays")
    if data.dtype != np.uint8 or data.ndim not in (3, 4):
        where = path if key is None else f"{path}[{key!r}]"
        raise ValueError(f"{where} must hold uint8 images (N, H, W, C), got {data.dtype} of shape {data.shape}; "
                         "name the images' array with key= (data.key).")
    return from_arrays(data, batch_size, labels=label_values, flip=flip, seed=seed, start=start, repeat=repeat,
                       shard=shard)
