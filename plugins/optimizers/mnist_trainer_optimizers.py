"""torch.optim's optimizers as plugins, one entry point each: ``--plugin sgd``, ``--plugin rmsprop``, ...

Every plugin here is an instance of one small class, `TorchOptimizer`: which torch class it builds, its options
(torch's own arguments with torch's defaults, checked here because torch checks few of them and some only at the
first step), its conventional learning rate and the implementation it runs on the run's device. So what the eleven
share is written once, and one distribution carries them (see the README for why).
"""

from __future__ import annotations

import attrs
import torch
from attrs.validators import ge, gt, le, lt

from mnist_trainer import Optimizer, UserError, boolean, choice, hookimpl, number, option

FUSED_DEVICES = ("cpu", "cuda")  # where torch 2.14 has the fused kernels of SGD, Adagrad, Adam and AdamW
IMPLEMENTATIONS = {"fused": {"fused": True}, "foreach": {"foreach": True}, "for-loop": {"foreach": False}}


# ----- option values: -o text and the JSON values a run's record holds --------------------------------------------

def integer(value) -> int:
    """A whole number, from text (``"5"``) or the int a record holds; ``2.5``, ``1e3`` and booleans are refused."""
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, bool) or not (isinstance(text, int) or (isinstance(text, str) and text.lstrip("+-").isdigit())):
        raise ValueError(f"{value!r} is not a whole number")
    return int(text)


def pair(value) -> tuple[float, float]:
    """Two finite numbers, from ``-o`` text (``0.9,0.999``) or the list a record holds, as the tuple torch takes."""
    parts = value.split(",") if isinstance(value, str) else value
    if not isinstance(parts, (list, tuple)) or len(parts) != 2:
        raise ValueError(f"{value!r} is not two numbers separated by a comma")
    return (number(parts[0]), number(parts[1]))


def _betas(instance, attribute, value) -> None:
    if not all(0.0 <= beta < 1.0 for beta in value):
        raise ValueError(f"both betas must be in [0, 1), got {value[0]}, {value[1]}")


def _etas(instance, attribute, value) -> None:
    if not 0.0 < value[0] < 1.0 < value[1]:
        raise ValueError(f"etas must be a decrease in (0, 1) and an increase above 1, got {value[0]}, {value[1]}")


def _step_sizes(instance, attribute, value) -> None:
    if not 0.0 < value[0] < value[1]:
        raise ValueError(f"step_sizes must be a minimum above 0 and a larger maximum, got {value[0]}, {value[1]}")


def nonnegative(default: float):
    return option(default, converter=number, validator=ge(0.0), help="a number, 0 or more")


def positive(default: float):
    return option(default, converter=number, validator=gt(0.0), help="a number above 0")


def below_one(default: float):
    return option(default, converter=number, validator=[ge(0.0), lt(1.0)], help="a number in [0, 1)")


def up_to_one(default: float):
    return option(default, converter=number, validator=[ge(0.0), le(1.0)], help="a number in [0, 1]")


def flag(default: bool):
    return option(default, converter=boolean, help="true or false (yes/no, on/off, 1/0)")


def betas(default=(0.9, 0.999)):
    return option(default, converter=pair, validator=_betas, help="two numbers in [0, 1), e.g. 0.9,0.999")


# ----- each optimizer's options: torch's arguments, torch's defaults (LBFGS's chosen in the README) ----------------

@attrs.frozen
class SgdOptions:
    momentum: float = below_one(0.0)
    dampening: float = up_to_one(0.0)
    weight_decay: float = nonnegative(0.0)
    nesterov: bool = option(False, converter=boolean, help="true or false; true needs momentum above 0 and dampening 0")

    def __attrs_post_init__(self):  # torch refuses this only when the optimizer is built, after the folder exists
        if self.nesterov and (self.momentum == 0 or self.dampening != 0):
            raise ValueError("sgd.nesterov=true needs sgd.momentum above 0 and sgd.dampening=0")


