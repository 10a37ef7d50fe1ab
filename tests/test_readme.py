"""The README's library example runs as written (with a shorter training budget)."""

import os
import re

import keras
import numpy as np
import pytest
from helpers.common import once

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_example():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    section = text[text.index("## Use\n"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@once  # the example is backend-agnostic; eager PyTorch runs it without compiling
@pytest.mark.slow
def test_readme_use_example_runs(tmp_path, monkeypatch):
    code = readme_example()
    assert code.count("steps_per_epoch=1500") == 1
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(code.replace("steps_per_epoch=1500", "steps_per_epoch=2"), "README.md", "exec"), scope)
    assert int(keras.ops.convert_to_numpy(scope["distiller"].step_count)) == 2
    x0 = np.asarray(scope["x0"])
    assert x0.shape == (16, 8, 8, 1) and np.abs(x0).max() <= 1.0
    assert (tmp_path / "student.keras").is_file()
