"""The benchmark's timing kit: one timing (CUDA events or perf_counter), interleaved repetitions, their spread."""

import math
import statistics
import time

import torch

SAMPLE_MS = 5.0  # a timing sample spans at least this long (several calls of a fast step)


def time_ms(fn, device: torch.device, calls: int = 1) -> float:
    """Milliseconds per call of `calls` back-to-back calls of fn: CUDA events on a GPU (the device's own clock),
    perf_counter on the CPU."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / calls
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) * 1e3 / calls


def interleaved(fns: dict, device: torch.device, reps: int, warmup: int) -> dict[str, list[float]]:
    """reps timings of every callable, taken round robin (order rotated each round) after `warmup` calls of each.
    A callable faster than SAMPLE_MS is timed over as many back-to-back calls as fill SAMPLE_MS (timer resolution
    and the timing's own overhead are then negligible); each sample is the time per call."""
    calls = {}
    for name, fn in fns.items():
        for _ in range(warmup):
            fn()
        once = min(time_ms(fn, device), time_ms(fn, device))  # the faster of two: a late recompile is not the step
        calls[name] = max(1, math.ceil(SAMPLE_MS / max(once, 1e-3)))
    names, samples = list(fns), {name: [] for name in fns}
    for r in range(reps):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            samples[name].append(time_ms(fns[name], device, calls[name]))
    return samples


def spread(samples: list[float]) -> dict[str, float]:
    """Median, quartiles and range of timings (ms)."""
    q1, median, q3 = statistics.quantiles(samples, n=4, method="inclusive") if len(samples) > 1 else samples * 3
    return {"median": median, "q1": q1, "q3": q3, "min": min(samples), "max": max(samples)}


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
