"""Composing the stages from whatever plugins are registered, and describing the result.

Every stage hook is asked once per plugin here, before any data is loaded; every answer
is checked (`checks`) and its factories guarded, so a mistake is reported with the
plugin's name before any time is spent.
"""

from __future__ import annotations

from typing import Any, Mapping

import attrs

from . import checks, registry
from .errors import PluginError, UserError
from .hookspecs import STAGES, Stage
from .settings import Settings
from .stages import Activation, Data, Initializer, Loss, Metric, Model, Norm, Optimizer, Regularizer, Schedule, Slots

Answer = tuple[str, Any]
EVALUATION_WEIGHTS = "mnist_trainer_evaluation_weights"
DATASET = "mnist_trainer_dataset"


@attrs.frozen
class Pipeline:
    """The composed run: for each stage, which plugin answered and with what; and the run events' dispatcher."""

    data: tuple[str, Data]
    model: tuple[str, Model]
    activation: tuple[str, Activation]
    norm: tuple[str, Norm | None]
    init: tuple[str, Initializer]
    regularizers: tuple[tuple[str, Regularizer], ...]
    loss: tuple[str, Loss]
    optimizer: tuple[str, Optimizer]
    schedules: tuple[tuple[str, Schedule], ...]
    metrics: tuple[tuple[str, Metric], ...]
    lr: float
    lr_given: bool
    events: registry.Events = attrs.field(eq=False, repr=False)
    reasons: Mapping[str, str] = attrs.field(factory=dict)
    states: Mapping[str, type] = attrs.field(factory=dict)

    def slots(self, synchronised_on: Any = None) -> Slots:
        dropouts = tuple(r.dropout for _, r in self.regularizers if r.dropout)
        return Slots(self.activation[1], self.norm[1], dropouts, synchronised_on)

    @property
    def penalties(self) -> list:
        return [r.penalty for _, r in self.regularizers if r.penalty is not None]

    @property
    def transforms(self) -> list:
        return [r.transform for _, r in self.regularizers if r.transform is not None]

    @property
    def metric_names(self) -> list[str]:
        return [metric.name for _, metric in self.metrics]

    @property
    def manager(self):
        return self.events.manager

    def describe(self) -> list[tuple[str, str]]:
        """One ``(stage, text)`` per stage; ``[...]`` names the plugin or core default behind each part."""
        norm = self._by(*self.norm) if self.norm[1] else "(no norm)"
        dropout = " -> ".join(self._by(n, r) for n, r in self.regularizers if r.dropout) or "(no dropout)"
        schedules = (" then ".join(self._by(*choice) for choice in self.schedules)
                     or "constant learning rate [core default]")
        given = "--lr" if self.lr_given else "its conventional rate"
        evaluation: dict[str, list[str]] = {}
        for plugin, metric in self.metrics:
            evaluation.setdefault(plugin, []).append(metric.name)
        listeners = self.events.listeners()
        return [
            ("dataset", self._by(*self.data)),
            ("model", _fill(self._by(*self.model), activation=self._by(*self.activation), norm=norm, dropout=dropout)),
            ("init", self._by(*self.init)),
            ("regularizer", "; ".join(self._by(*choice) for choice in self.regularizers) or "none"),
            ("loss", self._by(*self.loss)),
            ("optimizer", f"{self._by(*self.optimizer)}, lr={self.lr} ({given}); {schedules}"),
            ("evaluation", "; ".join(f"{', '.join(names)} [{self._who(p)}]" for p, names in evaluation.items())),
            ("events", "; ".join(f"{self._who(p)} ({', '.join(events)})" for p, events in listeners.items()) or "none"),
        ]

    def _by(self, plugin: str, answer) -> str:
        return f"{getattr(answer, 'summary', None) or describe_data(answer)} [{self._who(plugin)}]"

    def _who(self, plugin: str) -> str:
        if plugin == registry.CORE:
            return "core default"
        reason = self.reasons.get(plugin, "selected")
        return plugin if reason == "selected" else f"{plugin} ({reason})"


