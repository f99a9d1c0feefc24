"""Run the harness's whole battery on the net's two Functions over many seeds (a seed draws every sample and every
incoming gradient anew) and print, per Function, the checks that failed or warned at any seed: a false alarm that
shows once in twenty draws shows here. Exits 1 when any check failed or warned."""

import argparse
import sys
import time

from manualnet.argtypes import positive_int
from manualnet.crosscheck import PROFILES
from manualnet.net_crosscheck import LOSS, NET

TARGETS = {"two_layer_net": NET, "softmax_cross_entropy": LOSS}


def main(argv: list[str] | None = None) -> int:
    """Print one line per (Function, seed) with its failures and warnings and the time; return 0 when none."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=positive_int, default=20, help="seeds 0 .. N-1 (default: 20)")
    parser.add_argument("--profile", choices=list(PROFILES), default="full", help="checks to run (default: full)")
    args = parser.parse_args(argv)
    bad = 0
    for name, subject in TARGETS.items():
        for seed in range(args.seeds):
            start = time.perf_counter()
            report = subject.check(profile=args.profile, seed=seed)
            failed = sorted({f"{r.check} ({r.dtype})" for r in report.failed()})
            warned = sorted({f"{r.check} ({r.dtype})" for r in report.warnings()})
            bad += bool(failed or warned)
            seconds = time.perf_counter() - start
            print(f"{name} seed {seed}: failed {failed or '-'}, warned {warned or '-'}, {seconds:.1f} s")
    print(f"\n{bad} of {len(TARGETS) * args.seeds} runs with a failure or a warning")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
