#!/bin/bash
# Issue 16's training target over seeds: `python train.py` under several configurations x 5 seeds, every run
# pinned to ONE core of its own, all side by side (one core per run while there are cores, then a queue feeds
# the rest; the defaults make 15 runs, 16 with OLD_TREE), after a warm-up that fills the numba caches; then
# the held-out score of every snapshot the full-length runs kept.
#
#   OUT=DIR bash agents/time_train_grid.sh [OLD_TREE]
#   OUT=DIR TRAIN_ARGS="--timesteps 8192 --env-kwargs window_requests=64" SNAPSHOTS=4096 \
#       SEEDS="0 1" bash agents/time_train_grid.sh          (scaled down: a test of the script, any core count)
#
# Configurations (CONFIGS overrides them: one "NAME ARGS..." per line; ARGS are train.py flags):
#   base           this checkout's RL defaults (--imitate 0: KVAdmission-v0's MaskablePPO, [64, 64] x 4 epochs,
#                  200k steps; with no flag `python train.py` runs the DAgger recipe since 2026-12-03)
#   prev           the defaults before them (29e4ff3: [128, 128] x 5 epochs, 300k steps); the grid that chose
#                  the new ones (2026-12-01, this script's earlier configurations, seeds 0-4): docs/speed.md
# and with OLD_TREE (a plain copy of an older checkout, e.g. `git archive c4f1388 | tar -x -C old`) its
# `python train.py --seed 0`, first in the queue, as `old`.
# Runs are queued configuration by configuration (OLD_TREE's first): on 16 cores the default 15 runs and old
# run side by side; runs beyond one per core (more configurations or seeds) start as cores free up, on a less
# loaded machine, and their wall times are not comparable with the first ones' (their scores are).
# TRAIN_ARGS go to every run after the configuration's own flags, so they override them (the scaled-down mode's
# --timesteps shortens every configuration; before them, prev's own --timesteps 300000 won); a flag taking a list
# (--hyperparams, --env-kwargs) in both is refused, as the later list would replace the earlier.
# SEEDS (default "0 1 2 3 4"). SNAPSHOTS="" keeps none (and skips their evaluation).
# CORES_PER_RUN (default 1) pins each run to that many cores instead (2: the heuristics' evaluation worker,
# agents/eval_ahead.py, gets a core beside training, as on any machine of two or more cores; on one core there
# is no worker and the heuristics are evaluated after training, in the run's process).
# Configurations without their own --timesteps also keep SNAPSHOTS (default "100000 150000", train.py
# --snapshots): `python -m agents.snapshot_eval` scores each after the timed runs, the held-out score a run of
# --timesteps N would reach (the same model: agents/training.py SnapshotCallback), i.e. a learning curve.
#
# Writes OUT/NAME_sSEED.log (train.py's output, then `rc`, `wall_s` and `cpu_s`: the train.py process's CPU and
# that of the children it reaped, which leaves out a heuristics' evaluation worker where CORES_PER_RUN >= 2
# starts one), OUT/NAME_sSEED/ (run.json, eval.json, steps_N.zip, eval_steps_N.json),
# OUT/summary.txt: per configuration the median wall time (and its ratio to base and old), mean CPU, and the
# trained agent's held-out slo_attainment (eval.json, mean over the evaluation's loads): each seed, mean and sd;
# then per snapshot step the same score.
# For each snapshot step it also prints an estimated wall time of a run of that many steps: the run's wall time
# less the training time (run.json train_wall_s) of the rollouts it would not have run. An estimate; the
# _short configuration is the measured one.
# Wall: the warm-up (1-3 min: it compiles OLD_TREE's kernels from scratch), then the longest run on one core
# (c4f1388 with OLD_TREE: ~2 min; a 2-core-pinned default run took 50 s on the GPU machine's host, c4f1388
# 114 s), then the snapshot evaluations (~30 s): 5-6 min expected on its 16 cores.
set -euo pipefail
[ -n "${OUT:-}" ] || { echo "time_train_grid.sh: OUT must name an output directory" >&2; exit 2; }
OLD=""
if [ $# -ge 1 ]; then
    [ -d "$1" ] || { echo "time_train_grid.sh: OLD_TREE $1: no such directory" >&2; exit 2; }
    OLD=$(cd "$1" && pwd)
    [ -f "$OLD/train.py" ] || {
        echo "time_train_grid.sh: $OLD/train.py: no such file (OLD_TREE is a checkout)" >&2
        exit 2
    }
fi
NEW=$(pwd)
[ -f "$NEW/agents/time_train_grid.sh" ] || { echo "time_train_grid.sh: run it from the repository root" >&2; exit 2; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SEEDS=${SEEDS:-0 1 2 3 4}
[ -n "${SEEDS// /}" ] || { echo "time_train_grid.sh: SEEDS is empty (no run to time)" >&2; exit 2; }
SHORT=${SHORT_STEPS:-200000}  # a configuration NAME_short (--timesteps SHORT) is checked against NAME's snapshot
SNAPS=${SNAPSHOTS-100000 150000}
CONFIGS=${CONFIGS:-"base --imitate 0
prev --timesteps 300000 --hyperparams policy_kwargs.net_arch=[128,128] n_epochs=5"}
read -r -a EXTRA <<< "${TRAIN_ARGS:-}"
# the cores this script may use (its own affinity: `taskset -c 6-15 bash agents/time_train_grid.sh` runs a grid
# beside another), numbered 0 .. NCORES-1 below
read -r -a CORES <<< "$(python3 -c 'import os; print(*sorted(os.sched_getaffinity(0)))')"
NCORES=${#CORES[@]}
PER=${CORES_PER_RUN:-1}
[[ "$PER" =~ ^[0-9]+$ ]] && [ "$PER" -ge 1 ] && [ "$PER" -le "$NCORES" ] || {
    echo "time_train_grid.sh: CORES_PER_RUN=$PER: must be 1..$NCORES" >&2
    exit 2
}

# run NAME TREE CORES ARGS...: train.py of TREE pinned to CORES, wall and CPU seconds appended to OUT/NAME.log
run() {
    local name=$1 tree=$2 core=$3
    shift 3
    (cd "$tree" && PYTHONPATH="$tree${PYTHONPATH:+:$PYTHONPATH}" taskset -c "$core" python -c '
import resource, subprocess, sys, time
t = time.perf_counter()
rc = subprocess.call([sys.executable, "train.py", *sys.argv[1:]])
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"rc {rc} wall_s {time.perf_counter() - t:.1f} cpu_s {r.ru_utime + r.ru_stime:.1f}")
sys.exit(rc)' "$@") > "$OUT/$name.log" 2>&1 || echo "time_train_grid.sh: $name failed (rc $?): $OUT/$name.log" >&2
}

# the job list, one "NAME TREE ARGS..." per line: old first (the longest), then configuration by configuration
JOBS="$OUT/jobs.txt"
: > "$JOBS"
[ -n "$OLD" ] && echo "old_s0 $OLD --seed 0 --no-progress --out $OUT/old_s0 ${EXTRA[*]}" >> "$JOBS"
while read -r name args; do
    [ -n "$name" ] || continue
    snap=""
    [[ " $args " == *" --timesteps "* || -z "${SNAPS// /}" ]] || snap="--snapshots $SNAPS"
    for flag in --hyperparams --env-kwargs; do
        if [[ " $args " == *" $flag "* && " ${EXTRA[*]} " == *" $flag "* ]]; then
            echo "time_train_grid.sh: TRAIN_ARGS and configuration $name both give $flag" \
                "(give it once)" >&2
            exit 2
        fi
    done
    for seed in $SEEDS; do
        echo "${name}_s$seed $NEW --seed $seed --no-progress --out $OUT/${name}_s$seed $args ${EXTRA[*]} $snap" \
            >> "$JOBS"
    done
done <<< "$CONFIGS"

# warm-up: a short run of each checkout compiles (and caches) the kernels training and evaluation use
run warm_new "$NEW" "${CORES[0]}" --timesteps 4096 --eval-episodes 1 --no-progress --out "$OUT/warm_new" &
[ -n "$OLD" ] && run warm_old "$OLD" "${CORES[$((1 % NCORES))]}" --timesteps 4096 --eval-episodes 1 --no-progress \
    --out "$OUT/warm_old" &
wait

# one worker per CORES_PER_RUN cores, each taking the next job from the list (flock), so every run has its
# cores to itself
worker() {
    local core=$1 line
    while :; do
        line=$(flock "$JOBS.lock" bash -c 'head -n 1 "$1"; sed -i 1d "$1"' _ "$JOBS")
        [ -n "$line" ] || return 0
        read -r -a job <<< "$line"
        run "${job[0]}" "${job[1]}" "$core" "${job[@]:2}"
    done
}
cp "$JOBS" "$OUT/jobs_all.txt"
for ((c = 0; c + PER <= NCORES; c += PER)); do
    cores=("${CORES[@]:c:PER}")
    worker "$(IFS=,; echo "${cores[*]}")" &
done
wait

# held-out scores of the snapshots (after the timed runs: not pinned, all cores)
for d in "$OUT"/*_s*/; do
    if [ -f "$d/steps_${SNAPS%% *}.zip" ]; then echo "${d%/}"; fi
done | xargs -r -P "$NCORES" -n 1 python -m agents.snapshot_eval > "$OUT/snapshots.txt"

python - "$OUT" "$SNAPS" "$SHORT" <<'EOF' | tee "$OUT/summary.txt"
import json, math, re, statistics as st, sys
from pathlib import Path
from agents.training import HYPERPARAMS, merge_hyperparams
out, snaps, short = Path(sys.argv[1]), [int(n) for n in sys.argv[2].split()], int(sys.argv[3])
names = [line.split()[0] for line in (out / "jobs_all.txt").read_text().splitlines()]
configs = list(dict.fromkeys(re.sub(r"_s\d+$", "", n) for n in names))
rows = {}
for cfg in configs:
    walls, cpus, scores, snap, est = [], [], [], {n: [] for n in snaps}, {n: [] for n in snaps}
    for name in [n for n in names if re.sub(r"_s\d+$", "", n) == cfg]:
        log = (out / f"{name}.log").read_text().strip().splitlines()
        m = re.match(r"rc (\d+) wall_s ([\d.]+) cpu_s ([\d.]+)", log[-1] if log else "")
        if not m or m[1] != "0":
            print(f"{name}: failed, see {out / name}.log")
            continue
        walls.append(float(m[2])); cpus.append(float(m[3]))
        scores.append(json.loads((out / name / "eval.json").read_text())["results"][0]["metrics"]["slo_attainment"])
        run = json.loads((out / name / "run.json").read_text())
        for n in snaps:
            f = out / name / f"eval_steps_{n}.json"
            if f.is_file():
                snap[n].append(json.loads(f.read_text())["results"][0]["metrics"]["slo_attainment"])
                params = merge_hyperparams(HYPERPARAMS[run["env"]][run["algo"]], run["hyperparams"])
                rollout = run["n_envs"] * params["n_steps"]
                total = run["timesteps"] // rollout  # rollouts run; a --timesteps n run stops after ceil(n / rollout)
                est[n].append(walls[-1] - run["train_wall_s"] * (1 - math.ceil(n / rollout) / total))
    rows[cfg] = walls, cpus, scores, snap, est

def score(v):
    sd = f" sd {st.stdev(v):.3f}" if len(v) > 1 else ""
    return f"{' / '.join(f'{x:.3f}' for x in v)} (mean {st.mean(v):.3f}{sd})" if v else "-"

base = st.median(rows["base"][0]) if rows.get("base", [[]])[0] else None
old = st.median(rows["old"][0]) if rows.get("old", [[]])[0] else None
print(f"{'config':14s} runs  wall median  vs base  vs old  cpu mean  held-out slo_attainment (seeds in order)")
def ratios(w):
    return (f"{w / base:.2f}x" if base else "-"), (f"{w / old:.2f}x" if old else "-")

for cfg, (walls, cpus, scores, snap, est) in rows.items():
    if not walls:
        continue
    w = st.median(walls)
    vb, vo = ratios(w)
    print(f"{cfg:14s} {len(walls):4d}  {w:9.1f} s  {vb:>7s}  {vo:>6s}  {st.mean(cpus):6.1f} s  {score(scores)}")
    for n, v in snap.items():
        if v:
            e = st.median(est[n])
            eb, eo = ratios(e)
            print(f"{'':14s} snapshot at {n} steps (a --timesteps {n} run's final model): {score(v)}; "
                  f"estimated wall {e:.1f} s ({eb} vs base, {eo} vs old)")
# the snapshot claim, checked: CFG_short (--timesteps SHORT) scores as CFG's snapshot at SHORT, seed for seed
for cfg, (_, _, scores, _, _) in rows.items():
    full = rows.get(cfg.removesuffix("_short")) if cfg.endswith("_short") else None
    if full and scores and full[3].get(short):
        same = scores == full[3][short]
        print(f"check: {cfg} held-out scores {'equal' if same else 'DIFFER from'} {cfg.removesuffix('_short')}'s "
              f"snapshot at {short}")
EOF
