"""A plugin's mistake ends the run with one line naming the plugin and the hook, exit 2, and a consistent record."""

import json

import pytest

from mnist_trainer import UserError, testing
from tests.test_cli import FAST, assert_user_error

HEAD = """
import torch
from torch import nn
from mnist_trainer import Activation, Initializer, Loss, Metric, Norm, Optimizer, Regularizer, Schedule, hookimpl
"""

# name: (hook body, words the one line must hold, whether the run folder exists by then)
MISTAKES = {
    "hook returns a function": (
        "def mnist_trainer_optimizer(settings):\n    return lambda parameters: torch.optim.SGD(parameters, lr=0.1)",
        ["failed in mnist_trainer_optimizer", "returned a function", "expected mnist_trainer.Optimizer"], False),
    "build returns a function": (
        "def mnist_trainer_optimizer(settings):\n    return Optimizer('odd', lambda parameters, lr: print, lr=0.1)",
        ["failed in mnist_trainer_optimizer (build)", "expected a torch.optim.Optimizer"], True),
    "metric returns a float": (
        "def mnist_trainer_metrics(settings):\n    return [Metric('half', lambda logits, labels: 0.5)]",
        ["failed in mnist_trainer_metrics (compute)", "returned a float (0.5), expected a 0-d tensor"], True),
    "penalty returns a vector": (
        "def mnist_trainer_regularizer(settings):\n"
        "    return Regularizer('vec', penalty=lambda net, logits, labels: logits.sum(1))",
        ["failed in mnist_trainer_regularizer (penalty)",
         "a torch.float32 tensor of shape (50,), expected a 0-d tensor"], True),
    "transform returns images alone": (
        "def mnist_trainer_regularizer(settings):\n"
        "    return Regularizer('half', transform=lambda images, labels, generator: images)",
        ["failed in mnist_trainer_regularizer (transform)", "expected a pair (images, labels)"], True),
    "transform changes the image width": (
        "def mnist_trainer_regularizer(settings):\n"
        "    return Regularizer('crop', transform=lambda images, labels, generator: (images[:, :700], labels))",
        ["failed in mnist_trainer_regularizer (transform)", "returned images a torch.float32 tensor of shape (50, 700)",
         "expected (N, 784) and torch.float32 as given"], True),
    "transform returns labels of another dtype": (
        "def mnist_trainer_regularizer(settings):\n"
        "    return Regularizer('f', transform=lambda images, labels, generator: (images, labels.float()))",
        ["failed in mnist_trainer_regularizer (transform)", "returned labels a torch.float32 tensor of shape (50,)",
         "expected class indices (int64, shape (50,)) or class probabilities (float, shape (50, 10))"], True),
    "transform returns soft labels of another width": (
        "def mnist_trainer_regularizer(settings):\n"
        "    return Regularizer('w', transform=lambda images, labels, generator: (images, torch.ones(len(labels), 3)))",
        ["failed in mnist_trainer_regularizer (transform)",
         "returned labels a torch.float32 tensor of shape (50, 3)"], True),
    "loss returns a vector": (
        "def mnist_trainer_loss(settings):\n    return Loss('each', lambda logits, labels: logits.sum(1))",
        ["failed in mnist_trainer_loss (compute)",
         "a torch.float32 tensor of shape (50,), expected a 0-d tensor"], True),
    "schedule without step": (
        "def mnist_trainer_schedule(settings):\n    return Schedule('none', lambda optimizer, steps, epochs: object())",
        ["failed in mnist_trainer_schedule (build)", "expected a scheduler whose step() takes no arguments"], True),
    "a schedule stepped with a metric": (
        "def mnist_trainer_schedule(settings):\n    return Schedule('plateau', lambda optimizer, steps, epochs: "
        "torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer))",
        ["failed in mnist_trainer_schedule (build)", "ReduceLROnPlateau's needs a metric"], True),
    "an optimizer whose step needs a closure it did not ask for": (
        "def mnist_trainer_optimizer(settings):\n"
        "    return Optimizer('lbfgs', lambda parameters, lr: torch.optim.LBFGS(parameters, lr=lr), lr=1.0)",
        ["failed in mnist_trainer_optimizer (build)", "built a LBFGS, whose step() needs a closure",
         "Optimizer(..., closure=True)"], True),
    "an optimizer ignoring the rate it is given": (
        "def mnist_trainer_optimizer(settings):\n"
        "    return Optimizer('sgd', lambda parameters, lr: torch.optim.SGD(parameters, lr=0.1), lr=0.01)",
        ["failed in mnist_trainer_optimizer (build)",
         "learning rate 0.1, not the 0.01 it was given; build it with lr"], True),
    "a row value that cannot be recorded": (
        "def mnist_trainer_epoch_end(run):\n    run.row['norm'] = run.network[0].linear.weight.norm(dim=1)\n"
        "@hookimpl\ndef mnist_trainer_columns(run):\n    return ('norm',)",
        ["failed in mnist_trainer_epoch_end",
         "'norm' = a torch.float32 tensor of shape (32,) cannot be recorded"], True),
    "a row value under a name not declared": (
        "def mnist_trainer_epoch_end(run):\n    run.row['extra'] = 1.0",
        ["failed in mnist_trainer_epoch_end", "run.row['extra']: 'extra' is not a column of this run",
         "mnist_trainer_columns"], True),
    "a row replaced": (
        "def mnist_trainer_epoch_end(run):\n    run.row = {}",
        ["failed in mnist_trainer_epoch_end", "run.row is the core's"], True),
    "columns as one string": (
        "def mnist_trainer_columns(run):\n    return 'extra'",
        ["failed in mnist_trainer_columns", "returned 'extra'; return a tuple of column names"], True),
    "a report under the record's own stage": (
        "def mnist_trainer_epoch_end(run):\n    run.report('epoch', note='hi')",
        ["failed in mnist_trainer_epoch_end", "run.report('epoch', ...): name the stage"], True),
    "a report of a value that cannot be recorded": (
        "def mnist_trainer_epoch_end(run):\n    run.report('mine', weights=run.network[0].linear.weight)",
        ["failed in mnist_trainer_epoch_end",
         "'weights' = a torch.float32 tensor of shape (32, 784) cannot be recorded"], True),
    "a stop without a reason": (
        "def mnist_trainer_epoch_end(run):\n    run.stop('')",
        ["failed in mnist_trainer_epoch_end", "run.stop(''): say why the run stops"], True),
    "sys.exit in a handler": (
        "def mnist_trainer_epoch_end(run):\n    import sys\n    sys.exit(0)",
        ["failed in mnist_trainer_epoch_end", "SystemExit"], True),
    "keep naming no finished epoch": (
        "def mnist_trainer_run_end(run):\n    run.keep(99, run.weights())",
        ["failed in mnist_trainer_run_end", "run.keep(99, ...) names no finished epoch (finished: [1, 2])"], True),
    "state a checkpoint cannot hold": (
        "def mnist_trainer_state():\n    return Kept\n"
        "class Kept:\n    def state_dict(self):\n        import numpy\n        return {'best': numpy.float64(0.5)}\n"
        "    def load_state_dict(self, state):\n        pass",
        ["failed in state_dict", "its state['best'] holds a numpy.float64, which a checkpoint cannot hold"], True),
    "a generator that is not one": (
        "def mnist_trainer_run_start(run):\n    run.generators['mine'] = 5",
        ["failed in mnist_trainer_run_start", "run.generators['mine'] must be a torch.Generator"], True),
    "state without its two methods": (
        "def mnist_trainer_state():\n    return dict",
        ["failed in mnist_trainer_state", "return a class with state_dict() and load_state_dict(state) methods"], True),
    "evaluation weights of another network": (
        "def mnist_trainer_evaluation_weights(run):\n    return {'weight': torch.zeros(1)}",
        ["failed in mnist_trainer_evaluation_weights", "keys are not run.network.state_dict()'s"], True),
    "activation calculate_gain does not know": (
        "def mnist_trainer_activation(settings):\n    return Activation('GELU', nn.GELU, 'gelu')",
        ["failed in mnist_trainer_activation", "nonlinearity 'gelu'", "Unsupported nonlinearity gelu"], False),
    "exception in a factory": (
        "def mnist_trainer_norm(settings):\n    return Norm('broken', lambda width: 1 / 0)",
        ["failed in mnist_trainer_norm (build)", "ZeroDivisionError: division by zero"], True),
    "exception in apply": (
        "def mnist_trainer_init(settings):\n    def apply(network, context):\n"
        "        raise RuntimeError('no weights today')\n"
        "    return Initializer('broken', apply)",
        ["failed in mnist_trainer_init (apply)", "RuntimeError: no weights today"], True),
    "exception in compute": (
        "def mnist_trainer_metrics(settings):\n"
        "    return [Metric('f1', lambda logits, labels: logits.no_such_method())]",
        ["failed in mnist_trainer_metrics (compute)", "AttributeError"], True),
    "exception in an event handler": (
        "def mnist_trainer_epoch_end(run):\n    raise ValueError('cannot log epoch ' + str(run.epoch))",
        ["failed in mnist_trainer_epoch_end", "ValueError: cannot log epoch 1"], True),
    "a model whose network is the wrong shape": (
        "def mnist_trainer_model(settings):\n    from mnist_trainer import Model\n"
        "    return Model('tiny', lambda slots: nn.Linear(784, 3), uses=('activation', 'hidden'))",
        ["failed in mnist_trainer_model (build)", "maps (2, 784) images to (2, 3), not (2, 10) logits"], True),
    "exception in a stage hook": (
        "def mnist_trainer_regularizer(settings):\n    raise KeyError('p')",
        ["failed in mnist_trainer_regularizer", "KeyError: 'p'"], False),
    "requires returns a string": (
        "def mnist_trainer_requires():\n    return 'relu'",
        ["failed in mnist_trainer_requires", "returned 'relu'; return a tuple of plugin names"], False),
}


