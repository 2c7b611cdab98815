#!/usr/bin/env bash
# OUT=DIR [NCPU W STEPS ENV_KWARGS="K=V ..." TEACHER=FILE (train stage) RL CANDIDATES SPLIT SHARD TIERS HARDWARE=NAME[:DRAWS[:SEED]]] bash agents/zoo/train_kv_admission.sh [full|small|tiers] [all|teacher|train] [seeds options, e.g. --dry-run]: agents/zoo/seeds.py SEED_RUNS["kv_admission"] says what it runs.
PYTHONPATH="$(cd "$(dirname "$0")/../.." && pwd)${PYTHONPATH:+:$PYTHONPATH}" exec python3 -m agents.zoo seeds kv_admission "$@"
