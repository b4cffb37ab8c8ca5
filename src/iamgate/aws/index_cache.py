"""The compiled operation index, kept on disk so that a gateway is ready in moments.

Compiling every botocore model into the index (`OperationIndex.preload`) takes 5-10 s of
CPU, and a gateway answers 503 on /api/v1/health until it is done. The result depends only
on botocore's models and on iamgate's index code, so it is stored once per (botocore
version, Python version, index code and shipped legacy routes): a later start reads it back
in a fraction of a second, and a changed botocore or iamgate simply misses and compiles.

It is a pickle, so loading it runs whatever it says: it is read only from a directory and a
file of this user's own that nobody else may write (checked before reading), as the code
that loads it is. Its SHA-256 is checked before unpickling, so a torn or corrupt file is
ignored (and replaced), never half-read. Writes go to a temporary file in the same
directory, fsynced, then renamed over the old one: a reader sees the old file or the new
one, and several workers or gateways writing at once each write a whole file.

The directory: `IAMGATE_CACHE_DIR`, else `$XDG_CACHE_HOME/iamgate`, else `~/.cache/iamgate`;
`IAMGATE_CACHE_DIR=off` keeps nothing on disk.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import logging
import os
import pickle
import stat
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from importlib.resources import files
from pathlib import Path

import botocore
from botocore.loaders import create_loader

from iamgate.aws import operations
from iamgate.aws.operations import OperationIndex

log = logging.getLogger(__name__)
# Bump when what is pickled changes in a way the code digest below would not show.
FORMAT = 1
_MAGIC = b"iamgate-operation-index\n"
_DIGEST = hashlib.sha256().digest_size
STALE_SECONDS = 7 * 24 * 3600


def cache_dir(env: Mapping[str, str] = os.environ) -> Path | None:
    """Where the index is kept, or None (`IAMGATE_CACHE_DIR=off`)."""
    configured = env.get("IAMGATE_CACHE_DIR")
    if configured is not None:
        return None if configured.strip().lower() in ("", "off") else Path(configured)
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "iamgate"


def cache_key(search_paths: Iterable[str] = ()) -> str:
    """What the compiled index depends on: botocore's models (its version and where the
    loader looks for more), the Python that pickles it, and iamgate's index code and data."""
    h = hashlib.sha256()
    for part in (str(FORMAT), botocore.__version__, sys.version, *search_paths):
        h.update(part.encode() + b"\0")
    h.update(Path(operations.__file__).read_bytes())
    h.update(files("iamgate.aws").joinpath("data", operations.LEGACY_DATA).read_bytes())
    return h.hexdigest()


class CachedIndex(OperationIndex):
    """An index that, once fully compiled by `preload`, stores itself for the next start."""

    _store_in: Path | None = None

    def preload(self, signing_names: Iterable[str] | None = None) -> None:
        super().preload(signing_names)
        if signing_names is None and self._store_in is not None:
            target, self._store_in = self._store_in, None
            store(self, target)


def load_or_build(directory: Path | None) -> OperationIndex:
    """The index stored for this botocore and iamgate if there is a sound one (complete:
    `preload` has nothing to do), else one built now whose `preload` stores it."""
    if directory is None:
        return OperationIndex.build()
    path = directory / f"operations-{cache_key(create_loader().search_paths)[:32]}.pickle"
    index = load(path)
    if index is not None:
        return index
    built = CachedIndex.build()
    built._store_in = path
    return built


def load(path: Path) -> OperationIndex | None:
    """The index in `path`, or None if there is none, or it is not sound or not safe."""
    try:
        with path.open("rb") as handle:
            if not _ours(path.parent, os.fstat(handle.fileno())):
                log.warning("operation index cache %s ignored: others may write it", path)
                return None
            data = handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("operation index cache %s not read: %s", path, exc)
        return None
    head = len(_MAGIC) + _DIGEST
    payload = data[head:]
    if (
        data[: len(_MAGIC)] != _MAGIC
        or hashlib.sha256(payload).digest() != data[len(_MAGIC) : head]
    ):
        log.warning("operation index cache %s ignored: corrupt", path)
        return None
    enabled = gc.isenabled()
    gc.disable()  # ~300,000 objects: the collector would run dozens of times meanwhile
    try:
        index = pickle.loads(payload)  # noqa: S301 - our own file, checked above
    except Exception as exc:
        log.warning("operation index cache %s ignored: %s", path, exc)
        return None
    finally:
        if enabled:
            gc.enable()
    if not isinstance(index, OperationIndex) or not index.complete:
        log.warning("operation index cache %s ignored: not a complete index", path)
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # in use: not pruned by another version's start
    return index


def store(index: OperationIndex, path: Path) -> bool:
    """Write `index` to `path` whole or not at all; a failure is logged, never raised."""
    try:
        payload = pickle.dumps(index, protocol=pickle.HIGHEST_PROTOCOL)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _ours(path.parent, None):
            log.warning("operation index not cached: others may write %s", path.parent)
            return False
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".operations-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(_MAGIC + hashlib.sha256(payload).digest() + payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
    except Exception as exc:
        log.warning("operation index not cached in %s: %s", path, exc)
        return False
    _prune(path)
    return True


def _prune(kept: Path) -> None:
    """Indexes of other botocore or iamgate versions, unused for a while, go: each is MiBs.
    (Versions in use side by side keep theirs: a start that reads one touches it.)"""
    cutoff = time.time() - STALE_SECONDS
    for other in kept.parent.glob("operations-*.pickle"):
        with contextlib.suppress(OSError):
            if other != kept and other.stat().st_atime < cutoff and other.stat().st_mtime < cutoff:
                other.unlink()


def _ours(directory: Path, file: os.stat_result | None) -> bool:
    """The directory and the file belong to this user and no one else may write them."""
    for info in (os.stat(directory), file):
        if info is None:
            continue
        if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return False
    return True
