"""scripts/benchmark.py and scripts/device_check.sh: the saved-bytes count is exact, a tiny run writes every result
key with sane values, bad options are refused before any work. No test asserts a timing."""

import importlib.util
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from manualnet import TwoLayerNet

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("benchmark", ROOT / "scripts" / "benchmark.py")
benchmark = importlib.util.module_from_spec(spec)
spec.loader.exec_module(benchmark)

STEP_KEYS = {
    "shape",
    "manual_ms",
    "autograd_ms",
    "autograd_compiled_ms",
    "manual_compiled_ms",
    "floor_ms",
    "manual_over_autograd",
    "manual_over_floor",
    "saved_bytes_manual",
    "saved_bytes_autograd",
}
EPOCH_KEYS = {"lightning_s", "bare_s", "dataloader_s", "lightning_over_bare", "lightning_over_dataloader"}


# ---- saved-for-backward bytes ---------------------------------------------------------------------------------------


def test_saved_bytes_of_the_manual_path_equal_a_count_by_hand():
    n, d, h, c = 2, 3, 4, 5
    model = TwoLayerNet(d, h, c, seed=0)
    x, y = torch.randn(n, d), torch.tensor([0, 4])
    counted = benchmark.saved_bytes(model.loss, x, y, list(model.parameters()))
    # TwoLayerNetFn saves x (N,D), w2 (H,C) and x2 (N,H); SoftmaxCrossEntropyFn saves s2 (N,C) and y (N,) int64.
    f32, i64 = 4, 8
    by_hand = (n * d + h * c + n * h + n * c) * f32 + n * i64
    assert counted == {"unique": by_hand, "per_pack": by_hand, "activations": (n * h + n * c) * f32}


def test_saved_bytes_count_a_storage_saved_twice_once_and_a_view_at_its_storage_size():
    x = torch.randn(6, requires_grad=True)
    twice = benchmark.saved_bytes(lambda x, y: (x * x).sum(), x, torch.zeros(1), [])  # mul saves self and other
    assert twice == {"unique": 6 * 4, "per_pack": 2 * 6 * 4, "activations": 0}  # x is an input: held anyway
    w = torch.randn(6, requires_grad=True)
    view = benchmark.saved_bytes(lambda x, y: (x[:2] * w[:2]).sum(), x.detach(), torch.zeros(1), [w])
    # Saved: the view x[:2] (w needs its gradient) keeps x's whole storage alive; x is an input, so no activations.
    assert view == {"unique": 6 * 4, "per_pack": 2 * 4, "activations": 0}


def test_saved_bytes_of_the_manual_path_do_not_exceed_autograds():
    model = TwoLayerNet(12, 7, 3, seed=0)
    ref = benchmark.reference_from(model)
    x, y = torch.randn(5, 12), torch.tensor([0, 1, 2, 1, 0])
    manual = benchmark.saved_bytes(model.loss, x, y, list(model.parameters()))
    autograd = benchmark.saved_bytes(
        lambda x, y: torch.nn.functional.cross_entropy(ref(x), y), x, y, list(ref.parameters())
    )
    assert manual["unique"] <= autograd["unique"]
    assert manual["activations"] <= autograd["activations"]
    assert autograd["per_pack"] > autograd["unique"]  # autograd saves ReLU's output twice: one storage


