"""Every docstring example of the package runs as written (doctest)."""

import doctest
import importlib
import pkgutil

import keras
import numpy as np
import pytest
from helpers.common import once

import keras_tract

MODULES = sorted(m.name for m in pkgutil.walk_packages(keras_tract.__path__, "keras_tract.")
                 if not m.name.startswith("keras_tract.backend."))


@once  # eager PyTorch runs the examples without compiling; once is enough
@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that save write here
    module = importlib.import_module(name)
    globs = {"keras": keras, "np": np, "keras_tract": keras_tract, **vars(keras_tract), **vars(module)}
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name, globs=globs):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
