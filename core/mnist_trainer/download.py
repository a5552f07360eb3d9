"""Downloading a dataset's files with a bounded wait, verified checksums and a mirror setting.

urllib waits on a silent server forever, and a server trickling bytes keeps every read short of
any socket timeout. Here every network operation has a timeout (``MNIST_TRAINER_TIMEOUT`` seconds,
default 30) and the whole download a limit (``MNIST_TRAINER_DOWNLOAD_LIMIT``, default 600) checked
after every chunk read; ``MNIST_TRAINER_MIRROR=URL`` is tried before the dataset's own mirrors, and
every file's MD5 is verified whatever the mirror. Files are fetched into a hidden folder and moved
into the cache only once verified, so an interrupted or failed download never looks cached.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Sequence

from .environment import bounded
from .errors import UserError

TIMEOUT, LIMIT = 30.0, 600.0
CHUNK = 64 * 1024  # the most one read returns; the limit is checked after each
SIZES = {"mnist": "about 11 MiB", "fashion-mnist": "about 30 MiB"}


def default_data_dir() -> Path:
    """Where datasets are downloaded and cached when ``--data-dir`` is not given: ``$MNIST_TRAINER_DATA``, else
    ``~/.cache/mnist-trainer``."""
    configured = os.environ.get("MNIST_TRAINER_DATA")
    if configured and Path(configured).exists() and not Path(configured).is_dir():
        raise UserError(f"MNIST_TRAINER_DATA={configured} is a file; point it at a folder (or unset it)")
    return Path(configured or Path.home() / ".cache" / "mnist-trainer")


def fetch(name: str, raw: Path) -> None:
    """Download MNIST's or Fashion-MNIST's four IDX files (gzipped) from torchvision's mirrors into `raw`."""
    from torchvision import datasets

    source = datasets.FashionMNIST if name == "fashion-mnist" else datasets.MNIST
    fetch_files(name, source.resources, source.mirrors, raw, SIZES[name])


def fetch_files(name: str, resources: Sequence[tuple[str, str]], mirrors: Sequence[str], raw: Path,
                size_text: str) -> None:
    """Download each ``(filename, md5)`` of `resources` into the folder `raw`: the core's download, for any dataset.

    Each file is asked of ``MNIST_TRAINER_MIRROR`` (when set), then of each of `mirrors` (base URLs, to
    which the file name is appended) until one serves it with its MD5. It is read into a hidden folder
    beside `raw` and moved into `raw` only once verified, so a file already in `raw` is taken as
    verified and not asked again. Each network operation waits at most ``MNIST_TRAINER_TIMEOUT`` s and
    the whole call at most ``MNIST_TRAINER_DOWNLOAD_LIMIT`` s. One line on stderr says what is fetched
    (`name`, and `size_text` such as "about 11 MiB"), from where and into which folder; a progress bar
    shows on a terminal only, so stdout stays clean.

    Raises `UserError`, one line, when some file cannot be had from any mirror (naming each mirror's
    reason) or the limit passes. Ctrl-C ends the download at once and keeps no partial file.
    """
    timeout, limit = bounded("MNIST_TRAINER_TIMEOUT", TIMEOUT), bounded("MNIST_TRAINER_DOWNLOAD_LIMIT", LIMIT)
    bases = [mirror if mirror.endswith("/") else f"{mirror}/"
             for mirror in [os.environ.get("MNIST_TRAINER_MIRROR", ""), *mirrors] if mirror]
    if not bases:
        raise UserError(f"no mirror to download {name} from: set MNIST_TRAINER_MIRROR to a URL serving its files")
    partial = raw.with_name(f".{raw.name}.partial")
    print(f"downloading {name} ({size_text}, {len(resources)} files) from {bases[0]} into {raw}", file=sys.stderr)
    deadline = _Deadline(name, limit)
    try:
        partial.mkdir(parents=True, exist_ok=True)
        for filename, md5 in resources:
            if not (raw / filename).is_file():
                _fetch_one(name, filename, md5, bases, partial, timeout, deadline)
                raw.mkdir(parents=True, exist_ok=True)
                os.replace(partial / filename, raw / filename)
    except KeyboardInterrupt:
        print(f"download of {name} interrupted; no partial file is kept", file=sys.stderr)
        raise
    except OSError as error:
        raise UserError(f"cannot download {name} into {raw}: {error.strerror or error}") from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)


class _Deadline:
    """When the whole download must be over; passing it is the one-line ``MNIST_TRAINER_DOWNLOAD_LIMIT`` error."""

    def __init__(self, name: str, limit: float):
        self.name, self.limit, self.end = name, limit, time.monotonic() + limit

    def left(self) -> float:
        self.check()
        return self.end - time.monotonic()

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise UserError(f"downloading {self.name} took more than {self.limit:g} s (MNIST_TRAINER_DOWNLOAD_LIMIT); "
                            "set a mirror with MNIST_TRAINER_MIRROR or use --data-dir")


def _fetch_one(name: str, filename: str, md5: str, bases: list[str], partial: Path, timeout: float,
               deadline: _Deadline) -> None:
    """Fetch `filename` into `partial` from the first mirror serving it intact; else one line with each one's reason."""
    from torchvision.datasets.utils import calculate_md5

    causes = []
    for base in bases:
        try:
            _copy(base + filename, partial / filename, min(timeout, deadline.left()), deadline)
        except (OSError, ValueError, http.client.HTTPException) as error:  # each is a reason to try the next mirror
            deadline.check()  # a wait the limit cut short is the limit's error
            causes.append(f"{base}{filename}: {_cause(error, timeout)}")
            continue
        got = calculate_md5(partial / filename)
        if got == md5:
            return
        causes.append(f"{base}{filename}: checksum mismatch (its MD5 is {got}, not {md5})")
    raise UserError(f"cannot download {name}: {'; '.join(causes)}")


def _copy(url: str, target: Path, timeout: float, deadline: _Deadline) -> None:
    """Copy `url` into `target` chunk by chunk, each socket operation waiting at most `timeout` s and the deadline
    checked after every chunk: a trickling server never lets one read time out."""
    from torchvision.datasets.utils import USER_AGENT, tqdm

    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with (urllib.request.urlopen(request, timeout=timeout) as response, target.open("wb") as file,
          tqdm(total=response.length, unit="B", unit_scale=True, desc=target.name,
               disable=not sys.stderr.isatty()) as bar):
        while chunk := response.read1(CHUNK):  # read1: what one receive gives, where read would wait for all CHUNK
            file.write(chunk)
            bar.update(len(chunk))
            deadline.check()


def _cause(error: BaseException, timeout: float) -> str:
    """What went wrong with one mirror, in a few words."""
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return f"timed out after {timeout:g} s (MNIST_TRAINER_TIMEOUT)"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    return str(reason) or type(reason).__name__
