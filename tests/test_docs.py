"""docs/plugin_hooks.md documents exactly the hooks in hookspecs.py, with their signatures."""

import inspect
import re
from pathlib import Path

from mnist_trainer import hookspecs

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugin_hooks.md"


def specs():
    return {name: f"{name}({', '.join(inspect.signature(function).parameters)})"
            for name, function in vars(hookspecs).items() if name.startswith("mnist_trainer_")}


def test_every_hook_has_a_section_with_its_exact_signature():
    headings = re.findall(r"^## (mnist_trainer_\w+\(.*\))$", DOC.read_text(), flags=re.M)
    assert sorted(headings) == sorted(specs().values())


def test_every_hookspec_has_a_docstring_saying_whether_it_is_exclusive():
    for name, function in vars(hookspecs).items():
        if name.startswith("mnist_trainer_") and name not in ("mnist_trainer_options", "mnist_trainer_requires"):
            assert "exclusive" in function.__doc__.lower(), name
