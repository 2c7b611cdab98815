#!/usr/bin/env bash
# OUT=DIR [NCPU W STEPS ENV_KWARGS="K=V ..."] bash agents/zoo/train_prefix_eviction.sh [full|small] [seeds options, e.g. --dry-run]: agents/zoo/seeds.py SEED_RUNS["prefix_eviction"] says what it runs.
PYTHONPATH="$(cd "$(dirname "$0")/../.." && pwd)${PYTHONPATH:+:$PYTHONPATH}" exec python3 -m agents.zoo seeds prefix_eviction "$@"