def describe_data(data: Data) -> str:
    channels, height, width = data.shape
    return (f"{data.name}: {height}x{width}" + (f"x{channels}" if channels != 1 else "")
            + f" images, {data.classes} classes")


def _fill(summary: str, **slots: str) -> str:
    """A model's summary with its ``{activation}``, ``{norm}`` and ``{dropout}`` placeholders filled."""
    for slot, text in slots.items():
        summary = summary.replace(f"{{{slot}}}", text)
    return summary


def compose(manager, settings: Settings, reasons: Mapping[str, str] | None = None) -> Pipeline:
    """Ask every stage hook; exclusive slots take one selected plugin, the others take all."""
    classes = registry.option_classes(manager)
    data = _exclusive(_answers(manager, STAGES[DATASET], settings, classes, None), STAGES[DATASET])
    answers = {hook: _answers(manager, stage, settings, classes, data[1])
               for hook, stage in STAGES.items() if hook != DATASET}
    chosen = {hook: _exclusive(answers[hook], stage)
              for hook, stage in STAGES.items() if stage.exclusive and hook != DATASET}
    metrics = tuple((name, metric) for name, answer in _core_first(answers["mnist_trainer_metrics"])
                    for metric in answer)
    seen: dict[str, str] = {}
    for name, metric in metrics:
        if metric.name in seen:
            raise UserError(f"plugins {seen[metric.name]!r} and {name!r} both define the metric {metric.name!r}; "
                            "select only one of them")
        seen[metric.name] = name
    _check_gain(*chosen["mnist_trainer_activation"])
    _one_evaluation_weights(manager)
    optimizer = chosen["mnist_trainer_optimizer"]
    pipeline = Pipeline(
        data=data,
        model=chosen["mnist_trainer_model"],
        activation=chosen["mnist_trainer_activation"],
        norm=chosen["mnist_trainer_norm"],
        init=chosen["mnist_trainer_init"],
        regularizers=tuple(answers["mnist_trainer_regularizer"]),
        loss=chosen["mnist_trainer_loss"],
        optimizer=optimizer,
        schedules=tuple(answers["mnist_trainer_schedule"]),
        metrics=metrics,
        lr=settings.lr if settings.lr is not None else optimizer[1].lr,
        lr_given=settings.lr is not None,
        events=registry.Events(manager),
        reasons=dict(reasons or {}),
        states=dict(registry.every(manager, "mnist_trainer_state")),
    )
    _check_model(pipeline, settings)
    _check_data(pipeline, settings)
    return pipeline


def _answers(manager, stage: Stage, settings: Settings, classes: dict[str, type], data: Data | None) -> list[Answer]:
    """Each plugin's answer to one stage hook, checked and with its factories guarded (`data`: the dataset answer,
    given to every stage hook but the dataset's)."""
    found = []
    extra = {"data": data} if data is not None else {}
    for name in registry.implementers(manager, stage.hook):  # the core last
        if stage.exclusive and name == registry.CORE and found:
            break  # a selected plugin fills the slot: the core's default is not asked
        options = settings.options(classes[name]) if name in classes else None
        answer = registry.ask(manager, name, stage.hook, settings=settings, options=options, **extra)
        if answer is None:
            continue
        items = list(answer) if stage.many and isinstance(answer, (list, tuple)) else [answer]
        guarded = [checks.check_answer(name, stage.hook, item, stage.answer, stage.many, data.classes if data else 10)
                   for item in items]
        found.append((name, tuple(guarded) if stage.many else guarded[0]))
    return found


def _core_first(answers: list[Answer]) -> list[Answer]:
    """The core's answer, then the plugins' in name order: the core's columns come first in the table."""
    return sorted(answers, key=lambda answer: answer[0] != registry.CORE)


