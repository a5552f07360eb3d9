"""What a resumable checkpoint holds (everything a resumed run needs to go on exactly as the run would have),
taking it from a run and giving it back to one.

It holds nothing that depends on the number of processes, so a run resumes on any number of them.
"""

from __future__ import annotations

import torch

from . import records, state
from .errors import UserError
from .run import Run


def take(run: Run, run_id: str) -> dict:
    """The run's checkpoint at the end of epoch ``run.epoch``; a plugin's state that a checkpoint cannot hold is
    refused, naming the plugin and the key."""
    return {
        "format": records.FORMAT,
        "run_id": run_id,
        "epoch": run.epoch,
        "network": run.network.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "schedulers": {name: scheduler.state_dict() for name, scheduler in run.schedulers.items()},
        "generators": {name: generator.get_state() for name, generator in run.generators.items()},
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "history": [dict(row) for row in run.history],
        "plugins": {name: state.saved(name, instance) for name, instance in run.states.items()},
        "stop": run.stop_requested,
    }


def restore(run: Run, checkpoint: dict) -> None:
    """Continue `run` from `checkpoint`: its parts, history and every plugin's state (see `restore_generators`)."""
    try:
        run.network.load_state_dict(checkpoint["network"])
        run.optimizer.load_state_dict(checkpoint["optimizer"])
        for name, scheduler in run.schedulers.items():
            scheduler.load_state_dict(checkpoint["schedulers"][name])
    except (RuntimeError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"the checkpoint does not fit the network its plugins build now "
                        f"({str(error).strip().splitlines()[0]}); start the run again") from None
    run.epoch, run.history = checkpoint["epoch"], list(checkpoint["history"])
    run.step, run.resumed = run.epoch * run.steps_per_epoch, True
    run.stop_requested = checkpoint.get("stop")
    for name, instance in run.states.items():
        if name in checkpoint["plugins"]:
            state.restored(name, instance, checkpoint["plugins"][name], run.device)


def restore_generators(run: Run, checkpoint: dict) -> list[str]:
    """Every generator's state, the global ones last: called once run_start has let plugins add theirs.

    A generator whose state was saved on another kind of device (a run recorded on CUDA, resumed on
    the CPU) cannot take it: it is seeded from the run's seed and epoch instead, and named in the list
    returned, since that run goes on as a new draw.
    """
    reseeded = []
    for name, generator in run.generators.items():
        if name in checkpoint["generators"]:
            try:
                generator.set_state(checkpoint["generators"][name])
            except RuntimeError:
                generator.manual_seed(run.settings.seed + run.epoch)
                reseeded.append(name)
    torch.set_rng_state(checkpoint["torch_rng"])
    if checkpoint["cuda_rng"] and torch.cuda.is_available() and run.device.type == "cuda":
        torch.cuda.set_rng_state_all(checkpoint["cuda_rng"])
    return reseeded
