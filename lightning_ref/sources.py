"""A data set's original files: where they are under data.root, checking them, decoding them into tensors.

Where (the first place that has every file of the data set wins):

    MNIST, Fashion-MNIST   root/<MNIST|FashionMNIST>/raw (torchvision's layout), else root itself; each of
                           {train,t10k}-{images-idx3,labels-idx1}-ubyte unpacked or as .gz
    CIFAR-10               root/cifar-10-batches-py (torchvision's layout), else root itself (the extracted batches
                           folder), else root/cifar-10-python.tar.gz, read without extracting it
    CIFAR-100              the same with cifar-100-python, its files train and test, cifar-100-python.tar.gz

A place that holds some but not all of the files is an error (DataFileError) naming the missing ones.

Checks, before a file is used:
    CIFAR batches          the md5 of torchvision's table (the files are always the original ones), then the content:
                           a dict whose `data` is uint8 (N, 3072) and whose N labels are in range
    idx files              no md5: their .gz md5 identifies one compression of the data, and a recompressed copy
                           (Debian's dataset-fashion-mnist) differs. The content instead: the magic number (0x0803
                           images, 0x0801 labels), 28x28 images, the count in the header against the bytes that follow
                           (a truncated or padded file fails), images and labels of a split equal in number, labels
                           < 10. gzip's own CRC-32 covers the bytes of a .gz.
"""

import gzip
import hashlib
import io
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torchvision import datasets

IDX_IMAGES, IDX_LABELS = 0x0803, 0x0801  # idx magic: 0x08 = unsigned byte, then the number of dimensions
SPLIT_PREFIX = {True: "train", False: "t10k"}


class DataFileError(ValueError):
    """A data set's files are incomplete, unreadable or not the data set's; the message is one line naming the file."""


# ---- where ---------------------------------------------------------------------------------------------------------


def is_cifar(cls: type) -> bool:
    """CIFAR-10 or CIFAR-100 (torchvision's CIFAR100 subclasses CIFAR10)."""
    return issubclass(cls, datasets.CIFAR10)


def split_names(cls: type, train: bool) -> list[str]:
    """The file names of one split, as the data set's authors ship them (unpacked for idx)."""
    if is_cifar(cls):
        return [name for name, _ in (cls.train_list if train else cls.test_list)]
    return [f"{SPLIT_PREFIX[train]}-images-idx3-ubyte", f"{SPLIT_PREFIX[train]}-labels-idx1-ubyte"]


def find(cls: type, root: str) -> dict[str, Path] | None:
    """Each file name of the data set (both splits) -> the file to read (an idx file may be its .gz; a CIFAR batch
    inside the archive is archive.tar.gz/<folder>/<name>). None when no place under root has any of them;
    DataFileError when the first place that has some lacks others."""
    names = split_names(cls, True) + split_names(cls, False)
    folder = Path(root, cls.base_folder) if is_cifar(cls) else Path(root, cls.__name__, "raw")
    for place in (folder, Path(root)):
        found = {name: _file_in(place, name, gz=not is_cifar(cls)) for name in names}
        have = {name: path for name, path in found.items() if path is not None}
        if len(have) == len(names):
            return have
        if have:
            missing = ", ".join(n for n in names if n not in have)
            raise DataFileError(f"root: {place} has some of the {cls.__name__} files but not {missing}")
    if is_cifar(cls) and Path(root, cls.filename).is_file():
        archive = Path(root, cls.filename)
        return {name: archive / cls.base_folder / name for name in names}
    return None


def _file_in(folder: Path, name: str, gz: bool) -> Path | None:
    for path in (folder / name, folder / f"{name}.gz") if gz else (folder / name,):
        if path.is_file():
            return path
    return None


def source_of(path: Path) -> Path:
    """The file on disk that `path` (from find) is read from: itself, or the archive that holds it."""
    for parent in path.parents:
        if parent.name.endswith(".tar.gz"):
            return parent
    return path


# ---- decoding and checking -----------------------------------------------------------------------------------------


