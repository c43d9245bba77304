#!/usr/bin/env bash
# The project's GPU check (issue 21), for a lent machine with one GPU, 16 cores, Python 3 with torch
# and no package registry. Run from the project root after `make gpu-wheels` put the missing wheels
# in .gpu/whl and the polars stand-in in .gpu/stand-in (../shared/gpu/README.md):
#   OUT=/some/folder bench/gpu_check.sh          (or: make gpu-check)
# Steps: install the wheels into a scratch folder; nvidia-smi's facts; `pytest -m gpu`; the demo
# sweep on GPU 0; bench/bench_gpu.py (experiment=gpu_bench sequential and packed three to a GPU,
# the overhead pair against plain `yolo train`), with `nvidia-smi dmon` beside every sweep. Each step
# has its own timeout, all within 8 minutes; a failing step is noted and the next one runs.
# Writes into $OUT (default: gpu-check-out): gpu-<timestamp>.json (bench_gpu's record, also under
# bench/results/), steps.txt (each step's exit code and seconds), nvidia-smi.csv, logs.tar.gz.
# GPU_CHECK_SKIP="pytest_gpu demo_sweep" leaves those steps out (a rerun of the benchmark alone);
# GPU_CHECK_SECONDS (default 465) is the whole check's deadline.
# GPU_CHECK_DRY=1 runs the same steps on the CPU at the tests' tiny sizes, without nvidia-smi and,
# when .gpu/whl is absent, without installing: a check of this script on a machine without a GPU.
set -u
cd "$(dirname "$0")/.."
DRY=${GPU_CHECK_DRY:-0}
PY=${PYTHON:-python3}
OUT=${OUT:-gpu-check-out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d -t gpu-check-XXXXXX)
LOGS=$WORK/logs
mkdir -p "$LOGS"
T0=$(date +%s)
# The lent machine's 8 minutes, less the archive at the end; a dry run's tiny trainings on a
# 2-core CPU take about four times as long as the real ones on the GPU.
SLOW=$( ((DRY)) && echo 4 || echo 1)
DEADLINE=$((T0 + ${GPU_CHECK_SECONDS:-465} * SLOW))

log() { echo "[$(($(date +%s) - T0)) s] $*" | tee -a "$OUT/steps.txt"; }

# at most $1 seconds, keeping $2 seconds for the steps after it (never under 10), both x SLOW
limit() {
  local left=$((DEADLINE - $(date +%s) - $2 * SLOW))
  local want=$(($1 * SLOW))
  ((left < want)) && want=$left
  ((want < 10)) && want=10
  echo "$want"
}

# step NAME SECONDS COMMAND...: run with a timeout, log the outcome, carry on either way
step() {
  local name=$1 seconds=$2 started rc
  shift 2
  if [[ " ${GPU_CHECK_SKIP:-} " == *" $name "* ]]; then
    log "$name: skipped (GPU_CHECK_SKIP)"
    return
  fi
  started=$(date +%s)
  log "$name: start (limit $seconds s)"
  timeout -k 10 "$seconds" "$@" >"$LOGS/$name.log" 2>&1
  rc=$?
  log "$name: exit $rc after $(($(date +%s) - started)) s$( ((rc == 124 || rc == 137)) && echo ' (TIMED OUT)')"
  tail -3 "$LOGS/$name.log" | sed 's/^/    /' | tee -a "$OUT/steps.txt"
}

with_dmon() { # with_dmon NAME COMMAND...: nvidia-smi dmon beside the command, into the logs
  local name=$1 dmon=""
  shift
  if ! ((DRY)) && command -v nvidia-smi >/dev/null; then
    nvidia-smi dmon -s um -d 1 -o DT >"$LOGS/dmon_$name.txt" 2>&1 &
    dmon=$!
  fi
  "$@"
  [ -z "$dmon" ] || kill "$dmon" 2>/dev/null
}

: >"$OUT/steps.txt"
log "gpu check in $WORK, results to $OUT (dry run: $DRY)"

SITE=$WORK/site
if compgen -G ".gpu/whl/*.whl" >/dev/null; then
  step install 90 "$PY" -m pip install --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .gpu/whl/*.whl
elif ! ((DRY)); then
  log "install: no wheels in .gpu/whl (make gpu-wheels): using what $PY has"
fi
export PYTHONPATH=$SITE:$PWD/.gpu/stand-in:$PWD${PYTHONPATH:+:$PYTHONPATH}
export YOLO_OFFLINE=true YOLO_AUTOINSTALL=false PYTHONUNBUFFERED=1 MPLBACKEND=Agg HYDRA_FULL_ERROR=1

if ((DRY)); then
  DEVICE=cpu
  read -r -a TINY <<<"$("$PY" -c 'from tests.conftest import TINY; print(" ".join(TINY))')"
  QUICK=(--quick)
else
  DEVICE=0
  TINY=()
  QUICK=()
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_mode,mig.mode.current,persistence_mode,power.limit,clocks.max.sm \
    --format=csv >"$OUT/nvidia-smi.csv" 2>&1
  nvidia-smi -q >"$LOGS/nvidia-smi-q.txt" 2>&1
  cat "$OUT/nvidia-smi.csv"
  { nproc; free -g | head -2; df -h /dev/shm; } 2>&1 | tee -a "$OUT/steps.txt" # loaders pass batches through /dev/shm
fi
"$PY" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available())' \
  2>&1 | tee -a "$OUT/steps.txt"

# The gpu_bench data (about 1.5 min on one core) is drawn beside pytest, which needs little CPU.
BENCH=$WORK/bench
timeout -k 10 "$(limit 300 160)" "$PY" bench/bench_gpu.py --prepare --root "$BENCH" "${QUICK[@]}" >"$LOGS/prepare.log" 2>&1 &
PREPARE=$!

mapfile -t GPU_TESTS < <(grep -l "mark.gpu" tests/test_*.py)
step pytest_gpu "$(limit 150 270)" "$PY" -m pytest -m gpu "${GPU_TESTS[@]}" -q -p no:cacheprovider -o addopts="" -rA

with_dmon demo step demo_sweep "$(limit 120 190)" env FREEZE_SWEEP_ROOT="$WORK/demo" \
  "$PY" -m sweep -m "${TINY[@]}" train.device=$DEVICE

wait "$PREPARE"
log "prepare: exit $? ($(tail -1 "$LOGS/prepare.log"))"

BUDGET=$(limit 400 10)
step bench_gpu "$BUDGET" "$PY" bench/bench_gpu.py --root "$BENCH" --logs "$LOGS/bench" --budget-s $((BUDGET - 15 * SLOW)) "${QUICK[@]}"
RECORD=$(grep -o 'bench/results/gpu-[0-9TZ]*\.json' "$LOGS/bench_gpu.log" | tail -1)
if [ -n "$RECORD" ] && [ -f "$RECORD" ]; then
  cp "$RECORD" "$OUT/"
  log "record: $RECORD"
else
  log "record: none written (see bench_gpu.log)"
fi

find "$WORK" \( -path "$WORK/site" -o -path "$LOGS" -o -name mlartifacts \) -prune -o \
  \( -name '*.log' -o -name 'report.md' -o -name 'results.csv' \) -print |
  while read -r f; do mkdir -p "$LOGS/runs/$(dirname "${f#"$WORK"/}")" && cp "$f" "$LOGS/runs/${f#"$WORK"/}"; done
tar -czf "$OUT/logs.tar.gz" -C "$WORK" logs
log "done in $(($(date +%s) - T0)) s: $(ls "$OUT" | tr '\n' ' ')"
rm -rf "$WORK"
