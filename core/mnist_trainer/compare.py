"""Plugin sets trained side by side on the same data, seeds and settings: what ``mnist-compare`` does.

Every arm is selected (and so checked) and the output folder, the data and ``--score-on`` are
checked before anything trains; the data is loaded once; each arm and seed is an ordinary run
record in the comparison's folder, and ``comparison.json`` holds the plan from the start, so an
interrupted comparison continues (``--resume``) with the arm-seed pairs it lacks. With one seed,
every arm starts from the same generator state and sees the same mini-batches, so two arms
differ only by their plugins.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import attrs

from . import readback, scoreboard
from .arms import Arm, check_seeds, parse_arms, parse_seeds
from .build import check_fits, load_data, select
from .data import Dataset, hold_out, materialise
from .datasets import builtin
from .devices import resolve_device
from .errors import PluginError, UserError
from .evaluation import evaluate_run
from .options import parse_assignments
from .records import STATE, RunFolder, cannot_write, default_out, recorded, to_json
from .resume import resume as resume_run
from .session import Output, check_batch, train
from .settings import Settings, from_record

PLOT_HINT = "pip install 'mnist-trainer[plot]' (matplotlib) for the plots"
FINISHED = ("completed", "stopped", "diverged", "failed")  # a run with one of these ends is not trained again
Chosen = list[tuple[Arm, int, Settings, Any]]  # (arm, seed, settings, pipeline), in training order


@attrs.frozen
class Plan:
    """Everything that decides a comparison, as given: `arms` (ARM texts), `plugins` (``-p``), `options` (``-o``),
    `seeds`, `fields` (the run settings but the seed) and `score_on`. ``comparison.json`` keeps it to continue it."""

    arms: tuple[str, ...]
    plugins: tuple[str, ...]
    options: tuple[str, ...]
    seeds: tuple[int, ...]
    fields: dict = attrs.field(eq=False)
    score_on: str | None = None
    mixed_data: bool = False

    def record(self) -> dict:
        return json.loads(to_json({"arms": self.arms, "plugins": self.plugins, "options": self.options,
                                   "seeds": self.seeds, "settings": self.fields, "score_on": self.score_on,
                                   "mixed_data": self.mixed_data}))

    @classmethod
    def from_record(cls, record: Any, where: Path) -> "Plan":
        """The plan a comparison.json holds, checked as the command line would check it."""
        record = record if isinstance(record, dict) else {}
        texts = {key: record.get(key) for key in ("arms", "plugins", "options")}
        seeds, score_on = record.get("seeds"), record.get("score_on")
        lists = all(isinstance(value, list) and all(isinstance(text, str) for text in value)
                    for value in texts.values())
        if not lists or not isinstance(seeds, list) or not isinstance(score_on, (str, type(None))):
            raise UserError(f"{where}: its plan is damaged (arms, plugins, options, seeds or score_on); it cannot be "
                            "continued: start a new comparison")
        settings = record.get("settings") if isinstance(record.get("settings"), dict) else {}
        _, _, fields = from_record({"plugins": [], "options": {}, "seed": 0, **settings}, f"{where}: plan.settings")
        try:
            seeds = check_seeds(seeds)
        except UserError as error:
            raise UserError(f"{where}: plan.{error.message.removeprefix('--')}; the record is damaged") from None
        return cls(*(tuple(texts[key]) for key in ("arms", "plugins", "options")), tuple(seeds),
                   {key: value for key, value in fields.items() if key != "seed"}, score_on,
                   record.get("mixed_data") is True)


def plan(arms: Sequence[str], plugins: Sequence[str], options: Sequence[str], seeds: str, score_on: str | None,
         fields: dict, mixed_data: bool = False) -> Plan:
    """The command line's comparison; paths made absolute, so it continues from any folder."""
    if fields.get("data_dir") is not None:
        fields = {**fields, "data_dir": str(Path(fields["data_dir"]).resolve())}
    return Plan(tuple(arms), tuple(plugins), tuple(options), tuple(parse_seeds(seeds, fields["seed"])),
                {key: value for key, value in fields.items() if key != "seed"},
                str(Path(score_on).resolve()) if score_on else None, mixed_data)


