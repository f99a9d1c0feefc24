"""A real data set's splits as uint8 tensors: its files found (or downloaded into torchvision's layout), decoded once
and cached beside them or in the user's cache folder, rebuilt when the files change."""

import hashlib
import http.client
import json
import os
import socket
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor

from lightning_ref.sources import DataFileError, decode_split, find, is_cifar, source_of, split_names

DOWNLOAD_TIMEOUT_S = 60  # per socket operation, so a network that swallows packets fails instead of hanging
CACHE_VERSION = 2  # bump when the cached layout changes


class DataMissingError(RuntimeError):
    """The data set is not on disk and could not be downloaded; the message is one line saying how to provide it."""


def cache_folder(cls: type, root: str, cache_dir: str | None, files: dict[str, Path]) -> Path:
    """Where the decoded splits are cached: cache_dir when given; else root/manualnet-cache when the data set's
    `files` are in torchvision's layout under root and root is writable; else $XDG_CACHE_HOME/manualnet/<hash of
    root> (by default under ~/.cache), so that a read-only root or a folder of original files is never written to."""
    if cache_dir is not None:
        return Path(cache_dir)
    layout = Path(root, cls.base_folder if is_cifar(cls) else cls.__name__)
    if all(layout in source_of(f).parents for f in files.values()) and os.access(root, os.W_OK):
        return Path(root, "manualnet-cache")
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return home / "manualnet" / hashlib.sha1(str(Path(root).resolve()).encode()).hexdigest()[:12]


def find_files(cls: type, name: str, root: str, download: bool, downloads_on: bool) -> dict[str, Path]:
    """The files of data set `name` (lightning_ref.sources.find), downloaded into torchvision's layout first when
    they are missing or incomplete and `download`; DataMissingError when they are missing and can't be downloaded
    (`downloads_on`: whether the data module downloads at all, for the message)."""
    try:
        files = find(cls, root)
    except DataFileError:
        if not download:
            raise
        files = None
    if files is None and download:
        try:
            with _socket_timeout(DOWNLOAD_TIMEOUT_S):
                cls(root, train=True, download=True)
        except (OSError, RuntimeError, http.client.HTTPException) as e:
            raise missing(cls, name, root, f"could not be downloaded ({' '.join(str(e).split())})") from e
        files = find(cls, root)
    if files is None:
        if downloads_on:
            raise missing(cls, name, root, "setup() does not download (call prepare_data() first)")
        raise missing(cls, name, root, "downloads are off (download=False)")
    return files


def load_split(cls: type, files: dict[str, Path], train: bool, num_classes: int, cache: Path) -> tuple[Tensor, Tensor]:
    """uint8 images (N,C,H,W) and int64 labels (N,) of one split: from the `cache` file when it matches the source
    files (their paths, sizes and modification times), else decoded (and checked) from them and cached."""
    key = _files_key(sorted({source_of(f) for n, f in files.items() if n in split_names(cls, train)}))
    if cache.exists():
        try:
            saved = torch.load(cache, weights_only=True)
            if saved["key"] == key:
                return saved["x"], saved["y"]
        except Exception as e:  # a foreign or damaged cache is rebuilt, never trusted
            warnings.warn(f"ignoring unreadable cache {cache} ({type(e).__name__}: {e}); rebuilding it", stacklevel=2)
    x, y = decode_split(cls, files, train, num_classes)
    _save_atomic({"key": key, "x": x, "y": y}, cache)
    return x, y


def missing(cls: type, name: str, root: str, reason: str) -> DataMissingError:
    """The one-line error for a data set that is not on disk: where it was looked for, why, and where to get it."""
    folder = os.path.join(root, cls.base_folder if is_cifar(cls) else os.path.join(cls.__name__, "raw"))
    if is_cifar(cls):
        how = f"download {cls.url} and extract it into {root}{os.sep} (or leave the .tar.gz there)"
    else:
        files = ", ".join(name for name, _ in cls.resources)
        how = f"download {files} from {cls.mirrors[0]} into {root}{os.sep} (.gz or unpacked)"
    return DataMissingError(
        f"{name} not found at {folder} or in {root} and {reason}: {how}, or point root (--data.root) at a folder "
        "that has it"
    )


def _files_key(files: list[Path]) -> str:
    """Identity of the source files: (absolute path, size, mtime) each."""
    stats = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    return json.dumps({"version": CACHE_VERSION, "files": stats})


def _save_atomic(obj: dict, path: Path) -> None:
    """torch.save into a temporary file beside `path`, then rename over it: readers see the old file or the new one,
    never a half-written one. A cache that can't be written (read-only root) only costs a warning."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    except OSError as e:
        warnings.warn(f"not caching {path} ({e})", stacklevel=3)
        return
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException as e:
        os.unlink(tmp)
        if not isinstance(e, OSError):
            raise
        warnings.warn(f"not caching {path} ({e})", stacklevel=3)


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Give urllib's sockets (torchvision downloads with no timeout) a timeout while the block runs."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)
