"""The suite's thread budget: pytest-xdist's workers (``-n``) share the cores, one slice each, and so do the
processes a test starts (they inherit ``OMP_NUM_THREADS``); OpenMP threads spinning against each other made a few
competing processes 10-16x slower on 2 cores. And Ctrl-C heard however the suite was started: a shell starts a
background job (``pytest &``) with SIGINT ignored, which every process a test starts would inherit."""

import os
import signal


def pytest_configure(config):
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if not hasattr(config, "workerinput") and getattr(config.option, "numprocesses", None):
        return  # pytest-xdist's controller, which runs no test: its workers inherit its environment, so it sets none
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cores // workers)))
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
