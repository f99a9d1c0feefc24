"""python -m lightning_ref.bench: the benchmark's command line (lightning_ref.bench.benchmark)."""

from lightning_ref.bench.benchmark import main

if __name__ == "__main__":
    main()
