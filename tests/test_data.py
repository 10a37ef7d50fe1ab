import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_tract import data


def batches(ds, n=2):
    return [tuple(np.asarray(t) for t in b) if isinstance(b, tuple) else np.asarray(b) for b in ds.take(n)]


def test_mock_cifar10_pipeline():
    with tfds.testing.mock_data(num_examples=24):
        x, y = batches(data.cifar10(8, labels=True, download=True), 1)[0]  # the mock prepares nothing
    assert x.dtype == np.float32 and x.shape == (8, 32, 32, 3)
    assert x.min() >= -1.0 and x.max() <= 1.0 and x.std() > 0.1
    assert y.shape == (8, 10) and np.all(y.sum(1) == 1)


def test_digits_scaling_split_and_determinism():
    images, labels = data.digits_arrays("train")
    test_images, _ = data.digits_arrays("test")
    assert images.shape == (1437, 8, 8, 1) and test_images.shape == (360, 8, 8, 1) and images.max() == 255
    first = batches(data.digits(32, flip=True, seed=3), 3)
    again = batches(data.digits(32, flip=True, seed=3), 3)
    other = batches(data.digits(32, flip=True, seed=4), 3)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])
    # Every batch holds training images (possibly mirrored), scaled to [-1, 1].
    pool = images.astype(np.float32) / 127.5 - 1
    pool = np.concatenate([pool, pool[:, :, ::-1]]).reshape(len(pool) * 2, -1)
    for row in first[0].reshape(32, -1):
        assert np.min(np.abs(pool - row).max(axis=1)) < 1e-6


def test_stream_resumes_exactly_and_visits_every_image_each_epoch():
    images = (np.arange(30, dtype=np.uint8) * 8)[:, None, None, None] * np.ones((1, 2, 2, 1), np.uint8)
    stream = np.concatenate(batches(data.from_arrays(images, 5, flip=True, seed=2), 12))  # 2 epochs
    for epoch in (stream[:30], stream[30:]):
        values = np.sort(np.round((epoch[:, 0, 0, 0] + 1) * 127.5 / 8).astype(int))
        np.testing.assert_array_equal(values, np.arange(30))
    assert not np.array_equal(stream[:30], stream[30:])  # each epoch has its own order
    for start in (10, 35):  # inside the first epoch, inside the second
        resumed = np.concatenate(batches(data.from_arrays(images, 5, flip=True, seed=2, start=start), 3))
        np.testing.assert_array_equal(resumed, stream[start:start + 15])