def decode_split(cls: type, files: dict[str, Path], train: bool, num_classes: int) -> tuple[Tensor, Tensor]:
    """uint8 images (N,C,H,W) and int64 labels (N,) of one split, from the files find() returned, checked as the
    module docstring says; DataFileError naming the file when a check fails."""
    names = split_names(cls, train)
    if is_cifar(cls):
        parts = [_cifar_batch(cls, files[name], name, num_classes) for name in names]
        return torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])
    x = _idx(files[names[0]], IDX_IMAGES, (28, 28))  # (N,28,28)
    y = _idx(files[names[1]], IDX_LABELS, ())  # (N,)
    if len(x) != len(y):
        raise DataFileError(
            f"root: {files[names[0]]} holds {len(x)} images but {files[names[1]]} holds {len(y)} labels "
            f"(expected one label per image)"
        )
    if len(y) and int(y.max()) >= num_classes:
        raise DataFileError(f"root: {files[names[1]]} has label {int(y.max())}, expected labels 0..{num_classes - 1}")
    return x.unsqueeze(1).contiguous(), y.to(torch.int64)


def _read(path: Path) -> bytes:
    """The bytes of path, unpacked when it is a .gz, or of the archive member it names."""
    try:
        if source_of(path) != path:
            archive = source_of(path)
            with tarfile.open(archive, "r:gz") as tar:
                member = tar.extractfile(path.relative_to(archive).as_posix())
                if member is None:
                    raise KeyError(path.name)
                return member.read()
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except KeyError:
        raise DataFileError(f"root: {source_of(path)} has no member {path.relative_to(source_of(path))}") from None
    except (OSError, EOFError, zlib.error, tarfile.TarError) as e:
        raise DataFileError(f"root: {source_of(path)} is not readable ({type(e).__name__}: {e})") from None


def _idx(path: Path, magic: int, item_shape: tuple[int, ...]) -> Tensor:
    """The uint8 array of an idx file: magic (big-endian int32), one int32 size per dimension, the values."""
    data = _read(path)
    dims = len(item_shape) + 1
    header = 4 * (1 + dims)
    kind = "image" if magic == IDX_IMAGES else "label"
    if len(data) < header:
        raise DataFileError(f"root: {path} is not an idx {kind} file: {len(data)} bytes, shorter than its header")
    words = np.frombuffer(data[:header], dtype=">u4")
    if words[0] != magic:
        raise DataFileError(
            f"root: {path} is not an idx {kind} file: magic number {words[0]:#06x}, expected {magic:#06x}"
        )
    n, shape = int(words[1]), tuple(int(s) for s in words[2:])
    if shape != item_shape:
        raise DataFileError(f"root: {path} holds {'x'.join(map(str, shape))} images, expected 28x28")
    expected = header + n * int(np.prod(item_shape, dtype=np.int64))
    if len(data) != expected:
        raise DataFileError(
            f"root: {path} is {len(data)} bytes, expected {expected} for the {n} {kind}s its header declares "
            f"({'truncated' if len(data) < expected else 'extra bytes'})"
        )
    return torch.frombuffer(bytearray(data[header:]), dtype=torch.uint8).view(n, *item_shape)


def _cifar_batch(cls: type, path: Path, name: str, num_classes: int) -> tuple[Tensor, Tensor]:
    """Images (N,3,32,32) and labels (N,) of one pickled CIFAR batch, its md5 checked against torchvision's."""
    data = _read(path)
    expected = dict(cls.train_list + cls.test_list)[name]
    check_md5(path, data, expected)
    try:
        batch = pickle.load(io.BytesIO(data), encoding="latin1")
    except Exception as e:
        raise DataFileError(f"root: {path} is not a pickled CIFAR batch ({type(e).__name__}: {e})") from None
    key = "labels" if cls is datasets.CIFAR10 else "fine_labels"
    x = batch.get("data") if isinstance(batch, dict) else None
    if not (isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 2 and x.shape[1] == 3072):
        got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise DataFileError(f"root: {path} is not a CIFAR batch: `data` is {got}, expected uint8 (N, 3072)")
    y = np.asarray(batch.get(key, []), dtype=np.int64)
    if y.shape != (len(x),) or (len(y) and not 0 <= y.min() <= y.max() < num_classes):
        raise DataFileError(f"root: {path} is not a CIFAR batch: expected {len(x)} `{key}` in 0..{num_classes - 1}")
    # Each row is 1024 R, then 1024 G, then 1024 B values, row-major: (N, 3072) -> (N,3,32,32).
    return torch.from_numpy(x.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(y)


def check_md5(path: Path, data: bytes, expected: str) -> None:
    """DataFileError unless md5(data) is `expected` (torchvision's value for the file)."""
    got = hashlib.md5(data, usedforsecurity=False).hexdigest()
    if got != expected:
        raise DataFileError(f"root: {path} is not the data set's file: md5 {got}, expected {expected}")