@pytest.mark.parametrize("case", list(MISTAKES))
def test_a_plugin_mistake_is_one_line_naming_plugin_and_hook(run_cli, fake_plugin, tmp_path, case):
    body, words, folder_made = MISTAKES[case]
    fake_plugin("faulty", f"{HEAD}\n@hookimpl\n{body}\n")
    out = tmp_path / "run"
    assert_user_error(run_cli("--plugin", "faulty", *FAST, "--out", out), ["plugin 'faulty'", *words])
    if not folder_made:  # refused while composing: before any data, folder or time
        assert not out.exists()
        return
    assert {"config.json", "metrics.jsonl"} <= {p.name for p in out.iterdir()} and not (out / "model.pt").exists()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporaries
    summary = json.loads((out / "config.json").read_text())["summary"]
    assert summary["status"] == "failed" and "plugin 'faulty'" in summary["reason"]


@pytest.mark.parametrize("how", [["--traceback"], "MNIST_TRAINER_DEBUG"])
def test_the_plugin_author_can_see_the_traceback(run_cli, fake_plugin, tmp_path, monkeypatch, how):
    fake_plugin("faulty", f"{HEAD}\n@hookimpl\n{MISTAKES['exception in an event handler'][0]}\n")
    if how == "MNIST_TRAINER_DEBUG":
        monkeypatch.setenv(how, "1")
    result = run_cli("--plugin", "faulty", *FAST, "--out", tmp_path / "run", *(how if isinstance(how, list) else []))
    assert result.exit_code == 2
    assert "Traceback (most recent call last)" in result.stderr and "in mnist_trainer_epoch_end" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: plugin 'faulty' failed in mnist_trainer_epoch_end")


