#!/usr/bin/env bash
# The GPU device check, one command, under 9 minutes on an H100/H200 (docs/performance.md):
#
#   bash scripts/device_check.sh                 # on the GPU machine; results in $OUT, else runs/device_check/
#   bash scripts/device_check.sh --cpu-dry-run   # the same steps, tiny and on the CPU, to check the script itself
#   bash scripts/device_check.sh --only benchmark,train   # only these steps (env always runs)
#
# Steps, each with its own time limit, log and exit status (a failing step does not stop the others):
#   env        nvidia-smi, python, torch, CUDA and the packages found
#   tests      the CUDA tests: pytest -k cuda (files that need jsonargparse are left out when it is absent), among
#              them a Lightning training step under torch.cuda.set_sync_debug_mode("error"), eager and compiled
#   gradients  manualnet.gradient_report: float32, float64, bf16 and fp16 autocast, on CPU and CUDA
#   benchmark  lightning_ref.bench --quick --no-epoch: the benchmark's whole shape grid (benchmark.SHAPES, the same
#              shapes as on the CPU), step times by CUDA events with TF32 off and on: eager, compiled, and the
#              compiled training step (CUDA graphs) next to eager, peak memory, the GEMM floor (no epoch comparison:
#              the train steps time the epoch); the GPU goals are judged at the end of benchmark.log
#   train      5 epochs of the Lightning fit on generated CIFAR-sized data (50,000 training images, H=512), timed
#              per epoch, through the Trainer API (lightning_ref.bench --fit-epochs: works without jsonargparse)
#   train_compiled  the same 5 epochs with the compiled step (--fit-compile: compile=True, CUDA graphs); its first
#              epoch holds the compilation
#   cli_train  where jsonargparse is importable, the 5 epochs through the CLI (scripts/train.py fit)
# summary.md lists each step's status and time and the goal tables; the exit status is 1 when any step failed.
#
# Python: the system python3 when it imports torch (the GPU machine's own), else .venv/bin/python. The project is not
# pip-installed there: PYTHONPATH holds the repository root. A wheels/ folder in the repository (or $WHEELS) holding
# jsonargparse and its dependencies is installed into a temporary folder on PYTHONPATH when jsonargparse is missing
# (make one where there is network: pip download --no-deps --dest wheels 'jsonargparse>=4.27' docstring-parser
# typeshed-client).
set -uo pipefail

STEPS="tests gradients benchmark train train_compiled cli_train"
DRY=0
ONLY="$STEPS"
while [ $# -gt 0 ]; do
    case "$1" in
        --cpu-dry-run) DRY=1 ;;
        --only)
            ONLY="${2:-}"
            ONLY="${ONLY//,/ }"
            shift
            for step in $ONLY; do
                case " $STEPS " in
                    *" $step "*) ;;
                    *)
                        echo "device_check.sh: --only: unknown step '$step' (expected some of: $STEPS)" >&2
                        exit 2
                        ;;
                esac
            done
            [ -n "$ONLY" ] || {
                echo "device_check.sh: --only: expected a comma-separated list of steps ($STEPS)" >&2
                exit 2
            }
            ;;
        -h | --help)
            sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "device_check.sh: unknown argument '$1' (expected --cpu-dry-run, --only STEPS or --help)" >&2
            exit 2
            ;;
    esac
    shift
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2
DEST="${OUT:-$ROOT/runs/device_check}"
mkdir -p "$DEST" || exit 2
DEST="$(cd "$DEST" && pwd)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export MPLBACKEND=Agg PYTHONUNBUFFERED=1

if python3 -c "import torch" >/dev/null 2>&1; then
    PY=python3
elif [ -x "$ROOT/.venv/bin/python" ]; then
    PY="$ROOT/.venv/bin/python"
else
    echo "device_check.sh: no python with torch (tried python3 and .venv/bin/python)" >&2
    exit 2
fi

