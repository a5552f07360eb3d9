"""The ``mnist-tune`` command, built from ``mnist-run``'s options (`cli._training_options`) and its error handling.

Only click and the core's command helpers are imported here: ``--help`` imports neither torch nor optuna, and
without optuna (the ``tune`` extra) the command says in one line how to get it.
"""

from __future__ import annotations

import shlex
import signal
import sys
from pathlib import Path

import click

from . import cli
from .errors import UserError
from .records import to_json
from .settings import _Finite

SPACE_HELP = ("What to search (repeatable): a setting, a plugin option or a slot's plugin, as a range or choices, e.g. "
              "--space lr=1e-4..1e-1:log --space dropout.p=0.0..0.6 --space 'init=xavier|he|none' "
              "--space 'batch_size=50|100|200' (quoted: | is the shell's pipe).")


@click.command(cls=cli._WithPlugins, context_settings={"help_option_names": ["-h", "--help"]},
               epilog="Example: mnist-tune -p relu -p dropout --space lr=1e-4..1e-1:log --space 'init=xavier|he' "
                      "--space dropout.p=0.0..0.6 --val 1000 --dataset mnist-sample --epochs 5 --trials 20")
@cli._training_options
@click.option("--space", "spaces", multiple=True, metavar="NAME=LOW..HIGH[:log]|NAME=A|B|...", help=SPACE_HELP)
@click.option("--trials", type=click.IntRange(min=1), default=20, show_default=True,
              help="Trials this command adds to the study (over all its workers).")
@click.option("--timeout", type=_Finite(), default=None, metavar="SECONDS",
              help="Start no trial after this many seconds (the trials running then finish).")
@click.option("--metric", default=None, show_default="val_accuracy",
              help="The row column that scores a trial (its value in the weights the run saves).")
@click.option("--direction", type=click.Choice(["auto", "maximize", "minimize"]), default="auto", show_default=True,
              help="auto: minimise a metric with 'loss' in its name, maximise any other.")
@click.option("--score-on-test", is_flag=True,
              help="Allow scoring trials on the test split (without --val): the best trial's test score is then "
                   "optimistic.")
@click.option("--no-prune", is_flag=True, help="Train every trial to the end (no median pruning).")
@click.option("--storage", default=None, metavar="URL",
              help="Optuna storage shared by workers on several machines: sqlite:///FILE, postgresql://..., "
                   "mysql://... or journal:FILE [default: study.db in --out].")
@click.option("--study", "study_name", default="mnist-tune", show_default=True,
              help="The study's name in the storage; workers given the same storage and name join one study.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes on this machine, each with cores // N torch threads.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Study folder: trial runs, trials.csv, best.json, pictures; the same again adds trials "
                   "[default: runs/tune-<timestamp>, or runs/tune-<study> with --storage].")
def tune(spaces, plugins, assignments, trials, timeout, metric, direction, score_on_test, no_prune, storage,
         study_name, jobs, out, as_json, show_traceback, **fields):
    """Search settings, plugin options and plugins for the best validation score, with Optuna.

    Every trial is an ordinary mnist-run of the fixed options (-p, -o and every flag) with values drawn from the
    --space (a seeded TPE sampler), scored on the validation split (--val) and pruned when it falls behind the
    median of earlier trials. Writes each trial's run folder, trials.csv, best.json (with the mnist-run command that
    repeats the best trial) and, with matplotlib, history.png and importances.png. Ctrl-C or SIGTERM stops it with
    the best so far; the same command with the same --out (or --storage) adds trials.
    """
    try:
        import optuna  # noqa: F401
    except ImportError as error:
        raise UserError(f"mnist-tune needs optuna: pip install 'mnist-trainer[tune]' ({error})") from None
    from .tune import Request
    from .tune import tune as tuning

    if fields["data_dir"] is not None:
        fields["data_dir"] = str(Path(fields["data_dir"]).resolve())
    given = tuple(name for name in fields if cli._given(name))
    request = Request(tuple(spaces), tuple(plugins), tuple(assignments), fields, given, trials, timeout, metric,
                      direction, score_on_test, not no_prune, storage, study_name, jobs, out, as_json)
    terminated = cli._on_sigterm_interrupt()
    with cli._plugin_errors(show_traceback, terminated):
        result = tuning(request, cli._output(as_json), _worker)
    if as_json:
        click.echo(to_json(result, indent=2))
    if result["interrupted"]:
        click.echo(f"interrupted ({'SIGTERM' if terminated else 'Ctrl-C'}); {_so_far(result)}; the study is in "
                   f"{result['out']} (trials.csv, best.json); the same command with --out "
                   f"{shlex.quote(result['out'])} adds trials", err=True)
        sys.exit(143 if terminated else 130)
    sys.exit(result["status"])


def _so_far(result: dict) -> str:
    if result["trial"] is None:
        return "no trial completed"
    params = " ".join(f"{key}={value}" for key, value in result["params"].items())
    return f"best so far: trial {result['trial']}, {result['metric']} {result['value']:.4f} ({params})"


def _worker(job) -> None:
    """A worker process of ``--jobs N``: its mistakes one line, as mnist-tune's own; Ctrl-C or SIGTERM ends its trial
    as an interrupted run, quietly (the launching process says how the study ended)."""
    from .tune_worker import work

    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        work(job, cli._output(job.as_json))
    except KeyboardInterrupt:
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