def resume(folder: Path, output: Output) -> dict:
    """Continue the comparison in `folder` from its comparison.json: train the pairs it lacks, then write it whole."""
    file = Path(folder) / readback.COMPARISON
    if not Path(folder).is_dir():
        raise UserError(f"--resume {folder}: no such folder; give the folder of an mnist-compare")
    return compare(Plan.from_record(readback.read_json(file, "comparison").get("plan"), file), Path(folder), output)


def compare(plan: Plan, out: Path | None, output: Output) -> dict:
    """Train every arm with every seed (those without a finished record), then write and return the comparison.

    The result's ``interrupted`` says where a Ctrl-C or SIGTERM stopped it (None when it did not).
    """
    arms = parse_arms(plan.arms, plan.plugins)
    chosen = _choose(arms, plan, output)
    continuing = _check_out(out, plan)
    device = resolve_device(chosen[0][2].device)
    data = load_comparison_data(chosen, device, output, plan)
    for arm, seed, settings, pipeline in chosen:
        check_batch(settings, data[arm.name, seed])
        check_fits(pipeline, device)
    names = ", ".join(sorted({dataset.name for dataset in data.values()}))
    folder = Path(out) if continuing else _claim(out)
    scoreboard.write(folder, _collect(folder, plan, arms, names, "running"), with_csv=False)
    interrupted, scores = _conduct(folder, plan, arms, chosen, data, output), {}
    if interrupted is None and plan.score_on:
        try:
            scores = _score(folder, chosen, plan.score_on, output)
        except KeyboardInterrupt:
            interrupted = f"while scoring on {plan.score_on}"
    comparison = _collect(folder, plan, arms, names, "interrupted" if interrupted else "completed", scores)
    scoreboard.write(folder, comparison)
    for line in scoreboard.table(comparison):
        output.say(line)
    if interrupted is None:
        _plot(folder, output)
    output.say(f"comparison in {folder}")
    return {**comparison, "out": str(folder), "interrupted": interrupted}


def load_comparison_data(chosen: Chosen, device, output: Output, plan: Plan) -> dict[tuple[str, int], Dataset]:
    """The one place a comparison loads data: each arm's data (the dataset stage's answer) loaded once for all the
    arms and seeds that share it, with each seed's validation split held out; and the ``--score-on`` test set read
    now (as `evaluate_run` will read it), so a missing or damaged one is refused before any arm trains. Arms whose
    data differ are refused unless ``--mixed-data`` says the user means it."""
    loaded: dict[tuple, Dataset] = {}
    data = {}
    for arm, seed, settings, pipeline in chosen:
        owner, answer = pipeline.data
        key = (owner, answer.name, json.dumps(settings.options_dict().get(owner), sort_keys=True))
        if key not in loaded:
            loaded[key] = load_data(pipeline, attrs.evolve(settings, val=None), device, output)
        data[arm.name, seed] = hold_out(loaded[key], settings.val, settings.seed)
    if len(loaded) > 1 and not plan.mixed_data:
        names = ", ".join(sorted({dataset.name for dataset in loaded.values()}))
        raise UserError(f"the arms train on different data ({names}); compare them on one dataset, or add --mixed-data "
                        "if you mean to")
    if plan.score_on is not None:
        try:
            materialise("core", builtin("auto", plan.score_on), device, train=False)
        except UserError as error:
            raise UserError(f"--score-on {plan.score_on}: {error.message}") from None
    return data


