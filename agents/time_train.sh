#!/bin/bash
# Issue 16's training target, timed: `python train.py` (the README's first command) of an older
# checkout beside this one, each on its own two pinned cores, side by side, after a warm-up that
# fills both checkouts' numba caches (so neither timed run compiles kernels).
#
#   OUT=DIR bash agents/time_train.sh OLD_TREE [SEED]
#   OUT=DIR TRAIN_ARGS="--timesteps 8192 --env-kwargs window_requests=64" bash agents/time_train.sh OLD_TREE
#                                     (scaled down: TRAIN_ARGS go to every timed run)
#
# OLD_TREE: a plain copy of the older commit, e.g. `git archive 5558941 | tar -x -C old5558941`.
# Runs, each with --seed SEED (default 0) and --no-progress, from this repository's root:
#   old:        cores 0,1   OLD_TREE's `python train.py`
#   new:        cores 2,3   this checkout's `python train.py`
#   new_t2:     cores 4,5   this checkout's `python train.py --threads 2`
#   new_vp2:    cores 6,7   this checkout's `python train.py --vec-procs 2` (the envs in 2 workers; same run)
# Writes OUT/NAME.log (the command's output, then `wall_s`, and `cpu_s`: the train.py process's CPU and
# that of the children it waited for, which leaves out worker processes it did not reap: the heuristics'
# evaluation worker, --vec-procs workers)
# and OUT/NAME/ (run.json, eval.json); prints one line per run and the held-out score of each
# (the trained agent's slo_attainment and return_mean over the evaluation's loads, eval.json).
# About 1.3x the old run's wall time plus the kernels' compile time in all (warm-up in parallel, then
# the timed runs in parallel). Needs 12 cores for the pinning; with fewer (a test run) nothing is pinned.
set -euo pipefail
OLD=$(cd "${1:?usage: OUT=DIR bash agents/time_train.sh OLD_TREE [SEED]}" && pwd)
SEED=${2:-0}
NEW=$(pwd)
: "${OUT:?OUT must name an output directory}"
mkdir -p "$OUT"
[ -f "$OLD/train.py" ] || { echo "time_train.sh: $OLD/train.py: no such file (OLD_TREE is a checkout)" >&2; exit 2; }

read -r -a EXTRA <<< "${TRAIN_ARGS:-}"
PIN=1
[ "$(nproc)" -ge 12 ] || { PIN=0; echo "time_train.sh: $(nproc) cores, fewer than 12: runs not pinned" >&2; }

run() {  # NAME TREE CORES ARGS...: train.py in TREE pinned to CORES; wall and CPU seconds appended to the log
    local name=$1 tree=$2 cores=$3
    shift 3
    local pin=()
    [ "$PIN" = 1 ] && pin=(taskset -c "$cores")
    (cd "$tree" && PYTHONPATH="$tree${PYTHONPATH:+:$PYTHONPATH}" "${pin[@]}" python -c '
import resource, subprocess, sys, time
t = time.perf_counter()
rc = subprocess.call([sys.executable, "train.py", *sys.argv[1:]])
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"rc {rc} wall_s {time.perf_counter() - t:.1f} cpu_s {r.ru_utime + r.ru_stime:.1f}")
sys.exit(rc)' "$@") > "$OUT/$name.log" 2>&1
}

# warm-up: a short run of each checkout compiles (and caches) the kernels training and evaluation use
run warm_old "$OLD" 8,9 --timesteps 4096 --eval-episodes 1 --no-progress --out "$OUT/warm_old" &
run warm_new "$NEW" 10,11 --timesteps 4096 --eval-episodes 1 --no-progress --out "$OUT/warm_new" &
wait

run old "$OLD" 0,1 --seed "$SEED" --no-progress --out "$OUT/old" "${EXTRA[@]}" &
run new "$NEW" 2,3 --seed "$SEED" --no-progress --out "$OUT/new" "${EXTRA[@]}" &
run new_t2 "$NEW" 4,5 --seed "$SEED" --no-progress --threads 2 --out "$OUT/new_t2" "${EXTRA[@]}" &
run new_vp2 "$NEW" 6,7 --seed "$SEED" --no-progress --vec-procs 2 --out "$OUT/new_vp2" "${EXTRA[@]}" &
wait

for name in old new new_t2 new_vp2; do
    python - "$OUT" "$name" <<'EOF'
import json, sys
out, name = sys.argv[1:]
tail = open(f"{out}/{name}.log").read().strip().splitlines()[-1]
agent = json.load(open(f"{out}/{name}/eval.json"))["results"][0]["metrics"]
print(f"{name:7s} {tail}  slo_attainment {agent['slo_attainment']:.4f} return_mean {agent['return_mean']:.1f}")
EOF
done
