"""The benchmark (lightning_ref.bench) and scripts/device_check.sh: the saved-bytes count is exact, the floor's products
are the step's products, a tiny run writes every result key with values consistent with each other, the goals table is
judged as it says, bad options are refused before any work, the device check's CPU dry run produces every file it
promises. No test asserts a timing."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lightning_ref.bench import benchmark, report
from lightning_ref.bench import step as bench_step
from manualnet import TwoLayerNet
from manualnet.reference import reference_from

ROOT = Path(__file__).resolve().parents[1]

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
    "activations_per_example_manual",
    "activations_per_example_autograd",
    "floor_layouts_ms",
    "manual_compiled_step_ms",
    "compiled_step_over_eager",
}
EPOCH_KEYS = {
    "lightning_s",
    "bare_s",
    "dataloader_s",
    "lightning_over_bare",
    "lightning_over_dataloader",
    "runs_s",
    "spread_s",
    "dataloader_config",
    "dataloader_configs_s",
}
TINY = (16, 24, 8, 3)


# ---- saved-for-backward bytes ---------------------------------------------------------------------------------------


def test_saved_bytes_of_the_manual_path_equal_a_count_by_hand():
    n, d, h, c = 2, 3, 4, 5
    model = TwoLayerNet(d, h, c, seed=0)
    x, y = torch.randn(n, d), torch.tensor([0, 4])
    counted = bench_step.saved_bytes(model.loss, x, y, list(model.parameters()))
    # TwoLayerNetFn saves x (N,D), w2 (H,C) and x2 (N,H); SoftmaxCrossEntropyFn saves s2 (N,C) and y (N,) int64.
    f32, i64 = 4, 8
    by_hand = (n * d + h * c + n * h + n * c) * f32 + n * i64
    assert counted == {"unique": by_hand, "per_pack": by_hand, "activations": (n * h + n * c) * f32}


def test_saved_bytes_count_a_storage_saved_twice_once_and_a_view_at_its_storage_size():
    x = torch.randn(6, requires_grad=True)
    twice = bench_step.saved_bytes(lambda x, y: (x * x).sum(), x, torch.zeros(1), [])  # mul saves self and other
    assert twice == {"unique": 6 * 4, "per_pack": 2 * 6 * 4, "activations": 0}  # x is an input: held anyway
    w = torch.randn(6, requires_grad=True)
    view = bench_step.saved_bytes(lambda x, y: (x[:2] * w[:2]).sum(), x.detach(), torch.zeros(1), [w])
    # Saved: the view x[:2] (w needs its gradient) keeps x's whole storage alive; x is an input, so no activations.
    assert view == {"unique": 6 * 4, "per_pack": 2 * 4, "activations": 0}


def test_saved_bytes_of_the_manual_path_do_not_exceed_autograds():
    model = TwoLayerNet(12, 7, 3, seed=0)
    ref = reference_from(model)
    x, y = torch.randn(5, 12), torch.tensor([0, 1, 2, 1, 0])
    manual = bench_step.saved_bytes(model.loss, x, y, list(model.parameters()))
    autograd = bench_step.saved_bytes(
        lambda x, y: torch.nn.functional.cross_entropy(ref(x), y), x, y, list(ref.parameters())
    )
    assert manual["unique"] <= autograd["unique"]
    assert manual["activations"] <= autograd["activations"]
    assert autograd["per_pack"] > autograd["unique"]  # autograd saves ReLU's output twice: one storage


# ---- the GEMM floor -----------------------------------------------------------------------------------------------


def test_the_floors_products_equal_the_steps_s1_and_dw1_in_every_layout():
    # Each floor product must be the step's s1 = x w1 (without b1) or its dW1 = x^T dS1, in some layout: a floor made
    # of other (smaller) products would not bound the step.
    n, d, h, c = TINY
    model = TwoLayerNet(d, h, c, seed=0, dtype=torch.float64)
    x, ds1 = torch.randn(n, d, dtype=torch.float64), torch.randn(n, h, dtype=torch.float64)
    s1 = x @ model.w1.detach()
    x_req = x.clone()
    w1 = model.w1.detach().clone().requires_grad_(True)
    (x_req @ w1).backward(ds1)  # autograd's dW1 for the incoming gradient dS1
    products = bench_step.floor_products(x, model.w1.detach(), ds1)
    assert {name.split(":")[0] for name in products} == {"s1", "s1^T", "dW1", "dW1^T"}
    for name, fn in products.items():
        want = {"s1": s1, "s1^T": s1.T, "dW1": w1.grad, "dW1^T": w1.grad.T}[name.split(":")[0]]
        torch.testing.assert_close(fn(), want, rtol=1e-12, atol=1e-12, msg=name)


# ---- a tiny run -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """python -m lightning_ref.bench on one tiny shape and a 1,024-image epoch, in a subprocess (its own
    torch.compile state)."""
    out = tmp_path_factory.mktemp("bench")
    cmd = [
        sys.executable,
        "-m",
        "lightning_ref.bench",
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
        "--epoch-repeats",
        "3",
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


def test_tiny_run_times_are_positive_and_each_median_lies_within_its_samples(tiny_run):
    _, results, _ = tiny_run
    (row,) = results["steps"]
    for name, stats in row["spread_ms"].items():
        assert 0 < stats["min"] <= stats["q1"] <= stats["median"] <= stats["q3"] <= stats["max"], name
    for v in bench_step.VARIANTS:
        assert row[f"{v}_ms"] == row["spread_ms"][v]["median"], v
    ep = results["epoch"]
    for name in ("lightning", "bare", "dataloader"):
        runs = ep["runs_s"][name]
        assert len(runs) == 3 and all(math.isfinite(t) and t > 0 for t in runs), name
        assert ep[f"{name}_s"] == sorted(runs)[1]  # the median of the three interleaved runs
    assert ep["steps"] == 1024 // 512 and ep["dataloader_extrapolated"] is False  # 2 of 2 batches timed


def test_tiny_run_floor_is_the_sum_of_each_products_fastest_layout(tiny_run):
    _, results, _ = tiny_run
    (row,) = results["steps"]
    layouts = row["floor_layouts_ms"]
    assert len(layouts) == 5 and all(t > 0 for t in layouts.values())
    s1 = min(t for name, t in layouts.items() if name.startswith("s1"))
    dw1 = min(t for name, t in layouts.items() if name.startswith("dW1"))
    assert row["floor_ms"] == pytest.approx(s1 + dw1)
    assert row["floor_ms"] <= layouts["s1: x @ w1"] + layouts["dW1: x^T @ dS1"]  # never above the manual layouts'


def test_tiny_run_activations_per_example_are_the_manual_paths_x2_and_s2(tiny_run):
    _, results, _ = tiny_run
    (row,) = results["steps"]
    n, d, h, c = TINY
    assert row["activations_per_example_manual"] == (h + c) * 4  # x2 (H,) and s2 (C,) float32 per row of x
    assert row["activations_per_example_manual"] <= row["activations_per_example_autograd"]


def test_tiny_run_picks_the_fastest_dataloader_settings(tiny_run):
    _, results, _ = tiny_run
    ep = results["epoch"]
    tried = ep["dataloader_configs_s"]
    assert {"workers=0", "workers=1", "workers=1, persistent"} <= set(tried)
    assert ep["dataloader_config"] == min(tried, key=tried.get)


def test_tiny_run_prints_the_tables_and_writes_a_png(tiny_run):
    stdout, results, png = tiny_run
    assert "| 16,24,8,3 | - |" in stdout
    assert "the DataLoader at its best here: " + results["epoch"]["dataloader_config"] in stdout
    assert "| Lightning s | bare loop s | DataLoader s | Lightning/bare | Lightning/DataLoader |" in stdout
    assert any(g["goal"].startswith("activations per example manual/autograd <= 1.00") for g in results["goals"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---- the goals table ------------------------------------------------------------------------------------------------


def step_row(shape: tuple, tf32, manual: float, autograd: float, floor: float) -> dict:
    n, d, h, c = shape
    return {"shape": {"N": n, "D": d, "H": h, "C": c}, "tf32": tf32, "manual_ms": manual, "floor_ms": floor,
            "manual_over_autograd": manual / autograd, "manual_over_floor": manual / floor,
            "activations_per_example_manual": 2088, "activations_per_example_autograd": 2088.01}  # fmt: skip


def test_the_goals_table_is_judged_row_by_row_on_the_shapes_and_device_it_names():
    cpu = {"device": "cpu", "steps": [step_row((512, 3072, 512, 10), None, 17.0, 16.5, 15.0),
                                      step_row((64, 64, 64, 10), None, 0.2, 0.1, 0.01)],
           "epoch": {"lightning_over_bare": 1.05, "lightning_over_dataloader": 0.4, "dataloader_config": "workers=0",
                     "lightning_s": 2.0, "hidden": 512}}  # fmt: skip
    verdicts = {g["goal"]: (round(g["measured"], 4), g["met"]) for g in report.goals(cpu)}
    assert verdicts == {
        "manual/autograd <= 1.05 (N=512 D=3072 H=512 C=10)": (round(17.0 / 16.5, 4), True),
        "manual/autograd <= 1.30 (N=64 D=64 H=64 C=10)": (2.0, False),
        "manual/floor <= 1.10 (N=512 D=3072 H=512 C=10)": (round(17.0 / 15.0, 4), False),
        "activations per example manual/autograd <= 1.00 (N=512 D=3072 H=512 C=10)": (round(2088 / 2088.01, 4), True),
        "activations per example manual/autograd <= 1.00 (N=64 D=64 H=64 C=10)": (round(2088 / 2088.01, 4), True),
        "Lightning/bare <= 1.10 (medians)": (1.05, True),
        "Lightning/DataLoader <= 0.35 (medians; DataLoader: workers=0)": (0.4, False),
    }
    cuda = {"device": "cuda", "steps": [step_row((512, 3072, 2048, 10), tf32, 1.0, 1.2, 0.8) for tf32 in (False, True)]}
    verdicts = {g["goal"]: (g["measured"], g["met"]) for g in report.goals(cuda)}
    assert verdicts["floor/manual >= 0.70 (N=512 D=3072 H=2048 C=10 TF32 True)"] == (0.8, True)
    assert "floor/manual >= 0.70 (N=512 D=3072 H=2048 C=10 TF32 False)" not in verdicts  # TF32 on only
    assert verdicts["manual/autograd <= 1.00 (N=512 D=3072 H=2048 C=10 TF32 False)"] == (1.0 / 1.2, True)
    assert not any(g.startswith(("Lightning/", "manual/floor")) for g in verdicts)  # the CPU's goals


ISSUE_23_TABLE = [(200, 3072, 100, 10), (64, 3072, 100, 10), (128, 784, 100, 10), (256, 784, 1024, 10),
                  (512, 3072, 512, 10), (64, 64, 64, 10)]  # fmt: skip


def test_the_shape_grid_holds_issue_23s_table_and_quick_keeps_every_shape_with_a_goal():
    assert set(ISSUE_23_TABLE) <= set(benchmark.SHAPES)
    with_goal = {tuple(int(v) for v in s.split(",")) for g in report.load_goals() for s in g.get("shapes", [])}
    assert with_goal <= set(benchmark.QUICK_SHAPES)
    # the goals name every shape of the grid: manual/autograd at each, the floor at every H >= 512
    ratio_goals = [g for g in report.load_goals() if g["measure"] == "manual/autograd" and g.get("device") == "cpu"]
    assert {tuple(int(v) for v in s.split(",")) for g in ratio_goals for s in g["shapes"]} == set(benchmark.SHAPES)
    floor = next(g for g in report.load_goals() if g["measure"] == "manual/floor")
    assert {s for s in benchmark.SHAPES if s[2] >= 512} == {
        tuple(int(v) for v in s.split(",")) for s in floor["shapes"]
    }


def test_a_goal_row_with_an_unknown_measure_or_no_single_bound_is_refused(tmp_path):
    for row in ("{measure: manual/autgrad, at_most: 1.0}", "{measure: manual/floor, at_most: 1.0, at_least: 0.5}"):
        (tmp_path / "goals.yaml").write_text(f"- {row}\n")
        with pytest.raises(ValueError, match="expected a measure of"):
            report.load_goals(tmp_path / "goals.yaml")


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
        (["--epoch-repeats", "0"], "--epoch-repeats: expected an integer >= 1, got 0"),
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


def device_check(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "device_check.sh"), *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_device_check_cpu_dry_run_of_the_train_step_writes_its_results_and_the_summary(tmp_path):
    out = tmp_path / "out"
    proc = device_check("--cpu-dry-run", "--only", "train", env={**os.environ, "OUT": str(out)})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    status = (out / "status.md").read_text()
    assert "| env | 0 |" in status and "| train | 0 |" in status
    assert "| benchmark |" not in status  # left out by --only
    fit = json.loads((out / "train.json").read_text())["fit"]
    assert len(fit["epoch_train_s"]) == 2 and fit["hidden"] == 16 and fit["compile"] is False
    summary = (out / "summary.md").read_text()
    assert "## train" in summary and "| epoch | train s | samples/s | val acc |" in summary


@pytest.mark.parametrize(
    "args, message",
    [(["--only", "train,gpu_burn"], "--only: unknown step 'gpu_burn'"), (["--gpu"], "unknown argument '--gpu'")],
)
def test_device_check_refuses_a_bad_argument_before_any_work(tmp_path, args, message):
    proc = device_check(*args, env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path / "out")})
    assert proc.returncode == 2
    assert message in proc.stderr
    assert not (tmp_path / "out").exists()


# ---- the profile per shape ------------------------------------------------------------------------------------------


def test_profile_of_a_tiny_shape_splits_each_step_into_its_products_and_the_rest():
    from lightning_ref.bench import profile

    row = profile.profile_shape(TINY, reps=2, steps=2)
    for name in ("manual", "autograd"):
        r = row[name]
        assert r["step_us"] > 0 and r["products_us"] > 0  # both steps make the products (mm, addmm)
        assert r["besides_us"] > 0  # the profiled steps' wall time less their products
        assert not set(r["other_ops_us"]) & set(profile.PRODUCTS)
    assert "aten::threshold_backward" in row["manual"]["other_ops_us"]  # the manual backward's ReLU mask
    table = profile.markdown([row])
    assert table.splitlines()[2].startswith("| 16,24,8,3 |")