def _choose(arms: list[Arm], plan: Plan, output: Output) -> Chosen:
    """Every arm selected with every seed, checked before anything trains; ``--hidden`` only where the arm's model
    is the core's MLP, and said so when some arm's is not."""
    given = parse_assignments(plan.options)
    hidden = plan.fields.get("hidden")
    users = [arm for arm in arms if hidden is None or _uses_hidden(arm, given, plan)]
    if hidden is not None and len(users) < len(arms):
        if not users:
            raise UserError("--hidden sets the widths of the core's MLP, and every arm's model plugin builds its own "
                            "network; drop --hidden and use the model plugin's options instead")
        others = ", ".join(arm.name for arm in arms if arm not in users)
        output.note(f"--hidden {','.join(map(str, hidden))} applies to {', '.join(arm.name for arm in users)} "
                    f"(the core's MLP), not to {others} (a model plugin's network)")
    chosen: Chosen = []
    for seed in plan.seeds:
        for arm in arms:
            fields = {**plan.fields, "seed": seed, "hidden": hidden if arm in users else None}
            chosen.append((arm, seed, *_select(arm, given, fields)))
    used = {name for _, _, _, pipeline in chosen for name in pipeline.reasons}
    for name in given:
        if name not in used:
            raise UserError(f"option -o {name}.{next(iter(given[name]))}=... is for plugin {name!r}, which no arm "
                            "selects")
    return chosen


def _uses_hidden(arm: Arm, given: dict, plan: Plan) -> bool:
    _, pipeline = _select(arm, given, {**plan.fields, "seed": plan.seeds[0], "hidden": None})
    return "hidden" in pipeline.model[1].uses


def _select(arm: Arm, given: dict, fields: dict):
    """The arm's settings and pipeline; ``-o``'s options with the arm's own over them. A mistake names the arm."""
    try:
        return select(arm.plugins, arm.assignments(given), only_selected=True, **fields)
    except PluginError:
        raise
    except UserError as error:
        raise UserError(f"arm {arm.name!r}: {error.message}") from None


def _check_out(out: Path | None, plan: Plan) -> bool:
    """Whether `out` is an existing comparison of this plan, to continue; a new or empty folder is not; anything else
    is refused, so nothing is overwritten."""
    if out is None or not Path(out).exists():
        return False
    folder = Path(out)
    if (folder / readback.COMPARISON).exists():
        recorded_plan = readback.read_json(folder / readback.COMPARISON, "comparison").get("plan")
        if not isinstance(recorded_plan, dict):
            raise UserError(f"--out {folder} holds a comparison that records no plan to continue; choose a new folder")
        if recorded_plan != plan.record():
            differ = [key for key, value in plan.record().items() if recorded_plan.get(key) != value]
            raise UserError(f"--out {folder} holds a comparison of other {', '.join(differ)}; choose a new folder, or "
                            f"continue that one with mnist-compare --resume {folder}")
        return True
    if any(folder.iterdir()):
        raise UserError(f"--out {folder} already holds files and no comparison; choose a new folder so nothing is "
                        "overwritten")
    return False


