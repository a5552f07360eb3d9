"""`check_plugin`: the properties every plugin owes, proved on tiny data on the CPU.

In the spirit of scikit-learn's ``check_estimator``: a plugin's own test calls it with the
plugin's module (or its entry-point name), and it runs what ``mnist-run``, ``--resume`` and
``mnist-eval`` run, through the same code, with the plugin's records in a temporary folder.
A broken property fails with `PluginCheckFailed`, whose message names it.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping

import attrs

from .. import registry
from ..errors import UserError
from ..hookspecs import hookimpl
from ..options import build_options, round_trip
from ..pipeline import DATASET
from ..settings import Settings

FIRST_PARTY = ("relu", "xavier", "he", "dropout", "batchnorm", "rbm-pretrain", "cnn", "grad-stats", "tensorboard",
               "sgd", "lbfgs")  # of the optimizers, one that steps alone and one that re-evaluates through a closure
NONSENSE = ("", "nonsense", "nan", "inf", "-1", "1e400", "0")
EPOCHS, INTERRUPTED_AT = 3, 2  # the resumed run is interrupted as epoch 2 starts, after epoch 1's checkpoint


class PluginCheckFailed(AssertionError):
    """A property the plugin owes does not hold; the message names it."""


@attrs.frozen
class Check:
    """One property that held, and how."""

    property: str
    detail: str


def check_plugin(plugin: ModuleType | Any, *, name: str | None = None, options: Mapping[str, str] | None = None,
                 stand_ins: Mapping[str, Any] | None = None, device: str = "cpu",
                 dataset: str | None = None, batch_size: int = 40) -> list[Check]:
    """Prove what every plugin owes: it loads, its options survive the record and its mistakes are named, it composes
    with the core's defaults and with each first-party plugin installed (or is refused in one line), a short run
    trains, a run interrupted after its first epoch and resumed equals the uninterrupted one bitwise (rows and
    weights), ``mnist-eval`` reproduces the recorded test metrics exactly, and its state comes back on the run's device.

    `plugin` is the module (it need not be installed), a plugin object with its entry-point `name`, or an installed
    plugin's name; `options` are ``-o`` values (text) for the runs; `stand_ins` register plugins it requires that are
    not installed, by name; `dataset` is ``--dataset`` for the runs: by default ``synthetic:240``, or the plugin's
    own data when it answers the dataset stage.
    Returns what held; raises `PluginCheckFailed` naming the first property that does not.
    """
    checker = _Checker(plugin, name, dict(options or {}), dict(stand_ins or {}), device, dataset, batch_size)
    return [checker.loads(), checker.options(), checker.mistakes(), checker.composes(), *checker.runs()]


class _Checker:
    def __init__(self, plugin, name: str | None, options: dict, stand_ins: dict, device: str, dataset: str,
                 batch_size: int):
        self.plugin, self.raw, self.stand_ins = plugin, options, stand_ins
        self.name = name or (plugin if isinstance(plugin, str) else registry.plugin_name(plugin))
        if self.name is None:
            raise PluginCheckFailed(f"check_plugin({plugin!r}): give the plugin's module (mnist_trainer_<name>), its "
                                    "entry-point name, or the plugin object with name=")
        self.fields = dict(device=device, dataset=dataset, batch_size=batch_size, epochs=EPOCHS)

    def manager(self, *others: str):
        """A plugin manager as a run builds it: the plugin, what it requires (stand-ins first), and `others`."""
        manager = registry.make_manager(**self.stand_ins)
        if isinstance(self.plugin, str):
            registry.load(manager, [self.plugin])
        else:
            manager.register(self.plugin, name=self.name)
        needed = [name for name in (*registry.required_by(manager, self.name), *others)
                  if manager.get_plugin(name) is None]
        if needed:
            registry.load(manager, needed)
        registry.in_name_order(manager)
        registry.verify(manager)
        return manager

    def fail(self, property: str, detail: str) -> PluginCheckFailed:
        return PluginCheckFailed(f"check_plugin({self.name!r}): {property}: {detail}")

    def loads(self) -> Check:
        try:
            self.manager()
        except UserError as error:
            raise self.fail("loads", error.message) from None
        return Check("loads", "hooks verified as a run verifies them, requirements loaded")

    def options(self) -> Check:
        cls = dict(registry.every(self.manager(), "mnist_trainer_options")).get(self.name)
        if cls is None:
            return Check("options survive the record", "it takes no options")
        try:
            for values in ({}, self.raw):
                round_trip(self.name, cls, build_options(self.name, cls, values))
        except UserError as error:
            raise self.fail("options survive the record", error.message) from None
        return Check("options survive the record", f"{len(attrs.fields(cls))} options, defaults and given values")

    def mistakes(self) -> Check:
        """Nonsense for each option is accepted or refused in one line naming the plugin and the option."""
        cls = dict(registry.every(self.manager(), "mnist_trainer_options")).get(self.name)
        tried = 0
        for field in attrs.fields(cls) if cls else ():
            for value in NONSENSE:
                tried += 1
                try:
                    build_options(self.name, cls, {field.name: value})
                except UserError as error:
                    if f"{self.name}.{field.name}" not in error.message or "\n" in error.message:
                        raise self.fail("names its mistakes", f"-o {self.name}.{field.name}={value!r} gave "
                                        f"{error.message!r}, which does not name the option in one line") from None
                except Exception as error:
                    raise self.fail("names its mistakes", f"-o {self.name}.{field.name}={value!r} raised "
                                    f"{type(error).__name__}: {error}") from None
        return Check("names its mistakes", f"{tried} nonsense option values accepted or refused in one line")

    def settings(self, manager) -> Settings:
        """Tiny settings for the runs: the core MLP small, unless the model is another that has no ``--hidden``."""
        from ..build import select

        options = {self.name: self.raw} if self.raw else {}
        fields = dict(self.fields)
        if fields["dataset"] is None:
            supplies = self.name in registry.implementers(manager, DATASET)
            fields["dataset"] = "auto" if supplies else "synthetic:240"
        try:
            return select([self.name], options, manager=manager, hidden=(16,), **fields)[0]
        except UserError as error:
            if "--hidden" not in error.message:
                raise
        return select([self.name], options, manager=manager, **fields)[0]

    def composes(self) -> Check:
        from .kit import train_steps

        installed = registry.installed_plugins()
        together, refused = [], []
        try:
            manager = self.manager()
            train_steps(manager, self.settings(manager), steps=2)
        except UserError as error:
            raise self.fail("composes with the core's defaults", error.message) from None
        for other in [name for name in FIRST_PARTY if name in installed and name != self.name]:
            try:
                manager = self.manager(other)
                train_steps(manager, self.settings(manager), steps=2)
                together.append(other)
            except UserError as error:  # a conflict, refused in one line before any work: as a run would refuse it
                if error.message.startswith(f"plugin {self.name!r} failed"):
                    raise self.fail(f"composes with {other}", error.message) from None
                refused.append(other)
        return Check("composes", f"with the core's defaults and {', '.join(together) or 'no first-party plugin'}"
                     + (f"; refused in one line with {', '.join(refused)}" if refused else ""))

    def runs(self) -> list[Check]:
        with tempfile.TemporaryDirectory(prefix="mnist-trainer-check-") as temporary:
            return _Runs(self, Path(temporary)).checks()


class _Runs:
    """The runs behind the last properties: one uninterrupted, one interrupted after its first epoch and resumed."""

    def __init__(self, checker: _Checker, folder: Path):
        self.checker, self.folder = checker, folder
        self.manager = checker.manager()
        self.settings = checker.settings(self.manager)

    def checks(self) -> list[Check]:
        whole = self.run("whole", interrupt=None)
        if not all(math.isfinite(row["train_loss"]) for row in whole["rows"]):
            raise self.checker.fail("a short run trains", "the training loss is not finite")
        trained = Check("a short run trains", f"{len(whole['rows'])} epochs, ended {whole['summary']['status']}")
        broken = self.run("interrupted", interrupt=INTERRUPTED_AT)
        devices = self.resume(broken)
        return [trained, self.same(whole, broken), self.evaluates(whole), self.on_device(devices)]

    def run(self, name: str, interrupt: int | None) -> dict:
        from .kit import fit_with

        listeners = (_Interrupt(interrupt),) if interrupt else ()
        try:
            run = fit_with(self.manager, self.settings, None, listeners, self.folder / name)
        except UserError as error:
            raise self.checker.fail("a short run trains", error.message) from None
        return {"path": self.folder / name, "rows": run.history, "summary": {"status": run.status}}

    def resume(self, broken: dict) -> list[str]:
        """Resume the interrupted run as ``mnist-run --resume`` does; the devices its plugins' state tensors came
        back on."""
        from ..resume import resume
        from ..session import Output

        seen = _Devices()
        self.manager.register(seen, name="check:devices")
        try:
            resume(broken["path"], None, None, Output(say=lambda line: None, warn=lambda line: None),
                   manager=self.manager)
        except UserError as error:
            raise self.checker.fail("resumes", error.message) from None
        finally:
            self.manager.unregister(seen)
        return seen.devices

    def same(self, whole: dict, broken: dict) -> Check:
        import torch

        from ..records import read_model, read_rows

        rows = [_timeless(read_rows(run["path"])) for run in (whole, broken)]
        if rows[0] != rows[1]:
            epoch, column = _first_difference(*rows)
            raise self.checker.fail("resumes bitwise", f"the resumed run's record differs from the uninterrupted run's "
                                    f"in epoch {epoch}, column {column!r}: state a checkpoint does not carry, or a "
                                    "handler that acts differently after a resume")
        weights = [read_model(run["path"])["state_dict"] for run in (whole, broken)]
        different = [key for key in weights[0] if not torch.equal(weights[0][key], weights[1][key])]
        if different:
            raise self.checker.fail("resumes bitwise", f"the resumed run's saved weights differ in {different[0]}")
        return Check("resumes bitwise", f"interrupted as epoch {INTERRUPTED_AT} began, resumed: rows and weights equal")

    def evaluates(self, whole: dict) -> Check:
        from ..evaluation import evaluate_run
        from ..records import recorded
        from ..session import Output

        saved = recorded(whole["path"])["summary"]["saved"]
        quiet = Output(say=lambda line: None, warn=lambda line: None)
        metrics = evaluate_run(whole["path"], None, None, self.settings.device, quiet, manager=self.manager)["metrics"]
        expected = {name: saved[f"test_{name}"] for name in metrics}
        if metrics != expected:
            raise self.checker.fail("mnist-eval reproduces the record", f"it gives {metrics}, the record {expected}")
        return Check("mnist-eval reproduces the record", f"test metrics of epoch {saved['epoch']} exactly")

    def on_device(self, devices: list[str]) -> Check:
        wrong = [device for device in devices if device != str(self._device())]
        if wrong:
            raise self.checker.fail("state on the run's device", f"a state tensor came back on {wrong[0]}")
        return Check("state on the run's device", f"{len(devices)} state tensors on {self._device()}")

    def _device(self):
        from ..devices import resolve_device

        return resolve_device(self.settings.device)


class _Interrupt:
    """Ctrl-C as epoch `epoch` starts: the run records itself interrupted, its last checkpoint that of the epoch
    before."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    @hookimpl
    def mnist_trainer_epoch_start(self, run):
        if run.epoch == self.epoch:
            raise KeyboardInterrupt


class _Devices:
    """Notes the device of every tensor in every plugin's state once a resumed run has started."""

    def __init__(self):
        self.devices: list[str] = []

    @hookimpl(trylast=True)
    def mnist_trainer_run_start(self, run):
        for instance in run.states.values():
            self.devices += [str(tensor.device) for tensor in _tensors(instance.state_dict())]


def _tensors(value: Any) -> list:
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
    return [tensor for item in items for tensor in _tensors(item)]


def _timeless(rows: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if not key.endswith("seconds")} for row in rows]


def _first_difference(one: list[dict], other: list[dict]) -> tuple[Any, str]:
    for a, b in zip(one, other):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return a.get("epoch", a.get("stage")), key
    return "?", "(a row missing)"

