"""The optimizer family alone, through mnist_trainer.testing: nothing installed, each plugin an object with its name."""

import inspect
import re

import attrs
import pytest
import torch

import mnist_trainer_optimizers as optimizers
from mnist_trainer import UserError, hookimpl, testing
from mnist_trainer.testing import build_options

FAMILY = optimizers.FAMILY
NAMES = list(FAMILY)
NOT_OPTIONS = {"params", "lr", "foreach", "fused", "capturable", "differentiable", "maximize"}  # not options (README)
CHOSEN = {"lbfgs": {"max_iter": 2, "max_eval": 5, "history_size": 5, "line_search_fn": "strong_wolfe"}}  # README
RATES = {"sgd": 0.01, "adadelta": 1.0, "adagrad": 0.01, "adamax": 0.002, "asgd": 0.01, "lbfgs": 1.0, "rmsprop": 0.001,
         "rprop": 0.01, "adamw": 0.001, "nadam": 0.002, "radam": 0.001}
CPU = {"sgd": "fused", "adagrad": "fused", "adamw": "fused", "asgd": "for-loop", "lbfgs": "for-loop"}  # else foreach
CUDA = {"sgd": "fused", "adagrad": "fused", "adamw": "fused", "lbfgs": "for-loop"}


def manager(name):
    return testing.plugin_manager(**{name: FAMILY[name]})


def torch_class(name):
    return getattr(torch.optim, FAMILY[name].torch_class)


@pytest.mark.parametrize("name", NAMES)
def test_the_options_are_torchs_own_arguments_with_torchs_defaults(name):
    parameters = inspect.signature(torch_class(name)).parameters
    torchs = {key: parameter.default for key, parameter in parameters.items() if key not in NOT_OPTIONS}
    assert attrs.asdict(FAMILY[name].options()) == {**torchs, **CHOSEN.get(name, {})}


def test_lbfgs_departs_from_torchs_defaults_only_where_the_readme_says():
    parameters = inspect.signature(torch.optim.LBFGS).parameters
    assert {key: parameters[key].default for key in CHOSEN["lbfgs"]} == dict(max_iter=20, max_eval=None,
                                                                            history_size=100, line_search_fn=None)


@pytest.mark.parametrize("name", NAMES)
def test_it_builds_the_torch_class_at_its_conventional_rate_with_its_options_and_implementation(name):
    answer = testing.compose(manager(name), testing.settings(hidden=(8,))).optimizer[1]
    assert answer.lr == RATES[name] and answer.closure == (name == "lbfgs")
    optimizer = answer.build(torch.nn.Linear(3, 2).parameters(), answer.lr)
    group = optimizer.param_groups[0]
    assert isinstance(optimizer, torch_class(name)) and group["lr"] == RATES[name]
    assert {key: group[key] for key in attrs.asdict(FAMILY[name].options())} == {
        key: None if value == "none" else value for key, value in attrs.asdict(FAMILY[name].options()).items()}
    implementation = CPU.get(name, "foreach")
    assert answer.summary.startswith(f"{FAMILY[name].torch_class} ({implementation}): ")
    assert {key for key in ("fused", "foreach") if group.get(key)} == ({implementation} - {"for-loop"})


@pytest.mark.parametrize("name", NAMES)
def test_on_cuda_it_says_it_runs_fused_where_torch_has_that_else_foreach(name):
    plugin = FAMILY[name]
    answer = plugin.mnist_trainer_optimizer(testing.settings(device="cuda:1"), plugin.options())
    assert answer.summary.startswith(f"{plugin.torch_class} ({CUDA.get(name, 'foreach')}): ")


def test_options_arrive_as_text_and_as_the_values_a_record_holds():
    text = {"betas": "0.8, 0.99", "eps": "1e-7", "weight_decay": "0", "amsgrad": "yes"}
    record = {"betas": [0.8, 0.99], "eps": 1e-7, "weight_decay": 0.0, "amsgrad": True}
    expected = optimizers.AdamwOptions(betas=(0.8, 0.99), eps=1e-7, weight_decay=0.0, amsgrad=True)
    assert build_options("adamw", optimizers.AdamwOptions, text) == expected
    assert build_options("adamw", optimizers.AdamwOptions, record) == expected
    got = build_options("lbfgs", optimizers.LbfgsOptions, {"max_iter": "10", "max_eval": 12, "line_search_fn": "none"})
    assert got == optimizers.LbfgsOptions(max_iter=10, max_eval=12, line_search_fn="none")
    assert build_options("sgd", optimizers.SgdOptions, {"momentum": "0.9", "nesterov": "true"}).nesterov is True


BAD = [
    ("sgd", "momentum", "-0.1"), ("sgd", "momentum", "1"), ("sgd", "dampening", "1.5"), ("sgd", "weight_decay", "-1"),
    ("sgd", "weight_decay", "nan"), ("sgd", "nesterov", "maybe"), ("sgd", "nesterov", "true"),
    ("adadelta", "rho", "1.1"), ("adadelta", "eps", "0"), ("adagrad", "lr_decay", "-1"),
    ("adagrad", "initial_accumulator_value", "-0.1"), ("adagrad", "eps", "0"),
    ("adamax", "betas", "0.9"), ("adamax", "betas", "1,0.999"), ("adamax", "betas", "0.9,0.999,0.9"),
    ("asgd", "lambd", "-1"), ("asgd", "alpha", "nan"), ("asgd", "t0", "-5"),
    ("lbfgs", "max_iter", "0"), ("lbfgs", "max_iter", "2.5"), ("lbfgs", "max_iter", "20"), ("lbfgs", "max_eval", "1"),
    ("lbfgs", "history_size", "0"), ("lbfgs", "tolerance_grad", "-1"), ("lbfgs", "tolerance_change", "inf"),
    ("lbfgs", "line_search_fn", "wolfe"),
    ("rmsprop", "alpha", "1.5"), ("rmsprop", "momentum", "1"), ("rmsprop", "eps", "-1e-8"),
    ("rmsprop", "centered", "2"),
    ("rprop", "etas", "0.5,0.9"), ("rprop", "etas", "1.2,0.5"), ("rprop", "step_sizes", "0.01,1e-6"),
    ("rprop", "step_sizes", "0,50"), ("adamw", "betas", "-0.1,0.999"), ("adamw", "weight_decay", "-0.01"),
    ("nadam", "momentum_decay", "-1"), ("nadam", "decoupled_weight_decay", "sometimes"), ("radam", "betas", "0.9,1"),
]


