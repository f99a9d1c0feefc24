"""The benchmark's report: what it ran on, the goals judged, and the markdown tables, one function per table."""

import os
import platform
import statistics

import torch
from bench_step import VARIANTS


def environment(device: torch.device) -> dict:
    """What the numbers were measured on."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as f:
                name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
        except (OSError, StopIteration):
            pass
    return {
        "device_name": name,
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "python": platform.python_version(),
    }


def goals(results: dict) -> list[dict]:
    """The performance goals these results can be judged against, each with its measured value and verdict.

    CPU: manual/autograd <= 1.00 and manual/floor <= 1.10 at H=512 and H=2048 (N=512, D=3072); manual/autograd
    <= 1.3 at N=D=H=64; activations kept for backward per example, manual <= autograd, at every shape;
    Lightning/bare <= 1.10 and Lightning/DataLoader (its best settings) <= 0.35, ratios of medians. CUDA: manual <=
    autograd at every shape, both TF32 settings; the step at H=2048 with TF32 reaching >= 70% of the GEMM floor's
    speed (floor/manual >= 0.70); a training epoch at H=512 in well under a second (taken as <= 0.5 s).
    """
    out = []

    def goal(name: str, value: float, met: bool) -> None:
        out.append({"goal": name, "measured": value, "met": bool(met)})

    cuda = results["device"] == "cuda"
    for row in results["steps"]:
        s = row["shape"]
        where = f"N={s['N']} D={s['D']} H={s['H']} C={s['C']}" + ("" if row["tf32"] is None else f" TF32 {row['tf32']}")
        big = (s["N"], s["D"], s["C"]) == (512, 3072, 10) and s["H"] in (512, 2048)
        small = (s["N"], s["D"], s["H"]) == (64, 64, 64)
        ratio = row["manual_over_autograd"]
        if cuda or big:
            goal(f"manual/autograd <= 1.00 at {where}", ratio, ratio <= 1.0)
        if small and not cuda:
            goal(f"manual/autograd <= 1.3 at {where}", ratio, ratio <= 1.3)
        if big and not cuda:
            goal(f"manual/floor <= 1.10 at {where}", row["manual_over_floor"], row["manual_over_floor"] <= 1.10)
        if big and cuda and s["H"] == 2048 and row["tf32"]:
            ratio = row["floor_ms"] / row["manual_ms"]
            goal(f"floor/manual >= 0.70 (of the TF32 GEMM floor) at {where}", ratio, ratio >= 0.70)
        per_example = row["activations_per_example_manual"], row["activations_per_example_autograd"]
        goal(
            f"activations per example manual <= autograd at {where} (bytes: {per_example[0]:g} / {per_example[1]:g})",
            per_example[0] / per_example[1],
            per_example[0] <= per_example[1],
        )
    ep = results.get("epoch")
    if ep and not cuda:
        goal("Lightning/bare <= 1.10 (medians)", ep["lightning_over_bare"], ep["lightning_over_bare"] <= 1.10)
        goal(
            f"Lightning/DataLoader <= 0.35 (medians; DataLoader at its best: {ep['dataloader_config']})",
            ep["lightning_over_dataloader"],
            ep["lightning_over_dataloader"] <= 0.35,
        )
    if cuda:
        epochs = ([ep["lightning_s"]] if ep and ep["hidden"] == 512 else []) + (
            results["fit"]["epoch_train_s"] if results.get("fit") and results["fit"]["hidden"] == 512 else []
        )
        if epochs:
            best = statistics.median(epochs)
            goal("training epoch at H=512 well under a second (<= 0.5 s, median)", best, best <= 0.5)
    return out


def _tf32(row: dict) -> str:
    return {None: "-", True: "on", False: "off"}[row["tf32"]]


def _ms(stats: dict) -> str:
    return f"{stats['median']:.3f} [{stats['q1']:.3f}, {stats['q3']:.3f}]"


def markdown(results: dict) -> str:
    """The results as markdown tables: step times (median [q1, q3]), ratios, saved bytes; with the SGD step; the
    floor's layouts; the Lightning fit; the epoch comparison; the goals."""
    env = results["env"]
    lines = [f"device: {results['device']} ({env['device_name']}), {env['threads']} threads, torch {env['torch']}"]
    rows = results["steps"]
    if rows:
        lines += step_table(rows) + sgd_table(rows) + floor_table(rows)
    if results.get("fit"):
        lines += fit_table(results["fit"])
    if results.get("epoch"):
        lines += epoch_table(results["epoch"])
    if results.get("goals"):
        lines += goals_table(results["goals"])
    return "\n".join(lines)


def _where(row: dict) -> str:
    s = row["shape"]
    return f"{s['N']},{s['D']},{s['H']},{s['C']} | {_tf32(row)}"


