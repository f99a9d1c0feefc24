"""The benchmark kit: the hand-derived step against autograd, torch.compile and the GEMM floor, and the data path
against the usual DataLoader (docs/performance.md).

    python -m lightning_ref.bench --quick --json runs/bench/quick.json       # the benchmark (module benchmark)
    python -m lightning_ref.bench.forward                                   # forward mode and Hessian-vector products
    python -m lightning_ref.bench.plot runs/bench/benchmark.json step.png   # step time against H

Modules: timing (the timing kit), step (the step benchmark and saved bytes), epoch (the epoch benchmark), report (the
environment, the goals of goals.yaml judged, the tables), plot, forward, benchmark (the command line).
"""
