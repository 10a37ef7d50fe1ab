"""Every docstring example of the package runs as written (doctest)."""

import doctest
import importlib
import pkgutil

import keras
import numpy as np
from helpers.common import once

import keras_tract

MODULES = sorted(m.name for m in pkgutil.walk_packages(keras_tract.__path__, "keras_tract.")
                 if not m.name.startswith("keras_tract.backend."))


@once  # eager PyTorch runs the examples without compiling; once is enough
def test_docstring_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that save write here
    finder = doctest.DocTestFinder()
    failed, attempted = [], 0
    for name in MODULES:
        module = importlib.import_module(name)
        globs = {"keras": keras, "np": np, "keras_tract": keras_tract, **vars(keras_tract), **vars(module)}
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        for test in finder.find(module, name, globs=globs):
            runner.run(test)
        result = runner.summarize(verbose=False)
        attempted += result.attempted
        failed += [name] * result.failed
    assert attempted > 20 and not failed, f"{len(failed)} of {attempted} examples failed, in {sorted(set(failed))}"
