"""The recipes in examples/ run as documented (on tiny data here)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import BIN, ROOT

TINY = ["--dataset", "synthetic:300", "--epochs", "1", "--batch-size", "50", "--hidden", "16", "--device", "cpu"]


def test_sigmoid_vs_relu_prints_one_line_per_activation():
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run([ROOT / "examples" / "sigmoid-vs-relu.sh", *TINY], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [line.split()[0] for line in lines[:2]] == ["sigmoid", "relu"]
    accuracy = float(lines[1].split()[3])
    assert 0.0 <= accuracy <= 1.0 and Path(lines[2].split()[-1], "relu", "model.pt").is_file()


def test_lab9_prints_every_configuration():
    out = subprocess.run([sys.executable, ROOT / "examples" / "lab9.py", *TINY, "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [row["configuration"] for row in rows][:3] == ["relu + normal-init", "relu + xavier", "relu + he"]
    assert len(rows) == 7 and all(0 <= row["test_accuracy"] <= 1 and row["dataset"] == "synthetic:300" for row in rows)
