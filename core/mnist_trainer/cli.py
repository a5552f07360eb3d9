"""The `mnist-run`, `mnist-eval`, `mnist-compare` and `mnist-plot` commands.

Only click, attrs, pluggy and entry-point metadata are imported here, so ``--help``
and ``--list-plugins`` stay fast; torch and plugin modules load inside a run.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
import traceback
from pathlib import Path
from typing import Iterator

import click

from . import registry
from .environment import cores
from .errors import UserError
from .records import to_json
from .settings import declared

DIVERGED = 3  # exit status of a run whose loss became non-finite: not a user's mistake (2), not a success (0)
COMMAND_FLAGS = {"resume", "as_json", "trace_plugins", "show_traceback", "backend", "nproc",
                 "oversubscribe"}  # not settings


class _OneLineErrors(click.Command):
    """Usage errors print as one line: the message already names the option and the fix."""

    def make_context(self, *args, **kwargs) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as error:
            error.ctx = None
            raise


class _WithPlugins(_OneLineErrors):
    """Appends the installed plugins (from metadata alone) to ``--help``."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        plugins = registry.installed_plugins()
        with formatter.section("Installed plugins"):
            formatter.write_dl([(p.name, p.summary) for p in plugins.values()]
                               or [("(none)", "pip install mnist-trainer-relu")])
        super().format_epilog(ctx, formatter)


def _list_plugins(ctx: click.Context, _param, value: bool) -> None:
    if not value:
        return
    plugins = registry.installed_plugins()
    if not plugins:
        click.echo("no plugins installed; pip install mnist-trainer-relu, for example")
    for p in plugins.values():
        click.echo(f"{p.name:<16} {p.distribution + ' ' + p.version:<32} {p.summary}")
    for name, infos in registry.clashes().items():
        also = ", ".join(f"{info.distribution} {info.version}" for info in infos)
        click.echo(f"warning: {name!r} is registered by {also}; --plugin {name} is refused until one is left", err=True)
    ctx.exit()


def _output(as_json: bool, quiet: bool = False):
    """Lines to stdout (stderr under --json); nothing but errors from processes other than rank 0 under torchrun."""
    from .session import Output

    if quiet:
        return Output(say=lambda line: None, warn=lambda line: None)
    stream = sys.stderr if as_json else sys.stdout
    return Output(
        say=lambda line: click.echo(line, file=stream),
        warn=lambda line: click.echo(f"warning: {line}", err=True),
        progress=sys.stderr.isatty(),
        note=lambda line: click.echo(line, err=True),
    )


def _resume_flags() -> set[str]:
    """What ``--resume`` may be given with: the command's own flags, and the settings a resumed run may change."""
    return COMMAND_FLAGS | {field.name for field in declared() if field.metadata["resumable"]}


def _given(name: str) -> bool:
    return click.get_current_context().get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE


def _refuse_flags_beside_resume(ctx: click.Context) -> None:
    """A resumed run keeps its own settings: a flag that could change them is refused by name."""
    allowed = _resume_flags()
    for param in ctx.command.params:
        if param.name not in allowed and param.expose_value and _given(param.name):
            flag = param.opts[0]
            raise UserError(f"{flag} cannot be changed when resuming (the run keeps the settings in its config.json); "
                            f"drop {flag}, or start a new run")