@attrs.frozen
class AdadeltaOptions:
    rho: float = up_to_one(0.9)
    eps: float = positive(1e-6)
    weight_decay: float = nonnegative(0.0)


@attrs.frozen
class AdagradOptions:
    lr_decay: float = nonnegative(0.0)
    weight_decay: float = nonnegative(0.0)
    initial_accumulator_value: float = nonnegative(0.0)
    eps: float = positive(1e-10)


@attrs.frozen
class AdamaxOptions:
    betas: tuple[float, float] = betas()
    eps: float = positive(1e-8)
    weight_decay: float = nonnegative(0.0)


@attrs.frozen
class AsgdOptions:
    lambd: float = nonnegative(1e-4)
    alpha: float = nonnegative(0.75)
    t0: float = nonnegative(1e6)
    weight_decay: float = nonnegative(0.0)


@attrs.frozen
class LbfgsOptions:
    max_iter: int = option(2, converter=integer, validator=ge(1), help="a whole number, 1 or more, at most max_eval")
    max_eval: int = option(5, converter=integer, validator=ge(1), help="a whole number, at least max_iter")
    tolerance_grad: float = nonnegative(1e-7)
    tolerance_change: float = nonnegative(1e-9)
    history_size: int = option(5, converter=integer, validator=ge(1), help="a whole number, 1 or more")
    line_search_fn: str = option("strong_wolfe", converter=choice("strong_wolfe", "none"), help="strong_wolfe or none")

    def __attrs_post_init__(self):  # more iterations than evaluations would leave max_iter meaningless
        if self.max_eval < self.max_iter:
            raise ValueError(f"lbfgs.max_iter={self.max_iter} needs lbfgs.max_eval of at least {self.max_iter} (each "
                             "iteration evaluates the loss at least once); set lbfgs.max_eval too")


@attrs.frozen
class RmspropOptions:
    alpha: float = up_to_one(0.99)
    eps: float = positive(1e-8)
    weight_decay: float = nonnegative(0.0)
    momentum: float = below_one(0.0)
    centered: bool = flag(False)


@attrs.frozen
class RpropOptions:
    etas: tuple[float, float] = option((0.5, 1.2), converter=pair, validator=_etas,
                                       help="two numbers, a decrease in (0, 1) then an increase above 1, e.g. 0.5,1.2")
    step_sizes: tuple[float, float] = option((1e-6, 50.0), converter=pair, validator=_step_sizes,
                                             help="two numbers, a minimum above 0 then a larger maximum, e.g. 1e-6,50")


@attrs.frozen
class AdamwOptions:
    betas: tuple[float, float] = betas()
    eps: float = positive(1e-8)
    weight_decay: float = nonnegative(1e-2)
    amsgrad: bool = flag(False)


@attrs.frozen
class NadamOptions:
    betas: tuple[float, float] = betas()
    eps: float = positive(1e-8)
    weight_decay: float = nonnegative(0.0)
    momentum_decay: float = nonnegative(4e-3)
    decoupled_weight_decay: bool = flag(False)


@attrs.frozen
class RadamOptions:
    betas: tuple[float, float] = betas()
    eps: float = positive(1e-8)
    weight_decay: float = nonnegative(0.0)
    decoupled_weight_decay: bool = flag(False)


# ----- the plugins -------------------------------------------------------------------------------------------------