def step_table(rows: list[dict]) -> list[str]:
    """Forward + backward per variant, the floor, the ratios and the activations per example."""
    lines = [
        "",
        "step time, forward + backward: median [q1, q3] ms",
        "",
        "| N,D,H,C | TF32 | manual | autograd | autograd compiled | manual compiled | floor "
        "| manual/autograd | manual/floor | activations per example manual / autograd (bytes) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        times = " | ".join(_ms(row["spread_ms"][name]) for name in VARIANTS)
        lines.append(
            f"| {_where(row)} | {times} | {row['floor_ms']:.3f} "
            f"| {row['manual_over_autograd']:.3f} | {row['manual_over_floor']:.3f} "
            f"| {row['activations_per_example_manual']:g} / {row['activations_per_example_autograd']:g} |"
        )
    return lines


def sgd_table(rows: list[dict]) -> list[str]:
    """Each variant with its SGD step, and the compiled training step against the eager manual one."""
    lines = [
        "",
        "with the SGD step: median ms; the compiled training step (forward, backward, SGD step in one compiled"
        " function) against the eager manual one",
        "",
        "| N,D,H,C | TF32 | " + " | ".join(VARIANTS) + " | manual compiled step | compiled/eager |",
        "| --- | --- |" + " ---: |" * (len(VARIANTS) + 2),
    ]
    for row in rows:
        times = " | ".join(f"{row[f'{v}_sgd_ms']:.3f}" for v in VARIANTS)
        ratio = row["compiled_step_over_eager"]
        lines.append(f"| {_where(row)} | {times} | {row['manual_compiled_step_ms']:.3f} | {ratio:.3f} |")
    return lines


def floor_table(rows: list[dict]) -> list[str]:
    """The GEMM floor's products, each in each layout."""
    names = list(rows[0]["floor_layouts_ms"])
    lines = [
        "",
        "the GEMM floor: each large product in each layout, median ms (the floor sums each product's best)",
        "",
        "| N,D,H,C | TF32 | " + " | ".join(f"`{n}`" for n in names) + " |",
        "| --- | --- |" + " ---: |" * len(names),
    ]
    for row in rows:
        lines.append(f"| {_where(row)} | " + " | ".join(f"{row['floor_layouts_ms'][n]:.3f}" for n in names) + " |")
    return lines


def fit_table(fit: dict) -> list[str]:
    """The Lightning fit (--fit-epochs): each epoch's training time, samples/s and validation accuracy."""
    lines = [
        "",
        f"Lightning fit{' (compiled step)' if fit['compile'] else ''}: {fit['images']:,} images, "
        f"batch {fit['batch_size']}, H={fit['hidden']} "
        f"(training part of each epoch; the whole fit {fit['fit_s']:.1f} s)",
        "",
        "| epoch | train s | samples/s | val acc |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for i, (t, sps) in enumerate(zip(fit["epoch_train_s"], fit["samples_per_s"], strict=True)):
        acc = fit["val_acc"][i] if i < len(fit["val_acc"]) else float("nan")
        lines.append(f"| {i} | {t:.3f} | {sps:,.0f} | {acc:.4f} |")
    return lines


def epoch_table(ep: dict) -> list[str]:
    """The three epochs, their ratios, and every DataLoader setting tried."""
    note = f" (extrapolated from {ep['dataloader_batches_timed']} of {ep['steps']} batches)"
    sp = ep["spread_s"]

    def span(name: str) -> str:
        return f"{sp[name]['median']:.2f} [{sp[name]['min']:.2f}, {sp[name]['max']:.2f}]"

    return [
        "",
        f"one epoch: {ep['images']:,} images, batch {ep['batch_size']}, H={ep['hidden']}, augmentation on; "
        f"median [min, max] of {ep['repeats']} interleaved runs each; the DataLoader at its best here: "
        f"{ep['dataloader_config']}",
        "",
        "| Lightning s | bare loop s | DataLoader s | Lightning/bare | Lightning/DataLoader |",
        "| ---: | ---: | ---: | ---: | ---: |",
        f"| {span('lightning')} | {span('bare')} | {span('dataloader')}{note if ep['dataloader_extrapolated'] else ''} "
        f"| {ep['lightning_over_bare']:.3f} | {ep['lightning_over_dataloader']:.3f} |",
        "",
        "DataLoader settings tried (one epoch each, s): "
        + ", ".join(f"{name} {t:.2f}" for name, t in ep["dataloader_configs_s"].items()),
    ]


def goals_table(goals: list[dict]) -> list[str]:
    """Each goal, its measured value and whether it was met."""
    lines = ["", "| goal | measured | met |", "| --- | ---: | :---: |"]
    return lines + [f"| {g['goal']} | {g['measured']:.4f} | {'yes' if g['met'] else 'NO'} |" for g in goals]
