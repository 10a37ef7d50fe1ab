import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers.common import once

from keras_tract.fid.convert import assign_state_dict
from keras_tract.fid.features import load_network
from keras_tract.fid.inception import avg_pool_excluding_padding, fid_inception, resize_matrix

HERE = os.path.dirname(__file__)
ROOT = os.path.dirname(HERE)


def test_resize_matrices_match_tensorflow():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (2, 32, 24, 3)).astype("float32")
    for mode, reference in (
            ("tf1", tf.compat.v1.image.resize_bilinear(x, (75, 61), align_corners=False, half_pixel_centers=False)),
            ("pytorch", tf.image.resize(x, (75, 61), method="bilinear", antialias=False))):
        got = np.einsum("oh,pw,bhwc->bopc", resize_matrix(32, 75, mode), resize_matrix(24, 61, mode), x)
        np.testing.assert_allclose(got, reference.numpy(), atol=2e-3, err_msg=mode)
    # 2 -> 4 by hand: tf1 samples 0, 0.5, 1, 1.5 (clamped); half-pixel samples 0 (clamped), 0.25, 0.75, 1.
    np.testing.assert_allclose(resize_matrix(2, 4, "tf1"), [[1, 0], [0.5, 0.5], [0, 1], [0, 1]])
    np.testing.assert_allclose(resize_matrix(2, 4, "pytorch"), [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])
    np.testing.assert_allclose(resize_matrix(299, 299, "tf1"), np.eye(299))


def test_average_pool_excludes_padding():
    x = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
    got = keras.ops.convert_to_numpy(avg_pool_excluding_padding(keras.ops.convert_to_tensor(x)))[0, :, :, 0]
    img = x[0, :, :, 0]
    expected = [[img[max(i - 1, 0):i + 2, max(j - 1, 0):j + 2].mean() for j in range(4)] for i in range(4)]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_structure_and_names():
    model = fid_inception(resolution=75, input_shape=(32, 32, 3))
    assert [tuple(o.shape) for o in model.outputs] == [(None, 2048), (None, 1008)]
    assert sum(int(np.prod(w.shape)) for w in model.weights if not w.path.startswith("fc/")) == 21_820_000
    assert not any("." in layer.name or "/" in layer.name for layer in model.layers)
    assert not model.trainable_weights
    assert not any(np.any(keras.ops.convert_to_numpy(w)) for w in model.weights if w.path.endswith("kernel"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("fid") / "reference.npz")
    result = subprocess.run([sys.executable, os.path.join(HERE, "helpers", "fid_reference.py"), path, "75"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return dict(np.load(path))


def test_random_weights_match_an_independent_torch_reference(reference):
    """pytorch-fid preprocessing (half-pixel resize, x / 127.5 - 1), all 94 conv+BN units, both pool quirks."""
    state = {k[3:]: v for k, v in reference.items() if k.startswith("sd:")}
    model = fid_inception(mode="pytorch", resolution=75, input_shape=(32, 32, 3))
    report = assign_state_dict(model, state)
    assert report["tensors"] == len(state) == 94 * 6 + 2
    pool3 = keras.ops.convert_to_numpy(model(reference["images"].astype("float32"))[0])
    expected = reference["pool3"]
    error = np.abs(pool3 - expected).max() / np.abs(expected).max()
    print(f"pool3 max error relative to the largest feature: {error:.2e}")
    assert error < 1e-3
    with pytest.raises(ValueError, match="lacks 2 weights"):
        assign_state_dict(model, {k: v for k, v in state.items() if not k.startswith("fc.")})
    with pytest.raises(ValueError, match="Unexpected tensor 'extra.weight'"):
        assign_state_dict(model, {**state, "extra.weight": np.zeros(3)})


@once
def test_cli_stats_calc_compare_agree(tmp_path, reference, monkeypatch):
    model = fid_inception(resolution=75, input_shape=(16, 16, 3))
    assign_state_dict(model, {k[3:]: v for k, v in reference.items() if k.startswith("sd:")})
    weights = str(tmp_path / "random.weights.h5")
    model.save_weights(weights)
    rng = np.random.default_rng(0)
    folder = tmp_path / "ref"
    folder.mkdir()
    for i in range(12):
        tf.io.write_file(str(folder / f"{i}.png"), tf.io.encode_png(rng.integers(0, 256, (16, 16, 3), np.uint8)))
    np.savez(tmp_path / "gen.npz", arr_0=np.clip(rng.normal(100, 60, (10, 16, 16, 3)), 0, 255).astype(np.uint8))

    def fid(*args, backend="torch"):  # PyTorch runs the network without a compile wait; JAX starts soonest
        return subprocess.run([sys.executable, os.path.join(ROOT, "tools", "fid.py"), *args, f"--weights={weights}",
                               "--resolution=75", "--batch=4"], capture_output=True, text=True,
                              env={**os.environ, "KERAS_BACKEND": backend})

    ref = fid("stats", str(folder), f"--out={tmp_path / 'ref.npz'}")
    assert ref.returncode == 0, ref.stderr[-2000:]
    calc = fid("calc", str(tmp_path / "gen.npz"), f"--ref={tmp_path / 'ref.npz'}", "--num=10",
               f"--json={tmp_path / 'calc.json'}", f"--out={tmp_path / 'gen_stats.npz'}")
    assert calc.returncode == 0, calc.stderr[-2000:]
    compare = fid("compare", str(tmp_path / "gen_stats.npz"), str(tmp_path / "ref.npz"), backend="jax")
    assert compare.returncode == 0, compare.stderr[-2000:]
    value = float(calc.stdout.split("FID ")[1].split()[0])
    assert value > 0 and float(compare.stdout.split("FID ")[1].split()[0]) == value
    with open(tmp_path / "calc.json") as f:
        result = json.load(f)
    assert result["n_gen"] == 10 and result["n_ref"] == 12 and result["mode"] == "tf1"
    assert len(result["weights_sha256"]) == 64 and result["diagnostics"]["method"] == "eigh"
    assert f"{result['fid']:.4f}" == f"{value:.4f}"
    too_few = fid("calc", str(tmp_path / "gen.npz"), f"--ref={tmp_path / 'ref.npz'}", backend="jax")  # --num=50000
    assert too_few.returncode == 1
    assert too_few.stderr.strip().splitlines()[-1].endswith("holds 10 images, fewer than --num=50000.")
    monkeypatch.delenv("FID_INCEPTION_WEIGHTS", raising=False)
    with pytest.raises(FileNotFoundError, match="No FID Inception weights: pass --weights=PATH"):
        load_network(None, "tf1", 75, (16, 16))


def test_convert_refuses_what_is_not_a_state_dict(tmp_path):
    from keras_tract.fid.convert import load_state_dict

    (tmp_path / "notes.txt").write_text("not a checkpoint")
    np.save(tmp_path / "array.npy", np.zeros(3))
    for name in ("notes.txt", "array.npy"):
        with pytest.raises(ValueError, match=f"{name} is not a PyTorch state dict of tensors") as error:
            load_state_dict(str(tmp_path / name))
        assert "weights_only=False" not in str(error.value)  # no advice to run a file's code
