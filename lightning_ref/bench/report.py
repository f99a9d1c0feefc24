"""The benchmark's report: what it ran on, the goals of goals.yaml judged, and the markdown tables, one function per
table."""

import os
import platform
import statistics
from pathlib import Path

import torch
import yaml

from lightning_ref.bench.step import VARIANTS


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
        # the machine's load when the run started (1, 5, 15 minutes): other processes share the cores being timed
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


GOALS = Path(__file__).with_name("goals.yaml")

# measure -> its value from one step row of the results
STEP_MEASURES = {
    "manual/autograd": lambda row: row["manual_over_autograd"],
    "manual/floor": lambda row: row["manual_over_floor"],
    "floor/manual": lambda row: row["floor_ms"] / row["manual_ms"],
    "activations per example manual/autograd": lambda row: (
        row["activations_per_example_manual"] / row["activations_per_example_autograd"]
    ),
}
EPOCH_MEASURES = ("Lightning/bare", "Lightning/DataLoader", "training epoch s at H=512")  # one value per run


def _epoch_measures(results: dict) -> dict[str, tuple[float, str]]:
    """measure -> (value, what it was measured on) for the epoch comparison and the timed fit, where they ran."""
    found, ep, fit = {}, results.get("epoch"), results.get("fit")
    if ep:
        found["Lightning/bare"] = ep["lightning_over_bare"], "medians"
        found["Lightning/DataLoader"] = (
            ep["lightning_over_dataloader"],
            f"medians; DataLoader: {ep['dataloader_config']}",
        )
    epochs = ([ep["lightning_s"]] if ep and ep["hidden"] == 512 else []) + (
        fit["epoch_train_s"] if fit and fit["hidden"] == 512 else []
    )
    if epochs:
        found["training epoch s at H=512"] = statistics.median(epochs), "median"
    return found


def load_goals(path: Path = GOALS) -> list[dict]:
    """The goals table (goals.yaml), each row checked: a known measure and exactly one of at_most, at_least."""
    rows = yaml.safe_load(path.read_text())
    known = set(STEP_MEASURES) | set(EPOCH_MEASURES)
    for row in rows:
        if row["measure"] not in known or ("at_most" in row) == ("at_least" in row):
            raise ValueError(f"{path}: expected a measure of {sorted(known)} and one of at_most, at_least, got {row}")
    return rows


def _judge(goal: dict, value: float, where: str) -> dict:
    bound = f"<= {goal['at_most']:.2f}" if "at_most" in goal else f">= {goal['at_least']:.2f}"
    met = value <= goal["at_most"] if "at_most" in goal else value >= goal["at_least"]
    return {"goal": f"{goal['measure']} {bound} ({where})", "measured": value, "met": bool(met)}


def goals(results: dict) -> list[dict]:
    """Each goal of the table (goals.yaml) that these results can be judged against, with its measured value and
    verdict: a step goal once per step row of its device, shapes and TF32 setting; an epoch goal once."""
    out, epoch = [], _epoch_measures(results)
    for goal in load_goals():
        if goal.get("device", results["device"]) != results["device"]:
            continue
        if goal["measure"] in epoch:
            value, where = epoch[goal["measure"]]
            out.append(_judge(goal, value, where))
            continue
        for row in results["steps"] if goal["measure"] in STEP_MEASURES else ():
            s = row["shape"]
            shape = f"{s['N']},{s['D']},{s['H']},{s['C']}"
            if shape not in goal.get("shapes", [shape]) or goal.get("tf32", row["tf32"]) != row["tf32"]:
                continue
            where = f"N={s['N']} D={s['D']} H={s['H']} C={s['C']}" + (
                "" if row["tf32"] is None else f" TF32 {row['tf32']}"
            )
            out.append(_judge(goal, STEP_MEASURES[goal["measure"]](row), where))
    return out


def _tf32(row: dict) -> str:
    return {None: "-", True: "on", False: "off"}[row["tf32"]]


def _ms(stats: dict) -> str:
    return f"{stats['median']:.3f} [{stats['q1']:.3f}, {stats['q3']:.3f}]"


def markdown(results: dict) -> str:
    """The results as markdown tables: step times (median [q1, q3]), ratios, saved bytes; with the SGD step; the
    floor's layouts; the Lightning fit; the epoch comparison; the goals."""
    env = results["env"]
    load = env.get("load_average")
    lines = [
        f"device: {results['device']} ({env['device_name']}), {env['threads']} threads, torch {env['torch']}"
        + (f", load average {' '.join(f'{v:.2f}' for v in load)} at the start" if load else "")
    ]
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
