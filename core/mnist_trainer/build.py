"""The parts of a run, from plugin names to a loop ready to train: selecting, composing, building.

`select` loads the named plugins, checks their options (through the record and back) and
composes the pipeline; `build` makes the network on the run's device, initialises it (or
leaves it for a checkpoint), and builds the optimizer, the schedules and the loop.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import torch

from . import registry, trainer
from .data import DataNotice, Dataset, hold_out, materialise
from .devices import refuse_oversize
from .distributed import replicate
from .errors import PluginError, UserError
from .options import build_options, parse_assignments, round_trip
from .pipeline import Pipeline, compose
from .run import Run
from .settings import Settings
from .stages import InitContext
from .weights import layers

TRANSFORM_SEED_OFFSET = 1  # transforms draw from their own generator, so adding one leaves the shuffle unchanged
BYTES_PER_PARAMETER = 16  # the weight, its gradient and an optimizer's two moments, in float32


def select(plugins: Sequence[str], assignments: Sequence[str] | dict, *, trace: bool = False,
           only_selected: bool = False, manager=None, **fields: Any) -> tuple[Settings, Pipeline]:
    """Load the named plugins, check their options, build the settings and compose the pipeline.

    `assignments` are ``-o`` texts, or recorded options by plugin. With `only_selected`, options for
    plugins that are not loaded are left out instead of refused (a comparison's ``-o`` applies to
    every arm that selects the plugin). `manager`, already holding the plugins (the test kit's),
    is used instead of loading them from their entry points.
    """
    raw = parse_assignments(assignments) if not isinstance(assignments, dict) else assignments
    plugins = [*plugins, *_dataset_plugin(fields.get("dataset", "auto"), plugins, manager)]
    if manager is None:
        manager = registry.make_manager()
        if trace or registry.tracing_requested():
            registry.trace(manager)
        reasons = registry.load(manager, plugins)
    else:
        reasons = registry.registered(manager, plugins)
    for name in list(raw):
        if name == registry.CORE:
            raise UserError(f"-o {name}.{next(iter(raw[name]))}=...: the core takes no -o options; use its flags "
                            "(see mnist-run --help)")
        if name not in reasons and only_selected:
            raw = {key: value for key, value in raw.items() if key != name}
        elif name not in reasons:
            raise UserError(f"option -o {name}.{next(iter(raw[name]))}=... is for plugin {name!r}, which is not "
                            f"selected; add --plugin {name}")
    classes = registry.option_classes(manager)
    options = []
    for name in sorted(reasons):
        if name in classes or name in raw:
            built = build_options(name, classes.get(name), raw.get(name, {}))
            if built is not None:
                round_trip(name, classes[name], built)
            options.append((name, built))
    settings = Settings(plugins=plugins, plugin_options=tuple(options), **fields)
    return settings, compose(manager, settings, reasons)


def _dataset_plugin(dataset: str, plugins: Sequence[str], manager) -> list[str]:
    """``--dataset NAME`` naming an installed dataset plugin selects it, as ``--plugin NAME`` would."""
    from .datasets import NAMES

    if manager is not None or dataset in NAMES or dataset.startswith("synthetic") or dataset in plugins:
        return []
    return [dataset] if dataset in registry.installed_plugins() else []


def load_data(pipeline: Pipeline, settings: Settings, device: torch.device, output, *, train: bool = True) -> Dataset:
    """The dataset stage's data on `device`, with the validation split held out when ``--val`` asks; a notice about the
    data actually used (a fallback) goes to `output.warn`."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataNotice)
        dataset = materialise(*pipeline.data, device, train=train)
    for notice in caught:
        if issubclass(notice.category, DataNotice):
            output.warn(str(notice.message))
    return hold_out(dataset, settings.val, settings.seed) if train else dataset


def build_network(pipeline: Pipeline, device: torch.device | None = None,
                  synchronised: bool = False) -> torch.nn.Module:
    """The model stage's network with its slots filled: the one way training, mnist-eval and the test kit build it.

    Refused before allocating when the model says it would not fit `device`. Checked on two blank
    images in eval mode (which changes no state and draws no random number) to map (N, C*H*W) rows of
    the data's images to (N, classes) logits, so a model's mistake is named before any training.
    `synchronised`: its norms synchronise over the processes (`Norm.sync`).
    """
    owner, model = pipeline.model
    data = pipeline.data[1]
    check_fits(pipeline, device)
    network = model.build(pipeline.slots(device if synchronised else None))
    pixels = math.prod(data.shape)
    try:
        with torch.no_grad():
            shape = tuple(network.eval()(torch.zeros(2, pixels)).shape)
    except Exception as error:
        raise PluginError.from_exception(owner, "mnist_trainer_model (build)", error) from error
    if shape != (2, data.classes):
        raise PluginError(owner, "mnist_trainer_model (build)", f"its network maps (2, {pixels}) images to {shape}, "
                          f"not (2, {data.classes}) logits")
    return network.train()


def check_fits(pipeline: Pipeline, device: torch.device | None) -> None:
    """Refuse, before allocating anything, a model that says it would not fit in memory (built on the CPU, then
    moved)."""
    model = pipeline.model[1]
    if model.parameters is None:
        return
    for where in {torch.device("cpu"), device or torch.device("cpu")}:
        refuse_oversize(f"the {model.kind} model ({model.parameters:,} parameters)",
                        model.parameters * BYTES_PER_PARAMETER, where,
                        "choose a smaller one (--hidden, or the model plugin's options)")


ONEDNN_BLOCK = 16  # input channels below oneDNN's block make its strided 1x1 backward-weights kernel overrun


def in_layout(network: torch.nn.Module, pipeline: Pipeline, report=None) -> torch.nn.Module:
    """The network's weights in the memory format its model asks for (`Model.layout`).

    Applied after the init stage (so seeded weights are those of the usual layout) and again by
    mnist-eval, since the layout decides the order of the sums and the metrics must come out the same.
    A network asking for channels-last that holds a strided 1x1 convolution of fewer than 16 input
    channels stays contiguous, and `report` says so: on a CPU, oneDNN's backward pass of that
    convolution in channels-last writes past its workspace (a hang, a crash, or wrong gradients with no
    error; oneDNN issue 6035), whatever the rest of the network.
    """
    if pipeline.model[1].layout != "channels_last":
        return network
    faulty = [module for module in network.modules() if isinstance(module, torch.nn.Conv2d)
              and module.kernel_size == (1, 1) and max(module.stride) > 1 and module.in_channels < ONEDNN_BLOCK]
    if faulty and next(network.parameters()).device.type == "cpu":
        if report is not None:
            report("layout", kept="contiguous",
                   reason=f"a strided 1x1 Conv2d of {faulty[0].in_channels} input channels "
                          "trains wrong in channels-last on the CPU (oneDNN issue 6035)")
        return network
    return network.to(memory_format=torch.channels_last)


def build(pipeline: Pipeline, run: Run, resuming: bool = False) -> trainer.Loop:
    """Seed, build the network on the run's device, run the init stage (unless `resuming` from a checkpoint),
    build the optimizer and the schedules, and the loop that trains them."""
    settings, device, world = run.settings, run.device, run.world
    torch.manual_seed(settings.seed)
    network = build_network(pipeline, device, synchronised=world.size > 1).to(device)
    if not resuming:
        context = InitContext(layers(network), pipeline.activation[1].gain, run.dataset.train.images, settings.seed,
                              run.report)
        pipeline.init[1].apply(network, context)
    network = in_layout(network, pipeline, None if resuming else run.report)
    replica = replicate(network, world)  # under torchrun: every rank starts from rank 0's weights
    run.network, run.lr = network, pipeline.lr
    run.optimizer = _optimizer(pipeline, network)
    run.steps_per_epoch = len(run.dataset.train) // settings.batch_size
    run.schedulers = {name: schedule.build(run.optimizer, run.steps_per_epoch, settings.epochs)
                      for name, schedule in pipeline.schedules}
    run.generators = {"shuffle": _generator(device, settings.seed),
                      "transform": _generator(device, settings.seed + TRANSFORM_SEED_OFFSET)}
    per = {name: schedule.per for name, schedule in pipeline.schedules}
    return trainer.Loop(
        network=network,
        optimizer=run.optimizer,
        batch_size=settings.batch_size,
        generator=run.generators["shuffle"],
        transform_generator=run.generators["transform"],
        metrics=[(metric.name, metric.compute) for _, metric in pipeline.metrics],
        loss=pipeline.loss[1].compute,
        penalties=pipeline.penalties,
        transforms=pipeline.transforms,
        batch_schedulers=[scheduler for name, scheduler in run.schedulers.items() if per[name] == "batch"],
        epoch_schedulers=[scheduler for name, scheduler in run.schedulers.items() if per[name] == "epoch"],
        closure=pipeline.optimizer[1].closure,
        world=world,
        replica=replica,
    )


def _optimizer(pipeline: Pipeline, network: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimizer stage's optimizer at the pipeline's rate, refused when built at another."""
    owner, answer = pipeline.optimizer
    optimizer = answer.build(network.parameters(), pipeline.lr)
    rates = sorted({float(group["lr"]) for group in optimizer.param_groups})
    if rates != [pipeline.lr]:
        raise PluginError(owner, "mnist_trainer_optimizer (build)", f"built an optimizer with learning rate "
                          f"{', '.join(map(str, rates))}, not the {pipeline.lr} it was given; build it with lr")
    return optimizer


def _generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)
