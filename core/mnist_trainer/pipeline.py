"""Composing the five stages from whatever plugins are registered, and describing the result."""

from __future__ import annotations

from typing import Mapping

import attrs

from . import registry
from .errors import UserError
from .model import INPUTS, CLASSES, BlockSpec
from .settings import Settings
from .stages import Activation, Initializer, Metric, Norm, Optimizer, Regularizer


@attrs.frozen
class Pipeline:
    """The composed run: for each stage, which plugin answered and with what."""

    activation: tuple[str, Activation]
    norm: tuple[str, Norm | None]
    init: tuple[str, Initializer]
    regularizers: tuple[tuple[str, Regularizer], ...]
    optimizer: tuple[str, Optimizer]
    metrics: tuple[tuple[str, Metric], ...]
    reasons: Mapping[str, str] = attrs.field(factory=dict)

    @property
    def block(self) -> BlockSpec:
        return BlockSpec(self.activation[1], self.norm[1], tuple(r for _, r in self.regularizers))

    def describe(self, hidden: tuple[int, ...]) -> list[tuple[str, str]]:
        """One ``(stage, text)`` per stage; ``[...]`` names the plugin or core default behind each part."""
        widths = "-".join(str(w) for w in (INPUTS, *hidden, CLASSES))
        norm = self._by(*self.norm) if self.norm[1] else "(no norm)"
        dropout = " -> ".join(self._by(n, r) for n, r in self.regularizers if r.dropout) or "(no dropout)"
        evaluation: dict[str, list[str]] = {}
        for plugin, metric in self.metrics:
            evaluation.setdefault(plugin, []).append(metric.name)
        return [
            ("model", f"{widths}, each hidden block: Linear -> {norm} -> {self._by(*self.activation)} -> {dropout}"),
            ("init", self._by(*self.init)),
            ("regularizer", "; ".join(self._by(*choice) for choice in self.regularizers) or "none"),
            ("optimizer", self._by(*self.optimizer)),
            ("evaluation", "; ".join(f"{', '.join(names)} [{self._who(p)}]" for p, names in evaluation.items())),
        ]

    @property
    def penalties(self) -> list:
        return [r.penalty for _, r in self.regularizers if r.penalty is not None]

    @property
    def metric_names(self) -> list[str]:
        return [metric.name for _, metric in self.metrics]

    def _by(self, plugin: str, answer) -> str:
        return f"{answer.summary} [{self._who(plugin)}]"

    def _who(self, plugin: str) -> str:
        if plugin == registry.CORE:
            return "core default"
        reason = self.reasons.get(plugin, "selected")
        return plugin if reason == "selected" else f"{plugin} ({reason})"


def compose(manager, settings: Settings, reasons: Mapping[str, str] | None = None) -> Pipeline:
    """Ask every stage hook; exclusive slots take one selected plugin, the others take all."""
    metrics = tuple((name, metric) for name, answer in registry.every(manager, "mnist_trainer_metrics", settings=settings)
                    for metric in answer)
    seen: dict[str, str] = {}
    for name, metric in metrics:
        if metric.name in seen:
            raise UserError(f"plugins {seen[metric.name]!r} and {name!r} both define the metric {metric.name!r}; select only one of them")
        seen[metric.name] = name
    return Pipeline(
        activation=registry.exclusive(manager, "mnist_trainer_activation", "activation", settings=settings),
        norm=registry.exclusive(manager, "mnist_trainer_norm", "norm", settings=settings),
        init=registry.exclusive(manager, "mnist_trainer_init", "init", settings=settings),
        regularizers=tuple(registry.every(manager, "mnist_trainer_regularizer", settings=settings)),
        optimizer=registry.exclusive(manager, "mnist_trainer_optimizer", "optimizer", settings=settings),
        metrics=metrics,
        reasons=dict(reasons or {}),
    )
