#!/usr/bin/env bash
# One seed of the PrefixEviction zoo recipe with other DAgger rounds / epochs (EXTRA: more --imitate-kwargs, e.g.
# EXTRA=beta0=0), into $W/NAME (default W=/tmp/i21pe3).
# usage: [EXTRA=...] bash train_variant.sh NAME ROUNDS EPOCHS [SEED]
N=$1; R=$2; EP=$3; S=${4:-0}; EXTRA=${EXTRA:-}
cd "$(dirname "$0")/../../../.."; mkdir -p "${W:-/tmp/i21pe3}"
T=$(realpath ../shared/traces/mooncake_conversation.jsonl)  # as agents.zoo recipe_args resolves it
PYTHONPATH=$PWD OMP_NUM_THREADS=1 nice -n 10 python3 -m agents.train --env servegym/PrefixEviction-v0 --env-kwargs \
 "workloads=('mooncake_conv-v1', '$T')" 'capacity_frac=(0.01,0.02,0.05,0.1,0.25)' \
 --imitate 96000 --timesteps 0 --n-envs 128 --imitate-kwargs "target='values'" rounds=$R epochs=$EP batch_size=512 max_grad_norm=None $EXTRA \
 --seed $S --no-eval --no-progress --out ${W:-/tmp/i21pe3}/$N > ${W:-/tmp/i21pe3}/$N.log 2>&1
echo rc $? >> ${W:-/tmp/i21pe3}/$N.log