def test_a_misspelled_hook_fails_in_the_test_kit_as_in_a_run(run_cli, fake_plugin):
    class Typo:
        from mnist_trainer import hookimpl

        @hookimpl
        def mnist_trainer_epoch_ends(self, run):
            pass

    with pytest.raises(UserError, match="plugin 'typo' is broken: unknown hook 'mnist_trainer_epoch_ends'"):
        testing.plugin_manager(typo=Typo())
    fake_plugin("typo", "from mnist_trainer import hookimpl\n@hookimpl\ndef mnist_trainer_epoch_ends(run):\n    pass\n")
    assert_user_error(run_cli("--plugin", "typo", *FAST), ["plugin 'typo' is broken", "mnist_trainer_epoch_ends"])


RUN_END_FAILS = """
from mnist_trainer import hookimpl

@hookimpl
def mnist_trainer_run_end(run):
    run.network.state_dict()  # None when the run failed before its network was built
"""


def test_a_run_end_handler_failing_still_leaves_a_finished_record(run_cli, fake_plugin, tmp_path):
    fake_plugin("ender", RUN_END_FAILS.replace("run.network.state_dict()", "raise RuntimeError('cannot upload')"))
    out = tmp_path / "run"
    assert_user_error(run_cli("--plugin", "ender", *FAST, "--out", out),
                      ["plugin 'ender' failed in mnist_trainer_run_end: RuntimeError: cannot upload"])
    summary = json.loads((out / "config.json").read_text())["summary"]
    assert summary["status"] == "failed" and summary["epochs"] == 2
    assert summary["reason"] == "plugin 'ender' failed in mnist_trainer_run_end: RuntimeError: cannot upload"
    assert not (out / "model.pt").exists()


def test_the_first_failure_is_reported_when_a_run_end_handler_fails_after_it(run_cli, fake_plugin, tmp_path):
    fake_plugin("ender", RUN_END_FAILS)
    fake_plugin("faulty", f"{HEAD}\n@hookimpl\n{MISTAKES['exception in apply'][0]}\n")
    out = tmp_path / "run"
    assert_user_error(run_cli("--plugin", "ender", "--plugin", "faulty", *FAST, "--out", out),
                      ["plugin 'faulty' failed in mnist_trainer_init (apply): RuntimeError: no weights today"])
    summary = json.loads((out / "config.json").read_text())["summary"]
    assert (summary["status"] == "failed"
            and summary["reason"].startswith("plugin 'faulty' failed in mnist_trainer_init"))
