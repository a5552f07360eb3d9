"""What a plugin returns from a stage hook: small frozen descriptions, built into modules later.

Hooks run while the pipeline is composed, before any data is loaded or weights exist,
so every answer is a description plus factories. That lets the core print the
pipeline and reject conflicts before spending any time, and keeps these classes
free of torch imports. Composing checks every answer and wraps every factory (see
`checks`), so that an exception or a wrong return value inside it names the plugin
and the hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping

import attrs

if TYPE_CHECKING:
    import torch

LAYOUTS = ("contiguous", "channels_last")


@attrs.frozen
class Data:
    """The dataset: `load(splits)` returns, for each split asked for (``"train"``, ``"test"``), its ``(images, labels)``
    on the CPU: uint8 pixels (or floats in [0, 1]) of N images of `shape` (channels, height, width; (N, H, W) for one
    channel), and N integer labels from 0 to `classes` - 1.

    The core converts them on the device once (uint8 / 255, rows of C*H*W floats), holds out a validation
    split when asked, and fingerprints them for the record. `name` names the data in the record and the
    printed pipeline; `source` says where it comes from (a folder, a URL).
    """

    name: str
    load: Callable[[tuple[str, ...]], Mapping[str, tuple["torch.Tensor", "torch.Tensor"]]]
    shape: tuple[int, int, int] = attrs.field(default=(1, 28, 28), converter=tuple)
    classes: int = 10
    source: str = ""


@attrs.frozen
class Activation:
    """The activation slot of every hidden block.

    `nonlinearity` and `param` name it for `torch.nn.init.calculate_gain` (checked when the
    pipeline is composed), so that init plugins can use the gain of whatever activation is active.
    """

    summary: str
    build: Callable[[], "torch.nn.Module"]
    nonlinearity: str
    param: float | None = None

    @property
    def gain(self) -> float:
        """The recommended init gain for this activation (``torch.nn.init.calculate_gain``)."""
        from torch.nn.init import calculate_gain

        return calculate_gain(self.nonlinearity, self.param)


@attrs.frozen
class Norm:
    """The norm slot: `build(width)` returns the module for (N, width) features.

    `build2d(channels)` returns it for (N, channels, H, W) feature maps, for models with
    convolutions; a norm without it cannot be used with them. `min_batch` is the smallest
    ``--batch-size`` it can train with. `sync(module, device)` returns the module made to use
    the statistics of every process's share of the global batch under torchrun (for torch's
    batch norms, `mnist_trainer.syncbn.sync_batch_norm`); without it each process normalises
    by its own share.
    """

    summary: str
    build: Callable[[int], "torch.nn.Module"]
    build2d: Callable[[int], "torch.nn.Module"] | None = None
    min_batch: int = 1  # batch norm needs 2 values per channel to train
    sync: Callable[["torch.nn.Module", "torch.device"], "torch.nn.Module"] | None = None


@attrs.frozen
class Slots:
    """What fills a model's slots, handed to `Model.build`: every call makes fresh modules.

    `norm(width)` and `norm2d(channels)` return a list of zero or one module (none when no
    norm plugin is selected), `activation()` one module, `dropout()` a list of modules (one
    per regularizer with a dropout, in plugin-name order), ready to splice into a block.
    Under torchrun (`synchronised_on`, the device) each norm comes synchronised (`Norm.sync`).
    """

    activation_slot: Activation
    norm_slot: Norm | None = None
    dropout_slots: tuple[Callable[[], "torch.nn.Module"], ...] = ()
    synchronised_on: Any = None

    def activation(self) -> "torch.nn.Module":
        return self.activation_slot.build()

    def norm(self, width: int) -> list:
        return [self._synchronised(self.norm_slot.build(width))] if self.norm_slot else []

    def norm2d(self, channels: int) -> list:
        return [self._synchronised(self.norm_slot.build2d(channels))] if self.norm_slot else []

    def dropout(self) -> list:
        return [build() for build in self.dropout_slots]

    def _synchronised(self, module: "torch.nn.Module") -> "torch.nn.Module":
        if self.synchronised_on is None or self.norm_slot.sync is None:
            return module
        return self.norm_slot.sync(module, self.synchronised_on)


@attrs.frozen
class Model:
    """The whole network: `build(slots)` returns a module taking (N, 784) images in [0, 1] to (N, 10) logits.

    `summary` is the pipeline's model line; ``{activation}``, ``{norm}`` and ``{dropout}`` in it
    are replaced by what fills those slots. `uses` names the slots the model has, of
    ``activation``, ``norm``, ``norm2d``, ``dropout`` and ``hidden`` (it reads ``--hidden``);
    selecting a plugin for a slot the model lacks is refused. `kind` names the architecture
    for init stages that only suit one (``mlp`` is the core's). `layout` is the memory format
    its weights train in: ``contiguous``, or ``channels_last`` where that was measured to make
    its convolutions faster. `parameters`, when known before building, lets the core refuse a
    network too large for the device before allocating it.
    """

    summary: str
    build: Callable[[Slots], "torch.nn.Module"]
    uses: tuple[str, ...] = ("activation", "norm", "dropout")
    kind: str = "custom"
    layout: str = attrs.field(default="contiguous", validator=attrs.validators.in_(LAYOUTS))
    parameters: int | None = None


@attrs.frozen
class Regularizer:
    """Any of: a module for the dropout slot, a loss penalty, a per-batch transform of the training data.

    - `dropout()` makes a module for the dropout slot of every hidden block.
    - `penalty(network, logits, labels)` returns a 0-d tensor added to each mini-batch's loss.
    - `transform(images, labels, generator)` returns the ``(images, labels)`` that train, on the
      device; it never sees evaluation data. `generator` is seeded from ``--seed``. Labels are
      class indices (int64, shape (N,)) or class probabilities (float, shape (N, classes)).
    """

    summary: str
    dropout: Callable[[], "torch.nn.Module"] | None = None
    penalty: Callable[["torch.nn.Module", "torch.Tensor", "torch.Tensor"], "torch.Tensor"] | None = None
    transform: Callable[["torch.Tensor", "torch.Tensor", "torch.Generator"], tuple] | None = None


@attrs.frozen
class Loss:
    """The training loss: `compute(logits, labels)` returns a 0-d tensor for one mini-batch.

    `labels` are what the transforms leave: class indices (int64, shape (N,)) or class
    probabilities (float, shape (N, classes)); ``torch.nn.functional.cross_entropy`` takes both.
    """

    summary: str
    compute: Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]


@attrs.frozen
class InitContext:
    """What an initializer may rely on, whatever the model: the contract between models and init stages.

    `weights` are the network's weight layers (every `nn.Linear` and `nn.Conv2d`, input to
    output) and `output` the last of them, which maps to the 10 classes; `gain` is the active
    activation's recommended gain (``torch.nn.init.calculate_gain``). `train_images` are the
    training images (float rows in [0, 1] on the device); `report(stage, **values)` prints a
    line and records it.
    """

    weights: tuple["torch.nn.Module", ...]
    gain: float
    train_images: "torch.Tensor"
    seed: int
    report: Callable[..., None]

    @property
    def output(self) -> "torch.nn.Module":
        return self.weights[-1]


@attrs.frozen
class Initializer:
    """Sets the weights of a freshly built network in place, before training.

    `model` names the only model kind it suits (``"mlp"``), or None for any model. `conflicts`
    names the slots (``norm``, ``dropout``, ``activation``) it cannot work with once filled by a
    plugin; such a selection is refused when the pipeline is composed.
    """

    summary: str
    apply: Callable[["torch.nn.Module", InitContext], None]
    model: str | None = None
    conflicts: tuple[str, ...] = ()


@attrs.frozen
class Optimizer:
    """`build(parameters, lr)` returns the `torch.optim.Optimizer` that trains the network at rate `lr` (checked).

    `lr` is the optimizer's conventional learning rate, used when ``--lr`` is not given.
    `closure` says its ``step`` needs a closure that re-evaluates the mini-batch's loss (LBFGS);
    the core then passes one.
    """

    summary: str
    build: Callable[[Any, float], "torch.optim.Optimizer"]
    lr: float
    closure: bool = False


@attrs.frozen
class Schedule:
    """`build(optimizer, steps_per_epoch, epochs)` returns a scheduler; the core calls its ``step()``.

    `per` is ``"batch"`` (after every optimizer step) or ``"epoch"`` (after every epoch). Any
    object whose ``step()`` takes no arguments fits: every ``torch.optim.lr_scheduler`` but
    ``ReduceLROnPlateau``, which needs a metric. Several selected schedules chain, in plugin-name
    order (as ``torch.optim.lr_scheduler.ChainedScheduler`` does), so each should be one of
    torch's chainable forms, which scale the rate they find.
    """

    summary: str
    build: Callable[[Any, int, int], Any]
    per: str = attrs.field(default="epoch", validator=attrs.validators.in_(("batch", "epoch")))


@attrs.frozen
class Metric:
    """An evaluation metric: `compute(logits, labels)` over a whole split gives a 0-d tensor."""

    name: str
    compute: Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]
