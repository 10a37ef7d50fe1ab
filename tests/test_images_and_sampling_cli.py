import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from helpers.common import once

from keras_tract.images import encode_png, grid, save_png, to_uint8

ROOT = os.path.dirname(os.path.dirname(__file__))
TEACHER = os.path.join(ROOT, "keras_tract", "assets", "digits_teacher.keras")


def test_uint8_quantization_and_grid(tmp_path):
    x = np.array([-1.5, -1.0, -0.5, 0.0, 0.999, 1.0, 2.0])
    np.testing.assert_array_equal(to_uint8(x), [0, 0, 64, 128, 255, 255, 255])
    images = np.arange(5 * 2 * 3 * 1, dtype=np.uint8).reshape(5, 2, 3, 1)
    g = grid(images, columns=2)
    assert g.shape == (6, 6, 1)
    np.testing.assert_array_equal(g[2:4, 3:6], images[3])
    np.testing.assert_array_equal(g[4:6, 3:6], 0)
    path = str(tmp_path / "g.png")
    save_png(path, g)
    np.testing.assert_array_equal(tf.io.decode_png(tf.io.read_file(path)).numpy(), g)
    assert sorted(os.listdir(tmp_path)) == ["g.png"]  # no temporary file left behind


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_png_decodes_to_the_same_pixels(channels):
    image = np.random.default_rng(channels).integers(0, 256, (5, 7, channels), dtype=np.uint8)
    np.testing.assert_array_equal(tf.io.decode_png(encode_png(image)).numpy(), image)
    for bad in (image.astype("float32"), image[..., 0], np.zeros((2, 2, 5), np.uint8)):
        with pytest.raises(ValueError, match="`image` must be uint8 \\(H, W, C\\)"):
            encode_png(bad)


@once
def test_sample_cli_writes_npz_and_png(tmp_path):
    def run(*args, backend="torch"):  # PyTorch samples without a compile wait; JAX starts soonest
        return subprocess.run([sys.executable, os.path.join(ROOT, "tools", "sample.py"), f"--model={TEACHER}",
                               "--num=6", "--steps=2", *args], capture_output=True, text=True,
                              env={**os.environ, "KERAS_BACKEND": backend})

    result = run(f"--out={tmp_path / 's.npz'}")
    assert result.returncode == 0, result.stderr[-2000:]
    images = np.load(tmp_path / "s.npz")["x"]
    assert images.shape == (6, 8, 8, 1) and images.dtype == np.uint8 and images.std() > 10
    assert run(f"--out={tmp_path / 's.png'}").returncode == 0
    assert tf.io.decode_png(tf.io.read_file(str(tmp_path / "s.png"))).shape == (16, 24, 1)  # 2 rows of 3
    bad = run(f"--out={tmp_path / 's.jpg'}", backend="jax")
    assert bad.returncode != 0 and "--out must end in .png or .npz" in bad.stderr
    # Errors in one line, before any weights load.
    (tmp_path / "corrupt.keras").write_bytes(b"PK not really")
    for args, message in (([f"--out={tmp_path / 'x.png'}", "--steps=3"], "`steps` must divide num_steps=40"),
                          ([f"--out={tmp_path / 'x.png'}", f"--model={tmp_path / 'corrupt.keras'}"],
                           "is not a readable .keras file (corrupt or truncated)")):
        bad = run(*args, backend="jax")
        lines = bad.stderr.strip().splitlines()
        assert bad.returncode == 1 and lines[-1].startswith("sample.py: error: ") and message in lines[-1], lines[-3:]


def test_saved_sampling_settings_are_defaults_and_contradictions_fail():
    from keras import saving

    from keras_tract import CosineSchedule, KarrasSchedule
    from keras_tract.solvers import resolve_sampling

    record = {"schedule": saving.serialize_keras_object(CosineSchedule(64)), "solver": "ddim", "steps": 2}
    schedule, solver, steps = resolve_sampling(record)
    assert repr(schedule) == repr(CosineSchedule(64)) and (solver, steps) == ("ddim", 2)
    assert resolve_sampling(record, steps=4)[2] == 4
    assert resolve_sampling(record, schedule="cosine", num_steps=64)[0].num_steps == 64
    for kwargs, message in (({"num_steps": 40}, "trained to sample on CosineSchedule"),
                            ({"schedule": "karras"}, "trained to sample on CosineSchedule"),
                            ({"solver": "heun"}, "samples with solver='ddim', not 'heun'"),
                            ({"steps": 3}, "`steps` must divide num_steps=64")):
        with pytest.raises(ValueError, match=message):
            resolve_sampling(record, **kwargs)
    schedule, solver, steps = resolve_sampling({})  # no record: Karras 40, DDIM, every level
    assert repr(schedule) == repr(KarrasSchedule(40)) and (solver, steps) == ("ddim", None)


def test_comparison_panels_carry_their_labels():
    from keras_tract.evaluation import comparison_image
    from keras_tract.images import text_image

    one = text_image("1", scale=1, channels=1)[..., 0]  # the glyph "1" and its spacing column
    np.testing.assert_array_equal(one == 0, [[0, 1, 0, 0], [1, 1, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0], [1, 1, 1, 0]])
    assert text_image("Student, 1 step", scale=2).shape == (10, 15 * 8, 3)
    with pytest.raises(ValueError, match="lacks: '%'"):
        text_image("100%")
    images = {"a": np.full((4, 8, 8, 1), 128, np.uint8), "b": np.full((4, 8, 8, 1), 128, np.uint8)}
    picture = comparison_image(images, ["teacher", "a much longer student label"])
    label = text_image("teacher", channels=1)
    np.testing.assert_array_equal(picture[4:14, :label.shape[1]], label)  # above the first panel, after the gap
    assert picture.shape[1] == 80 + 4 + 27 * 8  # a panel of 2 x 2 cells of 40 pixels; one as wide as its label