def test_npz_and_folder_inputs(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, 6, 6, 3), dtype=np.uint8)
    np.savez(tmp_path / "imgs.npz", x=images, y=np.arange(10) % 3)
    x, y = batches(data.npz_images(str(tmp_path / "imgs.npz"), 4, labels_key="y"), 1)[0]
    assert x.shape == (4, 6, 6, 3) and y.shape == (4, 3)
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    for i, image in enumerate(images):
        tf.io.write_file(str(folder / ("sub" if i % 2 else "") / f"{i}.png"), tf.io.encode_png(image))
    x = batches(data.image_folder(str(folder), 5, seed=1), 2)
    pool = images.astype(np.float32) / 127.5 - 1
    for row in np.concatenate(x):
        assert np.min(np.abs(pool - row).reshape(10, -1).max(axis=1)) < 1e-6
    resized = batches(data.image_folder(str(folder), 5, resolution=4), 1)[0]
    assert resized.shape == (5, 4, 4, 3)


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing_dir"):
        data.image_folder(str(tmp_path / "missing_dir"), 4)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No images"):
        data.image_folder(str(tmp_path / "empty"), 4)
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        data.npz_images(str(tmp_path / "nothing.npz"), 4)
    np.savez(tmp_path / "flat.npz", x=np.zeros((5, 7), np.uint8))
    with pytest.raises(ValueError, match=r"\(N, H, W, C\), got uint8 of shape \(5, 7\)"):
        data.npz_images(str(tmp_path / "flat.npz"), 4)
    np.savez(tmp_path / "floats.npz", x=np.zeros((5, 4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="must hold uint8 images"):
        data.npz_images(str(tmp_path / "floats.npz"), 4)
    np.savez(tmp_path / "empty.npz")
    with pytest.raises(ValueError, match=r"Cannot read images from .*empty.npz.*: it holds no arrays"):
        data.npz_images(str(tmp_path / "empty.npz"), 4)
    (tmp_path / "garbage.npz").write_bytes(b"not an npz at all" * 10)
    with pytest.raises(ValueError, match=r"Cannot read images from .*garbage.npz.*: not a readable .npz/.npy"):
        data.npz_images(str(tmp_path / "garbage.npz"), 4)
    np.savez(tmp_path / "labels_first.npz", labels=np.arange(5), x=np.zeros((5, 4, 4, 1), np.uint8))
    with pytest.raises(ValueError, match=r"labels_first.npz\['labels'\] must hold uint8 images .*key="):
        data.npz_images(str(tmp_path / "labels_first.npz"), 4)
    assert batches(data.npz_images(str(tmp_path / "labels_first.npz"), 5, key="x"), 1)[0].shape == (5, 4, 4, 1)
    with pytest.raises(ValueError, match=r"key='y' is not among its arrays \['labels', 'x'\]"):
        data.npz_images(str(tmp_path / "labels_first.npz"), 4, key="y")
    with pytest.raises(ValueError, match="batch_size=0"):
        data.digits(0)
    with pytest.raises(FileNotFoundError, match="'cifar10' is not prepared in .*nodata.*data.download=True"):
        data.cifar10(8, data_dir=str(tmp_path / "nodata"))  # offline by default: no minutes of retries


def test_image_folders_are_checked_from_their_headers(tmp_path):
    rng = np.random.default_rng(5)
    for name, size, encode in (("a.png", (6, 5), tf.io.encode_png), ("b.jpg", (7, 9), tf.io.encode_jpeg)):
        image = rng.integers(0, 255, size + (3,), dtype=np.uint8)
        tf.io.write_file(str(tmp_path / name), encode(image))
        assert data.image_size(str(tmp_path / name)) == size  # (height, width) read without decoding
    with pytest.raises(ValueError, match=r"differ in size \(.*a.png is 5x6 pixels, .*b.jpg 9x7\); pass "
                                         r"resolution= \(data.resolution in a config\)"):
        data.image_folder(str(tmp_path), 2)
    assert batches(data.image_folder(str(tmp_path), 2, resolution=4), 1)[0].shape == (2, 4, 4, 3)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00")
    with pytest.raises(ValueError, match=r"Cannot read the image .*broken.png: not a readable PNG, JPEG"):
        data.image_folder(str(tmp_path), 2, resolution=4)


def test_shards_split_every_global_batch_between_processes(tmp_path):
    """`shard=(i, n)`: process i's batches are rows i * B / n .. (i + 1) * B / n - 1 of every global batch,
    also when resumed, from a folder (decoded after the cut), an array source and mock TFDS."""
    images = np.random.default_rng(0).integers(0, 256, (12, 4, 4, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        tf.io.write_file(str(tmp_path / f"{i:02d}.png"), tf.io.encode_png(image))
    with tfds.testing.mock_data(num_examples=24):
        sources = {"folder": lambda **kw: data.image_folder(str(tmp_path), 6, flip=True, seed=1, **kw),
                   "arrays": lambda **kw: data.from_arrays(images, 6, labels=np.arange(12) % 5, seed=2, **kw),
                   "tfds": lambda **kw: data.cifar10(6, labels=True, download=True, **kw)}
        for name, source in sources.items():
            for start in (0, 18):
                whole = batches(source(start=start), 3)
                parts = [batches(source(start=start, shard=(i, 3)), 3) for i in range(3)]
                for b, batch in enumerate(whole):
                    for t, tensor in enumerate(batch if isinstance(batch, tuple) else (batch,)):
                        pieces = [p[b][t] if isinstance(p[b], tuple) else p[b] for p in parts]
                        np.testing.assert_array_equal(np.concatenate(pieces), tensor, err_msg=f"{name} {start}")
    with pytest.raises(ValueError, match=r"`shard` must be .* batch size 6, got shard=\(0, 4\)"):
        data.from_arrays(images, 6, shard=(0, 4))
