"""A data set's original files (lightning_ref.sources, through ImageDataModule): found in torchvision's layout or in a
folder that holds them (idx files .gz or unpacked; the CIFAR batches folder or its .tar.gz) and decoded to exactly the
arrays written there; a root that is only ever read (the cache goes elsewhere); and every bad file refused with one
line naming it, before any decoding is cached or any training starts."""

import gzip
import hashlib
import os
import pickle
import sys
from pathlib import Path

import pytest
import torch
from conftest import fake_images, tar_cifar, write_cifar, write_idx

import lightning_ref.cache
from lightning_ref.cli import main
from lightning_ref.data import ImageDataModule
from lightning_ref.sources import DataFileError


def loaded(root, dataset, **kw) -> ImageDataModule:
    dm = ImageDataModule(dataset, root=str(root), download=False, val_size=20, batch_size=16, **kw)
    dm.prepare_data()
    dm.setup()
    return dm


def assert_holds(dm: ImageDataModule, x_train, y_train, x_test, y_test) -> None:
    """The module's splits are the arrays written: the test split exactly, training + validation as a set."""
    assert torch.equal(dm.x_test, torch.from_numpy(x_test)) and torch.equal(dm.y_test, torch.from_numpy(y_test))
    train = torch.cat([dm.x_train, dm.x_val]).flatten(1).numpy()
    assert sorted(map(bytes, train)) == sorted(map(bytes, x_train.reshape(len(x_train), -1)))


