import subprocess
import sys

import pytest
import torch

from mnist_trainer import Activation, UserError, hookimpl, registry, testing
from mnist_trainer.pipeline import compose
from mnist_trainer.settings import Settings

CLAIMS_ACTIVATION = """
from torch import nn
from mnist_trainer import Activation, hookimpl

@hookimpl
def mnist_trainer_activation(settings):
    return Activation("Tanh", nn.Tanh, "tanh")
"""


def test_listing_reads_metadata_without_importing_plugins_or_torch():
    code = (
        "import sys; from mnist_trainer import registry; plugins = registry.installed_plugins(); "
        "print(plugins['relu'].distribution, 'torch' in sys.modules, 'mnist_trainer_relu' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["mnist-trainer-relu", "False", "False"]


def test_load_imports_only_the_named_plugin(fake_plugin):
    fake_plugin("never", "raise RuntimeError('must not be imported')")
    manager = registry.make_manager()
    assert registry.load(manager, ["relu"]) == {"relu": "selected"}
    assert manager.has_plugin("relu") and not manager.has_plugin("never")


def test_unknown_plugin_lists_installed_and_suggests(fake_plugin):
    with pytest.raises(UserError) as caught:
        registry.load(registry.make_manager(), ["rleu"])
    assert caught.value.message.startswith("unknown plugin 'rleu'; did you mean 'relu'? installed plugins: ")
    assert "relu" in caught.value.message.split("installed plugins: ")[1]


def test_import_failure_names_plugin_distribution_and_exception(fake_plugin):
    fake_plugin("broken", "raise ImportError('needs libfoo')")
    with pytest.raises(UserError) as caught:
        registry.load(registry.make_manager(), ["broken"])
    message = caught.value.message
    assert "plugin 'broken' (fake_broken" in message and "ImportError: needs libfoo" in message
    assert "broken" in registry.installed_plugins()  # listing still works


def test_requirements_load_transitively_and_cycles_are_refused(fake_plugin):
    fake_plugin("top", "from mnist_trainer import hookimpl\n"
                       "@hookimpl\ndef mnist_trainer_requires():\n    return ('middle',)\n")
    fake_plugin("middle", "from mnist_trainer import hookimpl\n"
                          "@hookimpl\ndef mnist_trainer_requires():\n    return ('relu',)\n")
    assert registry.load(registry.make_manager(), ["top"]) == {
        "top": "selected", "middle": "required by top", "relu": "required by middle"}
    fake_plugin("ping", "from mnist_trainer import hookimpl\n"
                        "@hookimpl\ndef mnist_trainer_requires():\n    return ('pong',)\n")
    fake_plugin("pong", "from mnist_trainer import hookimpl\n"
                        "@hookimpl\ndef mnist_trainer_requires():\n    return ('ping',)\n")
    with pytest.raises(UserError, match="circular plugin requirement: ping -> pong -> ping"):
        registry.load(registry.make_manager(), ["ping"])
    fake_plugin("needy", "from mnist_trainer import hookimpl\n"
                         "@hookimpl\ndef mnist_trainer_requires():\n    return ('absent',)\n")
    with pytest.raises(UserError, match=r"plugin 'absent' \(required by needy\) is not installed"):
        registry.load(registry.make_manager(), ["needy"])


def test_exclusive_slot_conflict_names_both_plugins(fake_plugin):
    fake_plugin("tanh", CLAIMS_ACTIVATION)
    manager = registry.make_manager()
    registry.load(manager, ["tanh", "relu"])
    with pytest.raises(UserError, match="plugins 'relu' and 'tanh' both fill the activation slot"):
        compose(manager, Settings())


def test_core_default_answers_only_when_no_selected_plugin_does():
    class Declines:
        @hookimpl
        def mnist_trainer_activation(self, settings):
            return None

    assert compose(testing.plugin_manager(Declines()), Settings()).activation[0] == "core"

    class Claims:
        @hookimpl
        def mnist_trainer_activation(self, settings):
            return Activation("ReLU", torch.nn.ReLU, "relu")

    name, activation = compose(testing.plugin_manager(claims=Claims()), Settings()).activation
    assert (name, activation.summary) == ("claims", "ReLU")


def test_metric_names_must_not_collide():
    from mnist_trainer import Metric

    class Loss:
        @hookimpl
        def mnist_trainer_metrics(self, settings):
            return [Metric("loss", lambda logits, labels: logits.sum())]

    with pytest.raises(UserError, match="both define the metric 'loss'"):
        compose(testing.plugin_manager(mine=Loss()), Settings())


def test_broken_hook_signature_is_reported(fake_plugin):
    fake_plugin("typo", "from mnist_trainer import hookimpl\n"
                        "@hookimpl\ndef mnist_trainer_activaton(settings):\n    return None\n")
    with pytest.raises(UserError, match="typo"):
        registry.load(registry.make_manager(), ["typo"])


def test_a_name_registered_twice_is_refused_naming_both_distributions(fake_plugin, run_cli):
    fake_plugin("relu", "raise RuntimeError('must not be imported')")
    with pytest.raises(UserError, match=r"plugin 'relu' is registered by both "
                                        r"(mnist-trainer-relu 0.1.0 and fake_relu\w+ 0.0.1|"
                                        r"fake_relu\w+ 0.0.1 and mnist-trainer-relu 0.1.0); "
                                        r"uninstall all but one of them"):
        registry.load(registry.make_manager(), ["relu"])
    listing = run_cli("--list-plugins")
    assert listing.exit_code == 0 and "warning: 'relu' is registered by" in listing.stderr


def test_core_is_not_a_plugin_to_select():
    with pytest.raises(UserError,
                       match="'core' is the core's own defaults, not a plugin to select; drop --plugin core"):
        registry.load(registry.make_manager(), ["core"])
