"""examples/plugin-template makes a plugin distribution that installs, registers its entry point, passes its tests."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from mnist_trainer import testing
from tests.conftest import BIN, ROOT, console

TEMPLATE = ROOT / "examples" / "plugin-template"
STAGES = json.loads((TEMPLATE / "cookiecutter.json").read_text())["stage"]


def run(*args, **kwargs):
    result = subprocess.run([str(arg) for arg in args], capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_the_default_plugin_installs_offline_registers_and_passes_its_own_tests(tmp_path):
    run(BIN / "cookiecutter", "--no-input", "--output-dir", tmp_path, TEMPLATE)
    project, site = tmp_path / "my-plugin", tmp_path / "site"
    assert sorted(path.name for path in project.rglob("*.py")) == ["mnist_trainer_my_plugin.py", "test_my_plugin.py"]
    run(sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
        "--target", site, project)
    env = {**os.environ, "PYTHONPATH": str(site)}
    listed = console("mnist-run", "--list-plugins", env={"PYTHONPATH": str(site)})
    assert ["my-plugin", "mnist-trainer-my-plugin"] in [line.split()[:2] for line in listed.stdout.splitlines()]
    tests = run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=project, env=env)
    assert tests.stdout.splitlines()[-1].startswith("3 passed"), tests.stdout


@pytest.mark.parametrize("stage", STAGES)  # each one's own tests take 5-10 s more: only the default's run above
def test_every_stage_makes_a_plugin_that_loads_and_fills_its_stage(stage, tmp_path, monkeypatch):
    from cookiecutter.main import cookiecutter

    name = f"t-{stage}"
    project = cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(tmp_path), extra_context={"name": name,
                           "stage": stage, "description": f"A {stage} plugin"})
    module_name = f"mnist_trainer_t_{stage}"
    spec = importlib.util.spec_from_file_location(module_name, f"{project}/{module_name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, module_name, module)
    spec.loader.exec_module(module)
    lines = dict(testing.compose(testing.plugin_manager(module), testing.settings()).describe())
    line = {"schedule": "optimizer", "metrics": "evaluation", "activation": "model"}.get(stage, stage)
    assert name in lines[line], lines  # "[t-init]" in the init line, "t-events (epoch_end)" in the events line
    assert "testing.check_plugin(plugin)" in (tmp_path / name / "tests" / f"test_t_{stage}.py").read_text()


def test_a_name_that_cannot_be_an_entry_point_is_refused_before_anything_is_written(tmp_path):
    result = subprocess.run([BIN / "cookiecutter", "--no-input", "--output-dir", tmp_path, TEMPLATE, "name=My_Plugin"],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "name 'My_Plugin': use lowercase letters" in result.stdout + result.stderr
    assert list(tmp_path.iterdir()) == []