def tree(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Every path under folder with its size, mtime and sha256 (folders too): what 'untouched' means."""
    out = {}
    for p in sorted(folder.rglob("*")):
        data = p.read_bytes() if p.is_file() else b""
        out[str(p)] = (p.stat().st_size if p.is_file() else 0, p.stat().st_mtime_ns, hashlib.sha256(data).hexdigest())
    return out


def mnist_arrays(seed=5):
    x, y = fake_images(120, (1, 28, 28), 10, seed=seed)
    return x[:90], y[:90], x[90:], y[90:]


# ---- found and decoded -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize("gz", [False, True])
def test_idx_files_in_a_flat_folder_gz_or_unpacked_decode_to_the_written_arrays(tmp_path, dataset, gz):
    arrays = mnist_arrays()
    write_idx(tmp_path / "flat", *arrays, gz=gz)
    assert_holds(loaded(tmp_path / "flat", dataset), *arrays)


def test_gz_and_unpacked_idx_files_can_be_mixed(tmp_path):
    arrays = mnist_arrays()
    flat = write_idx(tmp_path / "flat", *arrays, gz=True)
    for name in ("t10k-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (flat / name).write_bytes(gzip.decompress((flat / f"{name}.gz").read_bytes()))
        (flat / f"{name}.gz").unlink()
    assert_holds(loaded(flat, "fashion-mnist"), *arrays)


@pytest.mark.parametrize("hundred", [False, True])
def test_cifar_batches_folder_given_as_root_decodes_to_the_written_arrays(tmp_path, cifar_checksums_off, hundred):
    x, y = fake_images(120, (3, 32, 32), 100 if hundred else 10, seed=6)
    write_cifar(tmp_path, x[:90], y[:90], x[90:], y[90:], hundred=hundred)
    folder = tmp_path / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    assert_holds(loaded(folder, "cifar100" if hundred else "cifar10"), x[:90], y[:90], x[90:], y[90:])


@pytest.mark.parametrize("hundred", [False, True])
def test_cifar_tar_gz_is_read_without_extracting_it(tmp_path, cifar_checksums_off, hundred):
    x, y = fake_images(120, (3, 32, 32), 100 if hundred else 10, seed=7)
    write_cifar(tmp_path / "d", x[:90], y[:90], x[90:], y[90:], hundred=hundred)
    tar_cifar(tmp_path / "d", hundred=hundred)
    dm = loaded(tmp_path / "d", "cifar100" if hundred else "cifar10", cache_dir=str(tmp_path / "cache"))
    assert_holds(dm, x[:90], y[:90], x[90:], y[90:])
    assert [p.name for p in (tmp_path / "d").iterdir()] == [f"cifar-{'100' if hundred else '10'}-python.tar.gz"]


# ---- the cache: a root that is only read --------------------------------------------------------------------------


def no_decoding(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr(lightning_ref.cache, "decode_split", fail)


def test_a_flat_folder_is_never_written_to_and_its_cache_goes_to_the_user_cache_folder(tmp_path, monkeypatch):
    """A folder of original files (a system package's, say) is someone else's: nothing in it changes, byte or mtime,
    and the decoded splits are cached under $XDG_CACHE_HOME/manualnet/, from where a second setup reads them."""
    arrays = mnist_arrays()
    flat = write_idx(tmp_path / "flat", *arrays, gz=True)
    before = tree(flat)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    first = loaded(flat, "fashion-mnist")
    folder = first.cache_folder()
    assert folder.parent == tmp_path / "xdg" / "manualnet"
    assert sorted(p.name for p in folder.iterdir()) == ["fashion-mnist-test.pt", "fashion-mnist-train.pt"]
    no_decoding(monkeypatch)
    assert torch.equal(loaded(flat, "fashion-mnist").x_test, first.x_test)
    assert tree(flat) == before


def test_cache_dir_chooses_where_the_cache_goes_and_root_stays_untouched(fake_mnist, tmp_path, monkeypatch):
    before = tree(fake_mnist)
    dm = loaded(fake_mnist, "mnist", cache_dir=str(tmp_path / "mine"))
    assert dm.cache_folder() == tmp_path / "mine"
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["mnist-test.pt", "mnist-train.pt"]
    assert tree(fake_mnist) == before
    no_decoding(monkeypatch)
    loaded(fake_mnist, "mnist", cache_dir=str(tmp_path / "mine"))


def test_an_unwritable_root_in_torchvisions_layout_caches_in_the_user_cache_folder(fake_mnist, tmp_path, monkeypatch):
    """Tests run as root in CI, and root may write anywhere, so chmod proves nothing there: this test makes
    os.access report root unwritable (what it reports for a read-only mount even to root) and proves that the module
    then writes nothing under root and caches in $XDG_CACHE_HOME/manualnet instead. The next test does the same with
    real permission bits where the user is not root."""
    real_access = os.access

    def access(path, mode):
        return False if str(path) == str(fake_mnist) and mode == os.W_OK else real_access(path, mode)

    monkeypatch.setattr(lightning_ref.cache.os, "access", access)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    before = tree(fake_mnist)
    dm = loaded(fake_mnist, "mnist")
    assert dm.cache_folder().parent == tmp_path / "xdg" / "manualnet"
    assert tree(fake_mnist) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits (the test above covers this case)")
def test_a_read_only_root_works(fake_mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folders = [fake_mnist, *[p for p in fake_mnist.rglob("*") if p.is_dir()]]
    for p in folders:
        p.chmod(0o555)
    try:
        assert len(loaded(fake_mnist, "mnist").x_test) == 100
    finally:
        for p in folders:
            p.chmod(0o755)


# ---- bad files -----------------------------------------------------------------------------------------------------


def refused(root, dataset="fashion-mnist", **kw) -> str:
    """The one-line DataFileError prepare_data raises for root (a split decoded before it may be cached; no partial
    cache file is left)."""
    dm = ImageDataModule(dataset, root=str(root), download=False, cache_dir=str(Path(root).parent / "cache"), **kw)
    with pytest.raises(DataFileError) as e:
        dm.prepare_data()
    message = str(e.value)
    assert "\n" not in message and message.startswith("root: ")
    assert not list((Path(root).parent / "cache").glob("*.tmp"))
    return message


@pytest.fixture
def flat(tmp_path) -> Path:
    return write_idx(tmp_path / "flat", *mnist_arrays())


def test_a_folder_with_some_but_not_all_files_names_the_missing_ones(flat):
    (flat / "t10k-labels-idx1-ubyte").unlink()
    message = refused(flat)
    assert f"{flat} has some of the FashionMNIST files but not t10k-labels-idx1-ubyte" in message


def test_a_truncated_idx_file_is_refused_with_its_length_and_the_expected(flat):
    data = (flat / "train-images-idx3-ubyte").read_bytes()
    (flat / "train-images-idx3-ubyte").write_bytes(data[:-100])
    message = refused(flat)
    assert f"{flat / 'train-images-idx3-ubyte'} is {len(data) - 100} bytes, expected {len(data)}" in message
    assert "truncated" in message


def test_a_truncated_gz_file_is_refused_as_unreadable(tmp_path):
    gz = write_idx(tmp_path / "flat", *mnist_arrays(), gz=True)
    data = (gz / "t10k-images-idx3-ubyte.gz").read_bytes()
    (gz / "t10k-images-idx3-ubyte.gz").write_bytes(data[: len(data) // 2])
    assert f"{gz / 't10k-images-idx3-ubyte.gz'} is not readable (EOFError" in refused(gz)


def test_a_labels_file_in_place_of_images_is_refused_by_its_magic_number(flat):
    os.replace(flat / "train-labels-idx1-ubyte", flat / "train-images-idx3-ubyte")
    (flat / "train-labels-idx1-ubyte").write_bytes((flat / "train-images-idx3-ubyte").read_bytes())
    assert "is not an idx image file: magic number 0x0801, expected 0x0803" in refused(flat)


def test_images_and_labels_of_different_counts_are_refused_naming_both(tmp_path):
    x_train, y_train, x_test, y_test = mnist_arrays()
    folder = write_idx(tmp_path / "flat", x_train, y_train, x_test, y_test[:-1])
    assert "holds 30 images but" in refused(folder) and "holds 29 labels" in refused(folder)


def test_images_that_are_not_28x28_are_refused(flat):
    data = (flat / "t10k-images-idx3-ubyte").read_bytes()
    n = int.from_bytes(data[4:8], "big")
    header = n.to_bytes(4, "big") + (27).to_bytes(4, "big") + (27).to_bytes(4, "big")
    (flat / "t10k-images-idx3-ubyte").write_bytes(data[:4] + header + data[16 : 16 + n * 27 * 27])
    assert "holds 27x27 images, expected 28x28" in refused(flat)


def test_a_label_out_of_range_is_refused(tmp_path):
    x_train, y_train, x_test, y_test = mnist_arrays()
    y_train = y_train.copy()
    y_train[3] = 10
    folder = write_idx(tmp_path / "flat", x_train, y_train, x_test, y_test)
    assert "has label 10, expected labels 0..9" in refused(folder)


def test_a_cifar_batch_whose_md5_is_not_torchvisions_is_refused_naming_both(tmp_path):
    x, y = fake_images(120, (3, 32, 32), 10, seed=8)
    write_cifar(tmp_path / "d", x[:90], y[:90], x[90:], y[90:])
    got = hashlib.md5((tmp_path / "d/cifar-10-batches-py/data_batch_1").read_bytes()).hexdigest()
    message = refused(tmp_path / "d", "cifar10")
    assert f"data_batch_1 is not the data set's file: md5 {got}, expected c99cafc152244af753f735de768cd75f" in message


def test_a_cifar_batch_without_uint8_n_by_3072_data_is_refused(tmp_path, cifar_checksums_off):
    x, y = fake_images(120, (3, 32, 32), 10, seed=8)
    write_cifar(tmp_path / "d", x[:90], y[:90], x[90:], y[90:])
    path = tmp_path / "d/cifar-10-batches-py/test_batch"
    batch = pickle.loads(path.read_bytes(), encoding="latin1")
    path.write_bytes(pickle.dumps({**batch, "data": batch["data"][:, :3000]}))
    assert "test_batch is not a CIFAR batch: `data` is uint8 (30, 3000), expected uint8 (N, 3072)" in refused(
        tmp_path / "d", "cifar10"
    )


def test_a_truncated_cifar_tar_gz_is_refused_as_unreadable(tmp_path, cifar_checksums_off):
    x, y = fake_images(120, (3, 32, 32), 10, seed=9)
    write_cifar(tmp_path / "d", x[:90], y[:90], x[90:], y[90:])
    archive = tar_cifar(tmp_path / "d")
    archive.write_bytes(archive.read_bytes()[:5000])
    assert f"{archive} is not readable" in refused(tmp_path / "d", "cifar10")


def test_a_bad_file_stops_the_cli_with_exit_2_before_training_and_leaves_saved_runs_alone(
    flat, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["manualnet-train"])
    saved = tmp_path / "runs" / "manualnet" / "version_0"
    saved.mkdir(parents=True)
    (saved / "metrics.json").write_text("{}")
    before = tree(tmp_path / "runs")
    (flat / "t10k-images-idx3-ubyte").write_bytes(b"\0\0\x08\x03")
    args = ["fit", "--data.dataset", "fashion-mnist", "--data.root", str(flat), "--data.download", "false"]
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--data.val_size", "20", "--trainer.enable_progress_bar", "false"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("manualnet-train: error: root: ") and "t10k-images-idx3-ubyte" in err[-1]
    assert "shorter than its header" in err[-1]
    assert tree(tmp_path / "runs") == before  # no new run folder, nothing saved changed
