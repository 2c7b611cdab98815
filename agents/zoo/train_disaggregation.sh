#!/usr/bin/env bash
# OUT=DIR [NCPU W STEPS ENV_KWARGS="K=V ..." N_ENVS TEACHER=FILE (train stage)] bash agents/zoo/train_disaggregation.sh [full|small] [all|teacher|train] [seeds options, e.g. --dry-run]: agents/zoo/seeds.py SEED_RUNS["disaggregation"] says what it runs.
PYTHONPATH="$(cd "$(dirname "$0")/../.." && pwd)${PYTHONPATH:+:$PYTHONPATH}" exec python3 -m agents.zoo seeds disaggregation "$@"