def _claim(out: Path | None) -> Path:
    folder = Path(out) if out else default_out((), stem=f"compare-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise cannot_write(folder, error) from None
    return folder


def _conduct(folder: Path, plan: Plan, arms: list[Arm], chosen: Chosen, data: dict, output: Output) -> str | None:
    """Train each pair without a finished record (continuing an interrupted one from its checkpoint); comparison.json
    is rewritten after each. Returns where a Ctrl-C or SIGTERM stopped it, or None."""
    quiet = attrs.evolve(output, say=lambda line: None, progress=False)
    for index, (arm, seed, settings, pipeline) in enumerate(chosen, 1):
        path = folder / arm.folder / f"seed-{seed}"
        state = _state(path)
        if state == "finished":
            continue
        doing = "continuing" if state == "resumable" else "training"
        output.note(f"[{index}/{len(chosen)}] {doing} {arm.name}, seed {seed}")
        try:
            ended = _train_pair(path, state, settings, pipeline, data[arm.name, seed], quiet)
            if ended in ("failed", "diverged"):
                output.warn(f"{arm.name}, seed {seed} {ended}: {_summary(path).get('reason')}; the other arms go on")
            if ended != "interrupted":
                scoreboard.write(folder, _collect(folder, plan, arms, data[arm.name, seed].name, "running"),
                                 with_csv=False)
        except KeyboardInterrupt:
            ended = "interrupted"
        if ended == "interrupted":
            return f"during {arm.name}, seed {seed}"
    return None


def _state(path: Path) -> str:
    """``finished`` (its record has an ending), ``resumable`` (a checkpoint to go on from) or ``new``."""
    if _summary(path).get("status") in FINISHED:
        return "finished"
    return "resumable" if (path / STATE).is_file() else "new"


def _summary(path: Path) -> dict:
    summary = recorded(path).get("summary")
    return summary if isinstance(summary, dict) else {}


def _train_pair(path: Path, state: str, settings: Settings, pipeline, dataset: Dataset, output: Output) -> str:
    """Train (or continue) one arm with one seed; how it ended. A failure its record holds is the arm's, not the
    comparison's: the other arms go on."""
    try:
        if state == "resumable":
            return resume_run(path, None, None, output)["status"]
        if path.exists():  # started, but nothing to go on from: no finished epoch was checkpointed
            RunFolder(path, []).close()  # refused while another process trains it
            shutil.rmtree(path)
        return train(settings, pipeline, path, output, dataset=dataset)["status"]
    except Exception:
        if _summary(path).get("status") == "failed":
            return "failed"
        raise


def _score(folder: Path, chosen: Chosen, score_on: str, output: Output) -> dict[tuple[str, int], dict]:
    """Every saved model's metrics on the ``--score-on`` test set, by (arm, seed)."""
    quiet = attrs.evolve(output, say=lambda line: None, warn=lambda line: None)
    scores = {}
    for arm, seed, settings, _ in chosen:
        path = folder / arm.folder / f"seed-{seed}"
        if (path / "model.pt").is_file():
            scores[arm.name, seed] = evaluate_run(path, "auto", score_on, settings.device, quiet)["metrics"]
    return scores


def _collect(folder: Path, plan: Plan, arms: list[Arm], dataset: str, status: str, scores: dict | None = None) -> dict:
    """The comparison as its run folders hold it now: per arm its runs (paths relative to `folder`), means, spreads
    and status."""
    found = []
    for arm in arms:
        runs = [_run(folder, arm, seed, (scores or {}).get((arm.name, seed), {})) for seed in plan.seeds]
        found.append({"name": arm.name, "plugins": list(arm.plugins), "options": arm.options, "folder": arm.folder,
                      "status": scoreboard.status(runs), "runs": runs, **scoreboard.spread(runs)})
    return {"status": status, "dataset": dataset, "seeds": list(plan.seeds), "score_on": plan.score_on,
            "settings": plan.fields, "plan": plan.record(), "arms": found}


def _run(folder: Path, arm: Arm, seed: int, scored: dict) -> dict:
    out = f"{arm.folder}/seed-{seed}"
    summary = _summary(folder / out)
    if not summary:  # not trained yet, or killed before its record was finished: --resume trains it
        return {"seed": seed, "out": out, "status": "pending", "reason": "not trained yet"}
    rows = readback.epochs(folder / out)
    return {"seed": seed, "out": out, "status": summary.get("status"), "reason": summary.get("reason"),
            **scoreboard.run_result(rows), **{f"scored_{name}": value for name, value in scored.items()}}


def _plot(folder: Path, output: Output) -> None:
    try:
        from . import plots
    except ImportError:
        output.warn(f"no plots: {PLOT_HINT}")
        return
    runs = readback.load([folder])
    for name, draw in (("curves.png", plots.curves), ("gradients.png", plots.gradients)):
        figure = draw(runs)
        if figure is None:
            continue
        try:
            plots.save(figure, folder / name)
        except UserError as error:
            raise UserError(f"{error.message}; the comparison and the arms' records are written: free some space (or "
                            f"move what is in the way), then mnist-compare --resume {folder} draws it") from None