if ! "$PY" -c "import jsonargparse" >/dev/null 2>&1; then
    WHEELS="${WHEELS:-$ROOT/wheels}"
    if [ -d "$WHEELS" ]; then
        SITE="$(mktemp -d)"
        # --no-deps: the wheels' own dependencies that lightning and torch already bring (PyYAML, typing-extensions)
        # are found where they are; the wheels hold the rest (docstring-parser, typeshed-client).
        if "$PY" -m pip install -q --no-index --no-deps --target "$SITE" "$WHEELS"/*.whl >"$DEST/wheels.log" 2>&1; then
            export PYTHONPATH="$PYTHONPATH:$SITE"
        fi
    fi
fi
HAVE_JSONARGPARSE=0
"$PY" -c "import jsonargparse" >/dev/null 2>&1 && HAVE_JSONARGPARSE=1

if [ "$DRY" = 1 ]; then
    DEVICE=cpu
    BENCH_ARGS=(--shapes "32,48,16,10" --reps 2 --warmup 3 --epoch-images 1024 --epoch-hidden 16
        --dataloader-batches 2 --epoch-repeats 1)
    FIT_ARGS=(--fit-epochs 2 --epoch-images 1024 --epoch-hidden 16)
    CLI_DATA=(--data.synthetic_train 1536 --data.synthetic_test 256 --data.val_size 512 --model.hidden 16)
    EPOCHS=2
    LIMIT=(120 120 300 300 300 300) # seconds: tests, gradients, benchmark, train, train_compiled, cli_train
else
    DEVICE=cuda
    # --quick: the whole shape grid (every shape has a goal), TF32 off and on; each timing sample spans >= 5 ms.
    # --no-epoch: the epoch is timed by the train steps below (the epoch comparison's goals are the CPU's).
    BENCH_ARGS=(--quick --reps 20 --warmup 5 --no-epoch)
    FIT_ARGS=(--fit-epochs 5 --epoch-images 50000 --epoch-hidden 512)
    CLI_DATA=(--data.synthetic_train 55000 --data.val_size 5000 --model.hidden 512)
    EPOCHS=5
    # seconds, 525 in all with env's 15: the whole check stays under 9 minutes. The benchmark compiles each of the
    # grid's 8 shapes afresh (static shapes); its JSON is written after every shape, so a time limit keeps those done.
    LIMIT=(70 25 285 40 55 35)
fi

FAILED=0
STATUS="$DEST/status.md"
printf '| step | exit status | seconds | log |\n| --- | ---: | ---: | --- |\n' >"$STATUS"

# run NAME LIMIT_S COMMAND...: the command under a time limit, its output in NAME.log, a row in status.md; a step
# not in --only is left out.
run() {
    local name="$1" limit="$2"
    shift 2
    case " $ONLY " in
        *" $name "*) ;;
        *) return 0 ;;
    esac
    local t0 rc
    t0="$(date +%s)"
    echo "== $name (limit ${limit}s): $*"
    timeout --kill-after=10 "$limit" "$@" >"$DEST/$name.log" 2>&1
    rc=$?
    [ "$rc" = 0 ] || FAILED=1
    local note=""
    [ "$rc" = 124 ] && note=" (time limit)"
    printf '| %s | %s%s | %s | %s.log |\n' "$name" "$rc" "$note" "$(($(date +%s) - t0))" "$name" >>"$STATUS"
    echo "   exit $rc$note, $(($(date +%s) - t0)) s, log: $DEST/$name.log"
    return 0
}

env_report() {
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "python: $PY ($("$PY" --version 2>&1))"
    echo "jsonargparse: $([ "$HAVE_JSONARGPARSE" = 1 ] && echo present || echo absent)"
    echo "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    command -v nvidia-smi >/dev/null && timeout 10 nvidia-smi
    timeout 30 "$PY" - <<'PYEOF'
from importlib.metadata import PackageNotFoundError, version
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0), "capability", torch.cuda.get_device_capability(0))
# The installed versions, read from the packages' metadata: importing each would cost seconds of device time.
for name in ("lightning", "torchvision", "torchmetrics", "pytest", "hypothesis", "jsonargparse", "matplotlib"):
    try:
        print(name, version(name))
    except PackageNotFoundError as e:
        print(name, "absent", type(e).__name__)
PYEOF
}

# Test files that import the CLI need jsonargparse: left out when it is absent (none of them has CUDA tests).
IGNORE=()
if [ "$HAVE_JSONARGPARSE" = 0 ]; then
    for f in tests/test_*.py; do
        grep -q "lightning_ref.cli" "$f" && IGNORE+=("--ignore=$f")
    done
fi

echo "device check: $([ "$DRY" = 1 ] && echo 'CPU dry run' || echo CUDA), results in $DEST"
t0="$(date +%s)"
env_report >"$DEST/env.log" 2>&1
printf '| env | 0 | %s | env.log |\n' "$(($(date +%s) - t0))" >>"$STATUS"
run tests "${LIMIT[0]}" "$PY" -m pytest -q -rs -p no:cacheprovider -k cuda --junitxml="$DEST/tests.xml" \
    "${IGNORE[@]}" tests/
run gradients "${LIMIT[1]}" "$PY" -m manualnet.gradient_report
run benchmark "${LIMIT[2]}" "$PY" -m lightning_ref.bench --device "$DEVICE" "${BENCH_ARGS[@]}" \
    --json "$DEST/benchmark.json" --plot "$DEST/step_time.png"
run train "${LIMIT[3]}" "$PY" -m lightning_ref.bench --device "$DEVICE" "${FIT_ARGS[@]}" --json "$DEST/train.json"
run train_compiled "${LIMIT[4]}" "$PY" -m lightning_ref.bench --device "$DEVICE" "${FIT_ARGS[@]}" --fit-compile \
    --json "$DEST/train_compiled.json"
if [ "$HAVE_JSONARGPARSE" = 1 ]; then
    run cli_train "${LIMIT[5]}" "$PY" scripts/train.py fit --data.dataset synthetic "${CLI_DATA[@]}" \
        --trainer.max_epochs "$EPOCHS" --trainer.accelerator "$([ "$DEVICE" = cuda ] && echo gpu || echo cpu)" \
        --trainer.devices 1 --trainer.logger.init_args.save_dir "$DEST/cli_runs" --trainer.enable_progress_bar false
elif [[ " $ONLY " == *" cli_train "* ]]; then
    printf '| cli_train | skipped: jsonargparse absent (train used the Trainer API) | 0 | - |\n' >>"$STATUS"
fi

{
    echo "# device check $([ "$DRY" = 1 ] && echo '(CPU dry run)')"
    echo
    cat "$STATUS"
    for name in benchmark train train_compiled; do
        [ -f "$DEST/$name.log" ] || continue
        echo
        echo "## $name"
        echo
        sed -n '/^device: /,/^json: /p' "$DEST/$name.log" | grep -v '^json: '
    done
    for f in "$DEST"/cli_runs/*/version_*/metrics.json; do
        [ -f "$f" ] || continue
        echo
        echo "## CLI run: ${f#"$DEST"/}"
        echo
        echo '```json'
        cat "$f"
        echo '```'
    done
    if [ -f "$DEST/gradients.log" ]; then
        echo
        echo "## gradient report"
        echo
        cat "$DEST/gradients.log"
    fi
} >"$DEST/summary.md"
echo "summary: $DEST/summary.md"
exit "$FAILED"
