#!/usr/bin/env bash
# Old against new, side by side on pinned cores of an otherwise idle host (README "Speed", docs/speed.md).
#   bash docs/scripts/bench_pairs.sh OLD_TREE ENV_ID [BENCH_ARGS ...]
# OLD_TREE: a checkout or `git archive` of the older commit, unpacked. The new tree is the current directory.
# Runs the new code on cores 2 6 10 and the old on 4 8 12 at once, then again with the cores swapped (six runs of
# each, every one `python -m envs.bench --env ENV_ID BENCH_ARGS --json`), and prints each side's native rate,
# DummyVecEnv rate and ratio with their medians. JSON files go to $OUT (default ./bench_pairs); CORES_A and
# CORES_B (default "2 6 10" and "4 8 12") choose the cores.
set -u
old="$1"; env_id="$2"; shift 2
args=("$@"); [ ${#args[@]} -eq 0 ] && args=(--sizes 256 --repeats 3)
out="${OUT:-bench_pairs}"; mkdir -p "$out"
export PYTHONUNBUFFERED=1
pp="${PYTHONPATH:-}"
# compile both trees' kernels once (numba's cache), untimed
python3 -m envs.bench --env "$env_id" --sizes 8 --repeats 1 >/dev/null 2>&1 &
(cd "$old" && PYTHONPATH="$old${pp:+:$pp}" python3 -m envs.bench --env "$env_id" --sizes 8 --repeats 1 >/dev/null 2>&1)
wait
for round in 1 2; do
  a="${CORES_A:-2 6 10}"; b="${CORES_B:-4 8 12}"
  if [ "$round" = 1 ]; then new_cores="$a"; old_cores="$b"; else new_cores="$b"; old_cores="$a"; fi
  for c in $new_cores; do
    taskset -c "$c" python3 -m envs.bench --env "$env_id" "${args[@]}" --json "$out/new_r${round}_c$c.json" >"$out/new_r${round}_c$c.log" 2>&1 &
  done
  for c in $old_cores; do
    (cd "$old" && PYTHONPATH="$old${pp:+:$pp}" taskset -c "$c" python3 -m envs.bench --env "$env_id" "${args[@]}" \
      --json "$out/old_r${round}_c$c.json" >"$out/old_r${round}_c$c.log" 2>&1) &
  done
  wait
done
OUT_DIR="$out" python3 - <<'PY'
import glob, json, os, statistics
for tag in ("new", "old"):
    rows = [json.load(open(f))["rows"][0] for f in sorted(glob.glob(os.path.join(os.environ["OUT_DIR"], f"{tag}_*.json")))]
    if not rows:
        print(tag, "no results: see the .log files"); continue
    n, d, q = ([r[k] for r in rows] for k in ("native_steps_per_s", "dummy_steps_per_s", "ratio"))
    print(f"{tag}: native {[round(x) for x in n]} median {statistics.median(n):,.0f}; dummy {[round(x) for x in d]}; "
          f"ratio {[round(x, 2) for x in q]} median {statistics.median(q):.2f}")
PY