# ---- a tiny run -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """benchmark.py on one tiny shape and a 1,024-image epoch, in a subprocess (its own torch.compile state)."""
    out = tmp_path_factory.mktemp("bench")
    cmd = [
        sys.executable,
        str(ROOT / "scripts" / "benchmark.py"),
        "--device",
        "cpu",
        "--shapes",
        "16,24,8,3",
        "--reps",
        "2",
        "--warmup",
        "1",
        "--epoch-images",
        "1024",
        "--epoch-hidden",
        "16",
        "--dataloader-batches",
        "2",
        "--json",
        str(out / "b.json"),
        "--plot",
        str(out / "b.png"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=out, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, json.loads((out / "b.json").read_text()), out / "b.png"


def test_tiny_run_writes_every_key_of_the_issue(tiny_run):
    _, results, _ = tiny_run
    assert results["device"] == "cpu"
    (row,) = results["steps"]
    assert STEP_KEYS <= set(row)
    assert row["shape"] == {"N": 16, "D": 24, "H": 8, "C": 3}
    assert EPOCH_KEYS <= set(results["epoch"])


def test_tiny_run_values_are_positive_and_the_ratios_are_the_ratios_of_the_times(tiny_run):
    _, results, _ = tiny_run
    (row,) = results["steps"]
    for key in ("manual_ms", "autograd_ms", "autograd_compiled_ms", "manual_compiled_ms", "floor_ms"):
        assert math.isfinite(row[key]) and row[key] > 0, key
        stats = row["spread_ms"][key.removesuffix("_ms")]
        assert stats["min"] <= stats["q1"] <= stats["median"] == row[key] <= stats["q3"] <= stats["max"]
    assert row["manual_over_autograd"] == pytest.approx(row["manual_ms"] / row["autograd_ms"])
    assert row["manual_over_floor"] == pytest.approx(row["manual_ms"] / row["floor_ms"])
    n, d, h, c = 16, 24, 8, 3
    assert row["saved_bytes_manual"] == (n * d + h * c + n * h + n * c) * 4 + n * 8
    assert row["saved_bytes_autograd"] >= row["saved_bytes_manual"]
    ep = results["epoch"]
    for key in ("lightning_s", "bare_s", "dataloader_s"):
        assert math.isfinite(ep[key]) and ep[key] > 0, key
    assert ep["lightning_over_bare"] == pytest.approx(ep["lightning_s"] / ep["bare_s"])
    assert ep["lightning_over_dataloader"] == pytest.approx(ep["lightning_s"] / ep["dataloader_s"])
    assert ep["steps"] == 1024 // 512 and ep["dataloader_extrapolated"] is False  # 2 of 2 batches timed


def test_tiny_run_prints_the_tables_and_writes_a_png(tiny_run):
    stdout, results, png = tiny_run
    assert "| 16,24,8,3 | - |" in stdout
    assert "| Lightning s | bare loop s | DataLoader s | Lightning/bare | Lightning/DataLoader |" in stdout
    assert any(g["goal"].startswith("saved bytes manual <= autograd") for g in results["goals"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---- bad options --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--shapes", "16,24,8"], "--shapes: expected 'N,D,H,C' of positive integers, got '16,24,8'"),
        (["--shapes", "16,0,8,3"], "--shapes: expected 'N,D,H,C' of positive integers, got '16,0,8,3'"),
        (["--device", "tpu"], "--device: expected auto, cpu or cuda, got 'tpu'"),
        (["--reps", "0"], "--reps: expected an integer >= 1, got 0"),
        (["--epoch-images", "100"], "--epoch-images: expected at least one batch (512), got 100"),
        (["--fit-epochs", "0"], "--fit-epochs: expected an integer >= 1, got 0"),
    ],
)
def test_bad_options_exit_2_naming_the_option_before_any_work(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main([*argv, "--json", str(tmp_path / "never.json")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "never.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_asked_for_without_a_gpu_is_refused(capsys):
    with pytest.raises(SystemExit):
        benchmark.main(["--device", "cuda"])
    assert "--device: cuda asked for, but torch sees no CUDA device" in capsys.readouterr().err


# ---- the device check ---------------------------------------------------------------------------------------------


def test_device_check_script_parses():
    bash = shutil.which("bash")
    proc = subprocess.run([bash, "-n", str(ROOT / "scripts" / "device_check.sh")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_device_check_refuses_an_unknown_argument_before_any_work(tmp_path):
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "device_check.sh"), "--gpu"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path / "out")},
    )
    assert proc.returncode == 2
    assert "unknown argument '--gpu'" in proc.stderr
    assert not (tmp_path / "out").exists()