@pytest.mark.parametrize("name, key, value", BAD, ids=lambda part: str(part))
def test_nonsense_is_refused_in_one_line_naming_the_option(name, key, value):
    with pytest.raises(UserError, match=re.escape(f"invalid value for -o {name}.{key}={value}: ")) as refused:
        build_options(name, FAMILY[name].options, {key: value})
    assert "\n" not in refused.value.message


def test_options_that_only_clash_together_are_refused_naming_both():
    with pytest.raises(UserError, match=r"sgd.nesterov=true needs sgd.momentum above 0 and sgd.dampening=0"):
        build_options("sgd", optimizers.SgdOptions, {"momentum": "0.9", "dampening": "0.1", "nesterov": "true"})
    with pytest.raises(UserError, match=r"lbfgs.max_iter=10 needs lbfgs.max_eval of at least 10"):
        build_options("lbfgs", optimizers.LbfgsOptions, {"max_iter": "10", "max_eval": "8"})


@pytest.mark.parametrize("name", NAMES)
def test_it_trains_the_tiny_data_below_the_first_epochs_loss(name, mnist_data):
    run = testing.fit(manager(name), testing.settings(epochs=3, hidden=(32,)), mnist_data)
    losses = [row["train_loss"] for row in run.history]
    assert isinstance(run.optimizer, torch_class(name)) and run.lr == RATES[name]
    assert losses[1] < losses[0] and losses[2] < losses[0], losses


def test_sparseadam_is_refused_when_composed_saying_why_and_what_instead():
    with pytest.raises(UserError) as refused:
        testing.compose(testing.plugin_manager(sparseadam=optimizers.sparseadam), testing.settings())
    assert "needs sparse gradients" in refused.value.message and "--plugin adamw" in refused.value.message
    assert "\n" not in refused.value.message


CHECKED_WITH = {"sgd": {"momentum": "0.9", "nesterov": "true"}, "adamw": {"betas": "0.8,0.99", "amsgrad": "true"},
                "rprop": {"step_sizes": "1e-6,0.01"}}


@pytest.mark.parametrize("name", NAMES)
def test_it_keeps_the_plugin_contract(name):
    checks = testing.check_plugin(FAMILY[name], name=name, options=CHECKED_WITH.get(name))
    assert "resumes bitwise" in [check.property for check in checks]


def lbfgs_on(network):
    answer = testing.compose(manager("lbfgs"), testing.settings()).optimizer[1]
    return answer.build(network.parameters(), answer.lr)


def test_every_lbfgs_step_lowers_its_mini_batchs_loss(mnist_data):
    """The strong-Wolfe line search accepts only a step that decreases the loss it evaluates (the README's reason)."""
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Linear(784, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    optimizer, images, labels = lbfgs_on(network), mnist_data.train.images, mnist_data.train.labels
    for start in range(0, 600, 50):
        batch, targets = images[start : start + 50], labels[start : start + 50]

        def closure():
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(network(batch), targets)
            loss.backward()
            return loss

        before = optimizer.step(closure).item()  # the loss the optimizer saw first: the weights before the step
        with torch.no_grad():
            assert torch.nn.functional.cross_entropy(network(batch), targets).item() < before


def test_lbfgs_steps_a_channels_last_convolution_as_a_contiguous_one():
    """torch's LBFGS fails on a channels-last gradient (the cnn plugin's layout); this one steps it as any other."""
    stepped = []
    for layout in (torch.contiguous_format, torch.channels_last):
        torch.manual_seed(0)
        conv, images = torch.nn.Conv2d(2, 4, 3).to(memory_format=layout), torch.rand(8, 2, 6, 6)
        optimizer = lbfgs_on(conv)

        def closure():
            optimizer.zero_grad()
            loss = conv(images).square().mean()
            loss.backward()
            return loss

        optimizer.step(closure)
        stepped.append(conv.weight.detach().contiguous())
    assert torch.allclose(*stepped, atol=1e-6)


class Counts:
    def __init__(self):
        self.gradients, self.steps = 0, 0

    @hookimpl
    def mnist_trainer_before_step(self, run):
        self.gradients += 1

    @hookimpl
    def mnist_trainer_step_end(self, run, loss):
        self.steps += 1


def test_the_core_hands_lbfgs_a_closure_it_evaluates_two_to_five_times_a_step(mnist_data):
    counts = Counts()
    run = testing.fit(manager("lbfgs"), testing.settings(epochs=1, hidden=(32,)), mnist_data, listeners=(counts,))
    assert counts.steps == run.steps_per_epoch == 12
    assert 2 * counts.steps <= counts.gradients <= 5 * counts.steps
