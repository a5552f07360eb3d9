"""The processes a run trains on: one, or several launched by ``torchrun`` (``torch.distributed``).

Under torchrun every process draws the same seeded permutation and takes its own share of
each global mini-batch; `DistributedDataParallel` averages the gradients and batch norm uses
the statistics of the global batch (see `syncbn`), so the mathematics stays that of one
process. Rank 0 alone prints and records. Every collective has a timeout, and a rank that
fails leaves its reason in the rendezvous store, so the others name it instead of hanging
or guessing.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import hashlib
import os
import signal
import socket
import time
from typing import Any, Callable, Iterator, TypeVar

import attrs
import torch
import torch.distributed as dist

from .devices import describe_device, resolve_device
from .environment import bounded, cores
from .errors import UserError, one_line

T = TypeVar("T")
TIMEOUT_ENV = "MNIST_TRAINER_DIST_TIMEOUT"  # seconds any collective may wait for the other processes
DEFAULT_TIMEOUT = 300
BACKENDS = ("auto", "gloo", "nccl")
FAILURE = "mnist_trainer/failure"


class RankFailed(UserError):
    """Another process of the run failed; this one stops with its reason."""


@attrs.frozen
class World:
    """This process's place in the run: `rank` of `size` processes, on `device`, joined over `backend`."""

    device: torch.device = torch.device("cpu")
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None
    store: Any = attrs.field(default=None, repr=False, eq=False)

    @property
    def leader(self) -> bool:
        """Rank 0: the process that prints and records."""
        return self.rank == 0

    def share(self, count: int) -> tuple[int, int]:
        """This rank's contiguous part ``[start, stop)`` of `count` items; earlier ranks take one more when it does
        not divide."""
        base, extra = divmod(count, self.size)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (self.rank < extra)

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean of `tensor` over the ranks (itself on one process)."""
        if self.size == 1:
            return tensor
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor / self.size

    def gather(self, part: torch.Tensor, count: int) -> torch.Tensor:
        """Every rank's `share` of `count` rows, in rank order: the whole (itself on one process)."""
        if self.size == 1:
            return part
        longest = -(-count // self.size)
        padded = part.new_zeros((longest, *part.shape[1:]))
        padded[: len(part)] = part
        parts = [torch.empty_like(padded) for _ in range(self.size)]
        dist.all_gather(parts, padded)
        lengths = [stop - start for start, stop in (attrs.evolve(self, rank=rank).share(count)
                                                    for rank in range(self.size))]
        return torch.cat([whole[:length] for whole, length in zip(parts, lengths)])

    def everyone(self, value: T) -> list[T]:
        """Each rank's `value` (plain data), in rank order."""
        if self.size == 1:
            return [value]
        values: list = [None] * self.size
        dist.all_gather_object(values, value)
        return values

    def from_leader(self, read: Callable[[], T]) -> T:
        """Rank 0's `read()`, on every rank; when it raises, rank 0 raises it and the others a `RankFailed`."""
        return self._leader(read, share=True)

    def leader_does(self, action: Callable[[], T]) -> T | None:
        """`action()` on rank 0 alone: its value there, None elsewhere; when it raises, the others raise a
        `RankFailed`."""
        return self._leader(action, share=False)

    def _leader(self, action: Callable[[], T], share: bool) -> T | None:
        if self.size == 1:
            return action()
        box: list = [None]
        if self.leader:
            try:
                value = action()
            except Exception as error:
                box[0] = ("error", one_line(error))
                dist.broadcast_object_list(box, src=0)
                raise
            box[0] = ("ok", value if share else None)
        dist.broadcast_object_list(box, src=0)
        kind, shared = box[0]
        if kind == "error":
            raise RankFailed(f"rank {self.rank}: stopped, because rank 0 failed: {shared}")
        return value if self.leader else shared

    def failed(self, message: str) -> None:
        """Leave this rank's failure where the other ranks look for the cause of theirs (the first one is kept)."""
        if self.store is None:
            return
        with contextlib.suppress(Exception):
            if self.store.add(f"{FAILURE}/count", 1) == 1:
                self.store.set(FAILURE, f"rank {self.rank} failed: {message}")

    def cause(self) -> str | None:
        """The first failure another rank left, or None. A failing rank leaves it before its connections close
        (and so before torchrun stops the others), so it is there when a peer looks, unless that rank was killed."""
        if self.store is None:
            return None
        with contextlib.suppress(Exception, KeyboardInterrupt):  # torchrun's SIGTERM may come meanwhile
            if self.store.check([FAILURE]):
                text = self.store.get(FAILURE).decode()
                return None if text.startswith(f"rank {self.rank} ") else text
        return None

    def settle(self) -> None:
        """Wait until every process has ended its run, so none leaves while another still talks to it.

        Only after an ending every rank reaches (completed, stopped, diverged): an interrupted rank
        makes no further collective, or it would wait on one its peer never joins.
        """
        if self.size == 1:
            return
        try:
            dist.barrier()
        except (Exception, KeyboardInterrupt) as error:  # torchrun's SIGTERM, when a peer that failed is gone first
            cause = explain(self, error)
            if cause is error:
                raise
            raise cause from None

    def describe(self) -> dict:
        """The record of the processes: world size, backend and every rank's device (gathered from all ranks)."""
        return {"size": self.size, "backend": self.backend, "devices": self.everyone(describe_device(self.device))}


def launched() -> bool:
    """Whether this process was started by torchrun (or another launcher that sets torch's environment)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


@contextlib.contextmanager
def joined(device_text: str, backend: str = "auto", resuming: bool = False) -> Iterator[World]:
    """This process's `World` for the length of a run: joined to the others under torchrun, alone otherwise.

    `resuming`: the device is the record's, so a run recorded on ``cuda:N`` resumes on each process's own GPU.
    """
    if not launched() or int(os.environ["WORLD_SIZE"]) == 1:
        device = resolve_device(device_text)
        if backend != "auto":
            _backend(backend, device)  # a backend that could not work is refused on one process too
        yield World(device=device)
        return
    world = _join(device_text.split(":")[0] if resuming else device_text, backend)
    try:
        yield world
    except Exception as error:
        if not isinstance(error, RankFailed):
            world.failed(one_line(error))
        raise
    finally:
        for stop in (signal.SIGINT, signal.SIGTERM):  # out of the run: torchrun stopping the others must not replace
            signal.signal(stop, signal.SIG_IGN)        # this process's own ending with an interrupt
        gc.collect()  # the replica's pending gloo work goes now, not in the interpreter's teardown (an abort there)
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def explain(world: World, error: BaseException) -> BaseException:
    """`error` as another rank's failure when one caused it (a peer gone mid-collective, or torchrun's SIGTERM)."""
    if world.size == 1 or isinstance(error, UserError):  # this rank's own mistake, a plugin's among them
        return error
    cause = world.cause()
    if cause:
        return RankFailed(f"rank {world.rank}: stopped, because {cause}")
    if isinstance(error, dist.DistError) or any(word in str(error) for word in ("gloo", "NCCL")):
        detail = str(error).strip().splitlines()[0].split("] ", 1)[-1].split(". ")[0]
        return RankFailed(f"rank {world.rank}: stopped, because a collective with the other processes failed "
                          f"({detail}): one ended without saying why (see its output, or the launcher's), or made a "
                          "collective the others did not")
    return error


def _join(device_text: str, backend: str) -> World:
    rank, size, local_rank = (int(os.environ.get(name, "0")) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    device = resolve_device(device_text)
    if device.type == "cuda":
        if device.index is not None:
            raise UserError(f"--device {device_text}: under torchrun each process uses cuda:LOCAL_RANK; "
                            "give --device cuda or auto")
        if local_rank >= torch.cuda.device_count():
            raise UserError(f"rank {rank} has LOCAL_RANK {local_rank}, but this machine has "
                            f"{torch.cuda.device_count()} CUDA device(s); start at most that many processes per node "
                            "(--nproc-per-node)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    chosen = _backend(backend, device)
    timeout = _timeout()
    address, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    if not address or not port:
        raise UserError("WORLD_SIZE is set but MASTER_ADDR/MASTER_PORT are not: launch with torchrun "
                        "(torchrun --nproc-per-node N -m mnist_trainer ...)")
    try:
        _reachable(address, int(port), rank, timeout)
        store = _store(address, int(port), rank, size, timeout)
        dist.init_process_group(chosen, store=dist.PrefixStore("default_pg", store), rank=rank, world_size=size,
                                timeout=timeout, **({"device_id": device} if device.type == "cuda" else {}))
    except (RuntimeError, ValueError) as error:  # DistStoreError and DistNetworkError are RuntimeErrors
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"rank {rank}: cannot join the other {size - 1} process(es) at {address}:{port} within "
                        f"{timeout.total_seconds():g} s ({first}); check the rendezvous endpoint and that every node "
                        "was started") from None
    return World(device=device, rank=rank, size=size, local_rank=local_rank, backend=chosen, store=store)


def _reachable(address: str, port: int, rank: int, timeout: datetime.timedelta) -> None:
    """Wait until the rendezvous endpoint accepts connections, so an unreachable one is this one line, not c10d's
    log."""
    if rank == 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return  # rank 0 serves the store itself
    deadline = time.monotonic() + timeout.total_seconds()
    while True:
        try:
            socket.create_connection((address, port), timeout=1).close()
            return
        except OSError as error:
            if time.monotonic() >= deadline:
                raise RuntimeError(error.strerror or str(error)) from None
            time.sleep(0.2)


def _store(address: str, port: int, rank: int, size: int, timeout: datetime.timedelta):
    """The rendezvous store: torchrun's own agent store when it offers one (as init_process_group would use it)."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        store = dist.TCPStore(address, port, size, False, timeout)
        return dist.PrefixStore(f"/worker/attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)
    return dist.TCPStore(address, port, size, rank == 0, timeout)


def _backend(backend: str, device: torch.device) -> str:
    if backend not in BACKENDS:
        raise UserError(f"invalid --backend {backend!r}: use {', '.join(BACKENDS)}")
    chosen = ("nccl" if device.type == "cuda" else "gloo") if backend == "auto" else backend
    if chosen == "nccl" and device.type != "cuda":
        raise UserError(f"--backend nccl needs CUDA devices, and this run trains on {device.type}; "
                        "use --backend gloo (or auto)")
    if chosen == "nccl" and not dist.is_nccl_available():
        raise UserError("--backend nccl is not available in this build of torch; use --backend gloo (or auto)")
    if chosen == "gloo" and not dist.is_gloo_available():
        raise UserError("--backend gloo is not available in this build of torch; use --backend nccl on CUDA")
    return chosen


def _timeout() -> datetime.timedelta:
    return datetime.timedelta(seconds=bounded(TIMEOUT_ENV, DEFAULT_TIMEOUT))


def replicate(network: torch.nn.Module, world: World) -> torch.nn.Module:
    """What each step calls: `network` itself on one process, else its `DistributedDataParallel` replica."""
    if world.size == 1:
        return network
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(network, device_ids=[world.device.index] if world.device.type == "cuda" else None)


def follower_seeds(seed: int, rank: int, epoch: int) -> tuple[int, int]:
    """The seeds a rank above 0 draws dropout masks and transforms from in `epoch`: its own, and the same after a
    resume."""
    derived = hashlib.sha256(f"{seed}:{rank}:{epoch}".encode()).digest()
    return int.from_bytes(derived[:8], "big") >> 1, int.from_bytes(derived[8:16], "big") >> 1


def launch(nproc: int, argv: list[str]) -> int:
    """Run ``mnist-run`` with `argv` on `nproc` processes through ``torch.distributed.run`` (torchrun); their exit
    status.

    Each process prints its own errors; the launcher adds nothing but its exit status, which is
    the first failed process's (128 + the signal for one killed by a signal). The cores are
    shared out among the processes (``OMP_NUM_THREADS``), unless set.
    """
    import logging

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    if launched():
        raise UserError("--nproc starts torchrun itself; under torchrun, leave --nproc out")
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cores() // nproc)))
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # each process says what went wrong
    try:
        run(get_args_parser().parse_args(["--standalone", f"--nproc-per-node={nproc}", "-m", "mnist_trainer", *argv]))
    except ChildFailedError as failed:
        code = failed.get_first_failure()[1].exitcode
        return code if code > 0 else 128 - code
    except SignalException as stopped:
        return 128 + stopped.sigval
    return 0
