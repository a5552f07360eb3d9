"""Shared fixtures: the real MNIST test digits (when present), CLI runners and fake installed plugins."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from mnist_trainer import cli

ROOT = Path(__file__).resolve().parents[1]
T10K = ROOT.parent / "shared" / "data" / "mnist-t10k"
BIN = Path(sys.executable).parent

requires_t10k = pytest.mark.skipif(not T10K.is_dir(), reason=f"real MNIST test digits not present at {T10K}")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` skip where torch sees no CUDA device (CI has none)."""
    import torch

    if torch.cuda.is_available():
        return
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))


@pytest.fixture
def run_cli():
    """Invoke ``mnist-run`` (or another click command) in-process; returns click's Result."""

    def invoke(*args, command=cli.main):
        return CliRunner().invoke(command, [str(a) for a in args])

    return invoke


def console(*args, env=None, timeout=600):
    """Run an installed console script (``mnist-run``, ``mnist-eval``) as a subprocess."""
    return subprocess.run([str(BIN / args[0]), *map(str, args[1:])], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


@pytest.fixture
def fake_plugin(tmp_path, monkeypatch):
    """Install a plugin for this test only: a module plus dist-info metadata on sys.path.

    Returns the folder, for a subprocess's PYTHONPATH.
    """
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))

    def install(name: str, source: str) -> Path:
        module = f"fake_{name.replace('-', '_')}_{os.getpid()}_{len(list(folder.iterdir()))}"
        (folder / f"{module}.py").write_text(textwrap.dedent(source))
        info = folder / f"{module}-0.0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.0.1\n"
                                       f"Summary: test plugin {name}\n")
        (info / "entry_points.txt").write_text(f"[mnist_trainer]\n{name} = {module}\n")
        return folder

    yield install
    for module in [m for m in sys.modules if m.startswith("fake_")]:
        del sys.modules[module]
