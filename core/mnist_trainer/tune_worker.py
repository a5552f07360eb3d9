"""The workers of one ``mnist-tune``: each starts trials until this launch has as many as asked, sharing the cores.

Before a trial a worker takes the launch's turn (a lock on the study folder that the kernel drops if the worker
dies), counts the launch's trials and starts one only while fewer than asked have ended or are running, then tags
the new trial as the launch's and lets the turn go: N workers never start more than N trials' worth, and a trial
lost with a killed worker is run again by another. ``--jobs N`` starts N worker processes; the launching process
marks a dead worker's trial failed at once (the heartbeat would, after its grace period).
"""

from __future__ import annotations

import fcntl
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from pathlib import Path
from typing import Callable

import attrs
import optuna
import torch

from .environment import cores
from .session import Output
from .tune_report import LOST, line, write
from .tune_storage import LostCallback, fail, fail_stale, launched_by, load_study, open_storage, tally
from .tune_trial import Job, Objective, TrialFailed

LOCK = ".workers.lock"
POLL = 0.5  # seconds between looks while the launch's last trials run in other workers
GRACE = 2.0  # seconds a worker has to end on its own after Ctrl-C before it is told again
PRELOAD = ["torch._dynamo"]  # imported on an optimizer's first use: once in the fork server, not in every worker


def threads(jobs: int) -> int:
    """Each worker's torch threads: the cores shared out (at least 1), and no more than torch would use alone
    (``OMP_NUM_THREADS``, or the physical cores), so the workers together never use more threads than cores."""
    return max(1, min(torch.get_num_threads(), cores() // jobs))


class Turn:
    """The launch's turn to start a trial: an exclusive flock on the study folder's lock file."""

    def __init__(self, folder: str):
        self.descriptor = os.open(Path(folder) / LOCK, os.O_CREAT | os.O_RDWR, 0o666)
        self.held = False

    def take(self) -> None:
        fcntl.flock(self.descriptor, fcntl.LOCK_EX)
        self.held = True

    def release(self) -> None:
        if self.held:
            fcntl.flock(self.descriptor, fcntl.LOCK_UN)
            self.held = False

    def close(self) -> None:
        self.release()
        os.close(self.descriptor)


def lost_line(say: Callable[[str], None]) -> Callable[[optuna.Study, optuna.trial.FrozenTrial], None]:
    return lambda study, trial: say(f"trial {trial.number} failed: {LOST}; the study goes on without it")


def join(job: Job, on_lost: LostCallback) -> tuple:
    """The job's storage (calling `on_lost` for a trial whose worker is gone) and its study."""
    storage = open_storage(job.storage, on_lost)
    return storage, load_study(storage, job.storage, job.study, job.direction, job.fields["seed"], job.prune)


def work(job: Job, output: Output) -> None:
    """Run trials until this launch has `job.trials` that ended (or the deadline passes); each one's line on
    `output.say`, ``trials.csv`` and ``best.json`` rewritten after each."""
    count = threads(job.jobs)
    torch.set_num_threads(count)
    on_lost = lost_line(output.say)
    storage, study = join(job, on_lost)
    quiet = attrs.evolve(output, say=lambda text: None, note=lambda text: None, progress=False)
    objective, turn = Objective(job, storage, count, quiet), Turn(job.out)
    names = [dimension.name for dimension in job.dimensions]

    def finished(study: optuna.Study, trial) -> None:
        output.say(line(study, trial, job.metric))
        write(Path(job.out), study, job.storage, job.metric, names)

    try:
        while True:
            turn.take()
            fail_stale(study, storage, on_lost)
            ended, running = tally(study, job.launch)
            if ended >= job.trials or (job.deadline is not None and time.time() >= job.deadline):
                return
            if ended + running >= job.trials:  # the last trials run elsewhere: wait for them, or for their loss
                turn.release()
                time.sleep(POLL)
                continue
            study.optimize(lambda trial: objective(trial, turn), n_trials=1, catch=(TrialFailed,), callbacks=[finished])
            turn.release()
    finally:
        turn.close()


def spawn(job: Job, entry: Callable[[Job], None], warn: Callable[[str], None]) -> int:
    """Run `job.jobs` worker processes (`entry` in each) to their end; returns the exit status of the first that
    failed, or 0. A worker that dies leaves its trial failed at once, and the others go on."""
    context = multiprocessing.get_context("forkserver")  # workers forked from a fresh interpreter, not from this one
    context.set_forkserver_preload([entry.__module__, __name__, *PRELOAD])
    workers = {index: context.Process(target=entry, args=(attrs.evolve(job, worker=index),),
                                      name=f"mnist-tune worker {index}") for index in range(job.jobs)}
    for worker in workers.values():
        worker.start()
    status = 0
    try:
        live = dict(workers)
        while live:
            multiprocessing.connection.wait([worker.sentinel for worker in live.values()])
            for index, worker in [(index, worker) for index, worker in live.items() if not worker.is_alive()]:
                del live[index]
                if worker.exitcode != 0:
                    status = status or _lost_worker(job, index, worker.exitcode, warn)
    except KeyboardInterrupt:
        _stop(workers.values())
        raise
    return status


def _lost_worker(job: Job, index: int, code: int, warn: Callable[[str], None]) -> int:
    """Mark the running trials of a worker that ended badly failed; its exit status (128 + signal when killed)."""
    if code in (2, 130, 143):  # it said why itself (one line), or it was interrupted
        return code
    how = f"was killed ({signal.Signals(-code).name})" if code < 0 else f"ended with status {code}"
    study = join(job, lost_line(warn))[1]
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if launched_by(trial, job.launch, index):
            warn(f"worker {index} {how} during trial {trial.number}")
            fail(study, trial, lost_line(warn))
    return 128 - code if code < 0 else code


def _stop(workers) -> None:
    """After Ctrl-C or SIGTERM: each worker ends its trial as interrupted (its run resumable); told again if it
    has not after a moment (it got no signal of its own), then killed if it still hangs."""
    deadline = time.time() + GRACE
    for worker in workers:
        worker.join(max(0.0, deadline - time.time()))
    for worker in workers:
        if worker.is_alive():
            os.kill(worker.pid, signal.SIGINT)
    for worker in workers:
        worker.join(60)
        if worker.is_alive():
            worker.kill()