def _on_sigterm_interrupt() -> list:
    """SIGTERM ends a run as Ctrl-C does (recorded, resumable); the list it returns says whether it came."""
    received: list = []

    def interrupt(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    return received


@contextlib.contextmanager
def _plugin_errors(show_traceback: bool, terminated: list | None = None) -> Iterator[None]:
    """A plugin's mistake stays one line; with --traceback (or MNIST_TRAINER_DEBUG=1) its traceback comes first.

    Ctrl-C ends with one line and status 130; the run record already says ``interrupted``. pluggy's
    warning about a hook wrapper raising while tearing down is not shown: the error it precedes is.
    """
    import warnings

    from pluggy import PluggyTeardownRaisedWarning

    from .errors import PluginError

    warnings.filterwarnings("ignore", category=PluggyTeardownRaisedWarning)
    try:
        yield
    except PluginError as error:
        if show_traceback or os.environ.get("MNIST_TRAINER_DEBUG", "") not in ("", "0"):
            cause = error.__cause__ or error
            traceback.print_exception(type(cause), cause, cause.__traceback__, file=sys.stderr)
        raise
    except KeyboardInterrupt:  # before the run began, or a second Ctrl-C while it was already ending
        click.echo("interrupted (SIGTERM)" if terminated else "interrupted (Ctrl-C)", err=True)
        sys.exit(143 if terminated else 130)


def _without_nproc(args: list[str]) -> list[str]:
    """This command's arguments without ``--nproc N`` and ``--oversubscribe``: what each process runs."""
    kept, rest = [], iter(args)
    for arg in rest:
        if arg == "--nproc":
            next(rest, None)
        elif not arg.startswith("--nproc=") and arg != "--oversubscribe":
            kept.append(arg)
    return kept


def _check_nproc(nproc: int, device: str, oversubscribe: bool) -> None:
    """More processes than this machine has GPUs (on CUDA) or cores only share them out slower; ask to be sure."""
    import torch

    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    have, what = (torch.cuda.device_count(), "CUDA devices") if cuda else (cores(), "CPU cores")
    if nproc > have and not oversubscribe:
        raise UserError(f"--nproc {nproc} starts more processes than this machine's {have} {what}, which would only "
                        "share them out; give at most that many, or add --oversubscribe if you mean it")


def _training_options(command):
    """The options every training command shares (mnist-run, mnist-compare): the run's settings, from `Settings`."""
    options = [
        click.option("--plugin", "-p", "plugins", multiple=True, metavar="NAME",
                     help="Load an installed plugin (repeatable); order does not matter."),
        click.option("-o", "--option", "assignments", multiple=True, metavar="NAME.KEY=VALUE",
                     help="Set a plugin option, e.g. -o relu.negative_slope=0.01 (repeatable)."),
        *(_setting_option(field) for field in declared()),
        click.option("--json", "as_json", is_flag=True,
                     help="Print the result as JSON on stdout (the rest goes to stderr)."),
        click.option("--traceback", "show_traceback", is_flag=True,
                     help="Show the traceback of a plugin's error, for its author [also: MNIST_TRAINER_DEBUG=1]."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _setting_option(field):
    """The click option of one `Settings` field, as the field declares it."""
    meta = field.metadata
    if meta["kind"] is bool:
        return click.option(meta["flag"], field.name, is_flag=True, default=field.default, help=meta["help"])
    return click.option(meta["flag"], field.name, type=meta["type"], default=field.default, help=meta["help"],
                        show_default=meta["show"] or True)


@click.command(cls=_WithPlugins, context_settings={"help_option_names": ["-h", "--help"]},
               epilog="Example: mnist-run --plugin batchnorm --plugin he")
@_training_options
@click.option("--resume", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="RUN",
              help="Continue the run recorded in RUN from its last checkpoint, with its own settings; "
                   "--epochs extends a finished run.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder [default: runs/<timestamp>-<plugins>].")
@click.option("--trace-plugins", is_flag=True,
              help="Print every hook call (hook, plugins, milliseconds) to stderr [also: MNIST_TRAINER_TRACE=1].")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
              help="Train on N processes of this machine, started through torch's own launcher (torchrun); "
                   "one per GPU on CUDA. For several machines, run torchrun -m mnist_trainer yourself.")
@click.option("--oversubscribe", is_flag=True, help="Allow --nproc above this machine's cores (GPUs on CUDA).")
@click.option("--backend", type=click.Choice(["auto", "gloo", "nccl"]), default="auto", show_default=True,
              help="Under torchrun: the process group's backend (auto: nccl on CUDA, gloo on the CPU).")
@click.option("--list-plugins", is_flag=True, expose_value=False, is_eager=True, callback=_list_plugins,
              help="List installed plugins and exit.")
@click.version_option(package_name="mnist-trainer")
def main(plugins, assignments, out, as_json, trace_plugins, show_traceback, resume, backend, nproc, oversubscribe,
         **fields):
    """Train a network on MNIST-format data, composed from plugins (an MLP unless a model plugin is selected)."""
    if resume is not None:
        _refuse_flags_beside_resume(click.get_current_context())
    if nproc > 1:
        _check_nproc(nproc, fields["device"], oversubscribe)
        from .distributed import launch

        sys.exit(launch(nproc, _without_nproc(sys.argv[1:])))
    terminated = _on_sigterm_interrupt()
    # under torchrun: c10d's own logs of a failure would bury the one line each process says
    if "WORLD_SIZE" in os.environ:
        os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    if fields["data_dir"] is not None:  # recorded absolute, so the run resumes from any folder
        fields["data_dir"] = str(Path(fields["data_dir"]).resolve())
    with _plugin_errors(show_traceback, terminated):
        from .distributed import joined
        from .resume import recorded_device

        device = fields["device"] if resume is None or _given("device") else recorded_device(resume)
        with joined(device, backend, resuming=resume is not None and not _given("device")) as world:
            output = _output(as_json, quiet=not world.leader)
            if resume is not None:
                summary = _resume(resume, fields, output, trace_plugins, world)
            else:
                from . import build, session

                settings, pipeline = build.select(plugins, assignments, trace=trace_plugins, **fields)
                summary = session.train(settings, pipeline, out, output, world=world)
            if summary["status"] != "interrupted":
                world.settle()
    code = {"interrupted": 143 if terminated else 130, "diverged": DIVERGED}.get(summary["status"], 0)
    if world.leader:  # rank 0 alone says how the run ended
        _say_ending(summary, as_json, "SIGTERM" if terminated else "Ctrl-C")
    sys.exit(code)


def _resume(path: Path, fields: dict, output, trace: bool, world) -> dict:
    from .resume import resume

    given = {name: fields[name] if _given(name) else None for name in ("epochs", "device")}
    return resume(path, given["epochs"], given["device"], output, trace, world)


def _say_ending(summary: dict, as_json: bool, signal_name: str) -> None:
    """The summary as JSON (``--json``), and for a run that did not complete, what it kept and how to go on."""
    if as_json:
        click.echo(to_json(summary, indent=2))
    if summary["status"] == "interrupted":
        resume = f"mnist-run --resume {shlex.quote(summary['out'])}"
        saved = f"; model.pt holds epoch {summary['saved']['epoch']}" if summary["saved"] else ""
        if summary["checkpoint"] is not None:
            click.echo(f"interrupted ({signal_name}){saved}; {resume} goes on from epoch {summary['checkpoint']}",
                       err=True)
        elif saved:
            click.echo(f"interrupted ({signal_name}){saved}, but no checkpoint was written yet (--checkpoint-every): "
                       "nothing to resume; start it again", err=True)
        else:
            click.echo(f"interrupted ({signal_name}) before its first checkpoint: nothing to resume; "
                       f"start it again (the record in {summary['out']} says so)", err=True)
    if summary["status"] == "diverged":
        click.echo(f"diverged: {summary['reason']}; record in {summary['out']}", err=True)


@click.command(cls=_OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--dataset", default=None, show_default="the data RUN was trained on",
              help="Evaluate elsewhere: auto, mnist, mnist-sample, fashion-mnist, synthetic:N or a dataset plugin.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Evaluate elsewhere: a folder with MNIST-format IDX files (the t10k pair is enough).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON on stdout.")
@click.option("--traceback", "show_traceback", is_flag=True, help="Show the traceback of a plugin's error.")
def evaluate(run, dataset, data_dir, device, as_json, show_traceback):
    """Evaluate the model saved in RUN (a mnist-run --out folder) on the test split of the data it was trained on
    (and its validation split, if it held one out), or, with --dataset or --data-dir, on another dataset's."""
    from .evaluation import evaluate_run

    with _plugin_errors(show_traceback):
        result = evaluate_run(run, dataset, data_dir, device, _output(as_json))
    if as_json:
        click.echo(to_json(result, indent=2))


@click.command(cls=_WithPlugins, context_settings={"help_option_names": ["-h", "--help"]},
               epilog="Example: mnist-compare relu+sgd relu+sgd[momentum=0.5] relu+he --seeds 3 --dataset mnist-sample")
@click.argument("arms", nargs=-1, metavar="ARM...")
@_training_options
@click.option("--seeds", default="1", show_default=True, metavar="N|S,S,...",
              help="Train every arm once per seed: a count (from --seed on) or a list of distinct seeds, e.g. 777,1,2.")
@click.option("--score-on", type=click.Path(exists=True, file_okay=False), default=None, metavar="DIR",
              help="Also evaluate every final model on the MNIST-format test set in DIR (e.g. the official one); "
                   "checked before any arm trains.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Comparison folder: a new one, or an earlier comparison of the same arms and settings to continue "
                   "[default: runs/compare-<timestamp>].")
@click.option("--resume", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="DIR",
              help="Continue the comparison in DIR (interrupted, or killed): train only the arm-seed pairs it lacks, "
                   "then write it whole.")
@click.option("--mixed-data", is_flag=True,
              help="Let arms train on different data (an arm selecting a dataset plugin); refused otherwise.")
def compare(arms, plugins, assignments, seeds, score_on, out, resume, mixed_data, as_json, show_traceback, **fields):
    """Train each ARM (plugins joined by +, e.g. relu+xavier; core for none) on the same data and seeds, side by side.

    An arm's plugin may carry its own options, relu+sgd[momentum=0.9,nesterov=true], over -o's. --plugin adds a
    plugin to every arm (e.g. -p grad-stats); -o applies to every arm that selects the plugin; --hidden to the arms
    built on the core's MLP. An arm that fails or diverges is recorded with its status while the others train.
    Writes every arm's run record, comparison.json, comparison.csv and, with matplotlib, curves.png and
    gradients.png. Ctrl-C or SIGTERM stops the whole comparison; --resume DIR continues it.
    """
    from . import compare as comparing
    from .distributed import launched

    if launched():
        raise UserError("mnist-compare trains its arms one after another in one process; under torchrun, "
                        "train each arm with torchrun -m mnist_trainer --plugin ... instead")
    if resume is not None:
        _refuse_beside_compare_resume(click.get_current_context())
    terminated = _on_sigterm_interrupt()
    with _plugin_errors(show_traceback, terminated):
        output = _output(as_json)
        if resume is not None:
            result = comparing.resume(resume, output)
        else:
            plan = comparing.plan(arms, plugins, assignments, seeds, score_on, fields, mixed_data)
            result = comparing.compare(plan, out, output)
    if as_json:
        click.echo(to_json(result, indent=2))
    if result["interrupted"]:
        folder = Path(result["out"])
        click.echo(f"interrupted ({'SIGTERM' if terminated else 'Ctrl-C'}) {result['interrupted']}; the finished runs "
                   f"are in {folder / 'comparison.json'}; mnist-compare --resume {shlex.quote(str(folder))} trains the "
                   "rest and writes the comparison", err=True)
        sys.exit(143 if terminated else 130)


def _refuse_beside_compare_resume(ctx: click.Context) -> None:
    """A continued comparison keeps its arms and settings: anything that could change them is refused by name."""
    for param in ctx.command.params:
        if param.name not in ("resume", "as_json", "show_traceback") and param.expose_value and _given(param.name):
            given = param.opts[0] if isinstance(param, click.Option) else "an ARM"
            raise UserError(f"{given} cannot be given with --resume: the comparison keeps its arms and settings in its "
                            "comparison.json; drop it, or start a new comparison")


@click.command(cls=_OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("records", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
                metavar="RUN_OR_COMPARISON...")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The picture to write; its extension names the format: png, pdf, svg, ...")
@click.option("--kind", type=click.Choice(["curves", "gradients"]), default="curves", show_default=True,
              help="curves: training loss and test accuracy; gradients: each layer's gradient RMS (grad-stats).")
def plot(records, out, kind):
    """Draw learning curves (or gradient statistics) from existing mnist-run or mnist-compare records.

    Each record is its own line (the same plugins twice are told apart by folder). Seeds that ended at
    different epochs are averaged per epoch over those that reached it; values recorded as nan or inf
    are not drawn. A moved or copied comparison still plots.
    """
    try:
        from . import plots
    except ImportError:
        raise UserError("mnist-plot needs matplotlib: pip install 'mnist-trainer[plot]'") from None
    from .readback import load

    plots.check_format(out)
    runs = load(records)
    figure = plots.curves(runs) if kind == "curves" else plots.gradients(runs)
    if figure is None and kind == "gradients":
        raise UserError("no gradient statistics in these records; train with -p grad-stats")
    if figure is None:
        raise UserError("no finished epoch in these records: nothing to draw; give records of runs that trained")
    plots.save(figure, out)
    click.echo(f"wrote {out}", err=True)
