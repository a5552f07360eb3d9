"""{{ cookiecutter.description }}.

Say here why: what it changes in training, and at what cost. (A minimal working plugin of the
{{ cookiecutter.stage }} kind, made by the mnist-trainer plugin template: replace its example with yours.)
"""
{% if cookiecutter.stage == "events" %}
import attrs
from attrs.validators import ge, lt

from mnist_trainer import PluginState, hookimpl, number, option, options_hook, state_hook


@attrs.frozen
class {{ cookiecutter.__options }}:
    smoothing: float = option(0.6, converter=number, validator=[ge(0.0), lt(1.0)], help="a number in [0, 1)")


@attrs.define
class Smoothed(PluginState):
    """Per-run state, checkpointed by the core: a resumed run goes on from the same value."""

    value: float | None = None


mnist_trainer_options = options_hook({{ cookiecutter.__options }})
mnist_trainer_state = state_hook(Smoothed)


@hookimpl
def mnist_trainer_columns():
    return ("smoothed_train_loss",)


@hookimpl
def mnist_trainer_epoch_end(run):
    smoothing, smoothed = run.settings.options({{ cookiecutter.__options }}).smoothing, run.state(Smoothed)
    loss = run.row["train_loss"]
    smoothed.value = loss if smoothed.value is None else smoothing * smoothed.value + (1 - smoothing) * loss
    run.row["smoothed_train_loss"] = smoothed.value
{% elif cookiecutter.stage == "init" %}
import attrs
import torch
from attrs.validators import gt

from mnist_trainer import Initializer, hookimpl, number, option, options_hook


@attrs.frozen
class {{ cookiecutter.__options }}:
    scale: float = option(0.05, converter=number, validator=gt(0.0), help="a number above 0")


mnist_trainer_options = options_hook({{ cookiecutter.__options }})


@hookimpl
def mnist_trainer_init(options):
    def apply(network, context):
        with torch.no_grad():
            for layer in context.weights:
                torch.nn.init.uniform_(layer.weight, -options.scale, options.scale)

    return Initializer(f"uniform_(-{options.scale}, {options.scale}) on every weight layer, biases untouched", apply)
{% elif cookiecutter.stage == "regularizer" %}
import attrs
import torch
from attrs.validators import gt

from mnist_trainer import Regularizer, hookimpl, number, option, options_hook


@attrs.frozen
class {{ cookiecutter.__options }}:
    std: float = option(0.1, converter=number, validator=gt(0.0), help="a number above 0")


mnist_trainer_options = options_hook({{ cookiecutter.__options }})


@hookimpl
def mnist_trainer_regularizer(options):
    def transform(images, labels, generator):
        # draw from the generator the core gives: runs stay reproducible and resume bitwise
        noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
        return images + options.std * noise, labels

    return Regularizer(f"Gaussian noise of std {options.std} on training images", transform=transform)
{% elif cookiecutter.stage == "loss" %}
import attrs
import torch.nn.functional as F
from attrs.validators import gt

from mnist_trainer import Loss, hookimpl, number, option, options_hook


@attrs.frozen
class {{ cookiecutter.__options }}:
    temperature: float = option(1.0, converter=number, validator=gt(0.0), help="a number above 0")


mnist_trainer_options = options_hook({{ cookiecutter.__options }})


@hookimpl
def mnist_trainer_loss(options):
    temperature = options.temperature
    # labels are class indices, or class probabilities after a mixing transform: cross_entropy takes both
    return Loss(f"cross-entropy of logits / {temperature}",
                lambda logits, labels: F.cross_entropy(logits / temperature, labels))
{% elif cookiecutter.stage == "optimizer" %}
import attrs
import torch
from attrs.validators import ge, lt

from mnist_trainer import Optimizer, hookimpl, number, option, options_hook


@attrs.frozen
class {{ cookiecutter.__options }}:
    momentum: float = option(0.9, converter=number, validator=[ge(0.0), lt(1.0)], help="a number in [0, 1)")


mnist_trainer_options = options_hook({{ cookiecutter.__options }})


@hookimpl
def mnist_trainer_optimizer(options):
    def build(parameters, lr):
        return torch.optim.SGD(parameters, lr=lr, momentum=options.momentum)

    return Optimizer(f"SGD(momentum={options.momentum})", build, lr=0.01)  # lr: its conventional rate
{% elif cookiecutter.stage == "schedule" %}
import attrs
import torch
from attrs.validators import gt, le

from mnist_trainer import Schedule, hookimpl, number, option, options_hook


@attrs.frozen
class {{ cookiecutter.__options }}:
    gamma: float = option(0.9, converter=number, validator=[gt(0.0), le(1.0)], help="a number in (0, 1]")


mnist_trainer_options = options_hook({{ cookiecutter.__options }})


@hookimpl
def mnist_trainer_schedule(options):
    def build(optimizer, steps_per_epoch, epochs):
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=options.gamma)

    return Schedule(f"learning rate times {options.gamma} after every epoch", build)
{% elif cookiecutter.stage == "metrics" %}
import attrs
from attrs.validators import ge, le

from mnist_trainer import Metric, hookimpl, option, options_hook


@attrs.frozen
class {{ cookiecutter.__options }}:
    k: int = option(3, converter=int, validator=[ge(1), le(10)], help="a whole number, 1 to 10")


mnist_trainer_options = options_hook({{ cookiecutter.__options }})


@hookimpl
def mnist_trainer_metrics(options):
    k = options.k

    def compute(logits, labels):
        return (logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1).float().mean()

    return [Metric(f"top{k}_accuracy", compute)]
{% elif cookiecutter.stage == "activation" %}
import attrs
import torch
from attrs.validators import ge

from mnist_trainer import Activation, hookimpl, number, option, options_hook


@attrs.frozen
class {{ cookiecutter.__options }}:
    negative_slope: float = option(0.01, converter=number, validator=ge(0.0), help="a number, 0 or more")


mnist_trainer_options = options_hook({{ cookiecutter.__options }})


@hookimpl
def mnist_trainer_activation(options):
    slope = options.negative_slope
    # nonlinearity and param name it for torch.nn.init.calculate_gain, which init plugins use
    return Activation(f"LeakyReLU({slope})", lambda: torch.nn.LeakyReLU(slope), "leaky_relu", param=slope)
{% elif cookiecutter.stage == "model" %}
import attrs
from attrs.validators import ge
from torch import nn

from mnist_trainer import Model, hookimpl, option, options_hook


@attrs.frozen
class {{ cookiecutter.__options }}:
    width: int = option(128, converter=int, validator=ge(1), help="a whole number of units, 1 or more")


mnist_trainer_options = options_hook({{ cookiecutter.__options }})


@hookimpl
def mnist_trainer_model(options):
    width = options.width

    def build(slots):
        norms = slots.norm(width)  # a norm's shift replaces the Linear's bias
        return nn.Sequential(nn.Linear(784, width, bias=not norms), *norms, slots.activation(), *slots.dropout(),
                             nn.Linear(width, 10))

    summary = "784-%d-10 MLP: Linear -> {norm} -> {activation} -> {dropout} -> Linear" % width
    return Model(summary, build, uses=("activation", "norm", "dropout"))
{% endif -%}