def _exclusive(answers: list[Answer], stage: Stage) -> Answer:
    """The one selected plugin's answer, else the core default's (or None): never first-wins."""
    selected = [(name, answer) for name, answer in answers if name != registry.CORE]
    if len(selected) > 1:
        names = " and ".join(repr(name) for name, _ in selected)
        raise UserError(f"plugins {names} both fill the {stage.slot} slot, which takes one; select only one of them")
    if selected:
        return selected[0]
    return next(((name, answer) for name, answer in answers if name == registry.CORE), (registry.CORE, None))


def _one_evaluation_weights(manager) -> None:
    suppliers = registry.implementers(manager, EVALUATION_WEIGHTS)
    if len(suppliers) > 1:
        raise UserError(f"plugins {' and '.join(map(repr, suppliers))} both supply the weights that are evaluated and "
                        "saved, which one plugin at most may; select only one of them")


def _check_model(pipeline: Pipeline, settings: Settings) -> None:
    """Every selected plugin must fill a slot the model has, in a form it can use."""
    owner, model = pipeline.model
    where = f"the model of plugin {owner!r}" if owner != registry.CORE else "the core's MLP"
    fillers = [("activation", pipeline.activation[0])] if pipeline.activation[0] != registry.CORE else []
    fillers += [("norm", pipeline.norm[0])] if pipeline.norm[1] else []
    fillers += [("dropout", name) for name, answer in pipeline.regularizers if answer.dropout]
    for slot, plugin in fillers:
        if slot not in model.uses and not (slot == "norm" and "norm2d" in model.uses):
            raise UserError(f"plugin {plugin!r} fills the {slot} slot, which {where} does not have; "
                            "select one of them, not both")
    if "norm2d" in model.uses and pipeline.norm[1] and pipeline.norm[1].build2d is None:
        raise UserError(f"plugin {pipeline.norm[0]!r} has no 2-d norm (Norm.build2d) for the convolutions of {where}; "
                        "select another norm plugin, or none")
    if pipeline.norm[1] and settings.batch_size < pipeline.norm[1].min_batch:
        raise UserError(f"--batch-size {settings.batch_size} is too small for plugin {pipeline.norm[0]!r}, which needs "
                        f"{pipeline.norm[1].min_batch} images per batch to train; choose a larger batch")
    if settings.hidden is not None and "hidden" not in model.uses:
        raise UserError(f"--hidden sets the widths of the core's MLP, and plugin {owner!r} builds its own network; "
                        f"drop --hidden and use {owner}'s options instead")
    _check_init(pipeline, where, fillers)


def _check_data(pipeline: Pipeline, settings: Settings) -> None:
    owner = pipeline.data[0]
    if owner != registry.CORE and settings.dataset not in ("auto", owner):
        raise UserError(f"plugin {owner!r} supplies the data, and --dataset {settings.dataset} names other data; "
                        "drop one of them")


def _check_init(pipeline: Pipeline, where: str, fillers: list[tuple[str, str]]) -> None:
    init_plugin, init = pipeline.init
    owner, model = pipeline.model
    if init.model is not None and init.model != model.kind:
        raise UserError(f"plugin {init_plugin!r} initialises only the {init.model} model, but {where} is a "
                        f"{model.kind}; select one of them, not both")
    for slot, plugin in fillers:
        if slot in init.conflicts:
            raise UserError(f"plugin {init_plugin!r} cannot initialise a network whose {slot} slot plugin "
                            f"{plugin!r} fills (see its README); select one of them, not both")


def _check_gain(plugin: str, activation: Activation) -> None:
    """Init plugins ask every activation for its gain: an unknown nonlinearity is refused now, not mid-init."""
    try:
        activation.gain
    except ValueError as error:
        raise PluginError(plugin, "mnist_trainer_activation",
                          f"nonlinearity {activation.nonlinearity!r}: {error}; name one torch.nn.init.calculate_gain "
                          "knows (e.g. relu, leaky_relu, tanh, selu, linear)") from error