def device_type(device: str) -> str:
    """The kind of device a run's ``--device`` trains on: ``cpu`` or ``cuda`` (``auto``: CUDA when present)."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device.split(":")[0]


@attrs.frozen(eq=False)  # a plugin is itself, as a module is: pluggy tells plugins apart by identity
class TorchOptimizer:
    """One ``torch.optim`` class as a plugin: the options it takes, its conventional rate and how it runs.

    `fused`: torch has a fused kernel for it (the fastest, on the CPU and CUDA). Otherwise it runs `cpu` on the CPU
    (``foreach``, or ``for-loop`` where that measured faster) and ``foreach`` elsewhere. `flags` is False for LBFGS,
    which has one implementation and takes neither flag. `closure`: its ``step`` re-evaluates the loss. `build_as`:
    the class built, when not ``torch.optim``'s own.
    """

    torch_class: str
    options: type
    lr: float
    fused: bool = False
    cpu: str = "foreach"
    flags: bool = True
    closure: bool = False
    build_as: type | None = None

    def implementation(self, device: str) -> str:
        """``fused``, ``foreach`` or ``for-loop``: what this optimizer runs on a device of that type."""
        if not self.flags:
            return "for-loop"
        if self.fused and device in FUSED_DEVICES:
            return "fused"
        return self.cpu if device == "cpu" else "foreach"

    def arguments(self, options, device: str) -> dict:
        """The keyword arguments (but ``lr``) the torch class is built with: the options, then the implementation."""
        values = {key: None if value == "none" else value for key, value in attrs.asdict(options).items()}
        return {**values, **(IMPLEMENTATIONS[self.implementation(device)] if self.flags else {})}

    @hookimpl
    def mnist_trainer_options(self):
        return self.options

    @hookimpl
    def mnist_trainer_optimizer(self, settings, options):
        device = device_type(settings.device)
        arguments = self.arguments(options, device)

        def build(parameters, lr):
            return (self.build_as or getattr(torch.optim, self.torch_class))(parameters, lr=lr, **arguments)

        shown = ", ".join(f"{key}={value}" for key, value in attrs.asdict(options).items())
        return Optimizer(f"{self.torch_class} ({self.implementation(device)}): {shown}", build, lr=self.lr,
                         closure=self.closure)


class AnyLayoutLBFGS(torch.optim.LBFGS):
    """torch's LBFGS, which flattens each gradient with ``view`` and so fails on a channels-last convolution's (the
    ``cnn`` plugin trains in that layout): here such a gradient is made contiguous first, the same numbers."""

    def _gather_flat_grad(self):
        for parameter in self._params:
            if parameter.grad is not None and not parameter.grad.is_contiguous():
                parameter.grad = parameter.grad.contiguous()
        return super()._gather_flat_grad()


@attrs.frozen(eq=False)
class Refused:
    """A torch optimizer that cannot train these models: selecting it stops the run as it is composed, saying why."""

    reason: str

    @hookimpl
    def mnist_trainer_optimizer(self):
        raise UserError(self.reason)


sgd = TorchOptimizer("SGD", SgdOptions, lr=0.01, fused=True)
adadelta = TorchOptimizer("Adadelta", AdadeltaOptions, lr=1.0)
adagrad = TorchOptimizer("Adagrad", AdagradOptions, lr=0.01, fused=True)
adamax = TorchOptimizer("Adamax", AdamaxOptions, lr=0.002)
asgd = TorchOptimizer("ASGD", AsgdOptions, lr=0.01, cpu="for-loop")
lbfgs = TorchOptimizer("LBFGS", LbfgsOptions, lr=1.0, flags=False, closure=True, build_as=AnyLayoutLBFGS)
rmsprop = TorchOptimizer("RMSprop", RmspropOptions, lr=0.001)
rprop = TorchOptimizer("Rprop", RpropOptions, lr=0.01)
adamw = TorchOptimizer("AdamW", AdamwOptions, lr=0.001, fused=True)
nadam = TorchOptimizer("NAdam", NadamOptions, lr=0.002)
radam = TorchOptimizer("RAdam", RadamOptions, lr=0.001)
sparseadam = Refused(
    "sparseadam: torch.optim.SparseAdam needs sparse gradients (nn.Embedding(sparse=True)), which none of these models "
    "produce; drop --plugin sparseadam: the core's Adam (no optimizer plugin), or --plugin adamw")

FAMILY = {"sgd": sgd, "adadelta": adadelta, "adagrad": adagrad, "adamax": adamax, "asgd": asgd, "lbfgs": lbfgs,
          "rmsprop": rmsprop, "rprop": rprop, "adamw": adamw, "nadam": nadam, "radam": radam}
