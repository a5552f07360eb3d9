"""Fetching MNIST and Fashion-MNIST with torchvision's own download code, a bounded wait and a mirror setting.

torchvision waits on a silent server forever. Here every network operation has a timeout
(``MNIST_TRAINER_TIMEOUT`` seconds, default 30) and the whole attempt a limit
(``MNIST_TRAINER_DOWNLOAD_LIMIT``, default 600); ``MNIST_TRAINER_MIRROR=URL`` is tried before
torchvision's mirrors, and every file's checksum is verified whatever the mirror. Files are
fetched into a hidden folder and moved into the cache only once verified, so an interrupted
or failed download never looks cached.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import sys
import time
import urllib.error
from pathlib import Path

from .errors import UserError

TIMEOUT, LIMIT = 30.0, 600.0
SIZES = {"mnist": "about 11 MiB", "fashion-mnist": "about 30 MiB"}


def fetch(name: str, raw: Path) -> None:
    """Download `name`'s four IDX files (gzipped) into `raw`; a `UserError` that says why when it cannot."""
    from torchvision import datasets
    from torchvision.datasets import utils

    source = datasets.FashionMNIST if name == "fashion-mnist" else datasets.MNIST
    mirrors = [mirror if mirror.endswith("/") else f"{mirror}/"
               for mirror in [os.environ.get("MNIST_TRAINER_MIRROR", ""), *source.mirrors] if mirror]
    timeout, limit = _seconds("MNIST_TRAINER_TIMEOUT", TIMEOUT), _seconds("MNIST_TRAINER_DOWNLOAD_LIMIT", LIMIT)
    partial = raw.parent / ".partial"
    print(f"downloading {name} ({SIZES[name]}, {len(source.resources)} files) from {mirrors[0]} into {raw}", file=sys.stderr)
    deadline, previous, bar = time.monotonic() + limit, socket.getdefaulttimeout(), utils.tqdm
    utils.tqdm = functools.partial(bar, disable=not sys.stderr.isatty())  # torchvision's progress bar: on a terminal only
    socket.setdefaulttimeout(timeout)
    try:
        partial.mkdir(parents=True, exist_ok=True)
        for filename, md5 in source.resources:
            if (raw / filename).is_file():  # verified by an earlier, interrupted download
                continue
            causes = []
            for mirror in mirrors:
                if time.monotonic() > deadline:
                    raise UserError(f"downloading {name} took more than {limit:g} s (MNIST_TRAINER_DOWNLOAD_LIMIT); "
                                    f"set a mirror with MNIST_TRAINER_MIRROR or use --data-dir")
                try:
                    utils.download_url(mirror + filename, str(partial), filename=filename, md5=md5)
                    break
                except Exception as error:  # noqa: BLE001 - every failure of one mirror is a reason to try the next
                    causes.append(f"{mirror}{filename}: {_cause(error, timeout)}")
                    (partial / filename).unlink(missing_ok=True)
            else:
                raise UserError(f"cannot download {name}: {'; '.join(causes)}")
            raw.mkdir(parents=True, exist_ok=True)
            os.replace(partial / filename, raw / filename)
    except KeyboardInterrupt:
        print(f"download of {name} interrupted; no partial file is kept", file=sys.stderr)
        raise
    except OSError as error:
        raise UserError(f"cannot download {name} into {raw}: {error.strerror or error}") from None
    finally:
        socket.setdefaulttimeout(previous)
        utils.tqdm = bar
        shutil.rmtree(partial, ignore_errors=True)


def _cause(error: BaseException, timeout: float) -> str:
    """What went wrong with one mirror, in a few words."""
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return f"timed out after {timeout:g} s (MNIST_TRAINER_TIMEOUT)"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, RuntimeError) and "corrupted" in str(error):
        return "checksum mismatch: the file is not the one torchvision expects"
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    return str(reason) or type(reason).__name__


def _seconds(variable: str, default: float) -> float:
    text = os.environ.get(variable)
    try:
        value = float(text) if text else default
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UserError(f"{variable}={text!r} is not a number of seconds above 0")
    return value
