#!/usr/bin/env bash
# OUT=DIR [NCPU W STEPS ENV_KWARGS="K=V ..."] bash agents/zoo/train_expert_placement.sh [full|small] [seeds options, e.g. --dry-run]: agents/zoo/seeds.py SEED_RUNS["expert_placement"] says what it runs.
PYTHONPATH="$(cd "$(dirname "$0")/../.." && pwd)${PYTHONPATH:+:$PYTHONPATH}" exec python3 -m agents.zoo seeds expert_placement "$@"
