#!/usr/bin/env bash
# OUT=DIR [NCPU W STEPS ENV_KWARGS="K=V ..." SERVEGYM_TRACE_DIR SERVEGYM_CACHE] bash agents/zoo/train_autoscale.sh [full|small] [seeds options, e.g. --dry-run]: agents/zoo/seeds.py SEED_RUNS["autoscale"] says what it runs.
# SERVEGYM_TRACE_DIR: a folder holding ServeGen/data/language/{m-mid,m-small,m-large} where ../shared/traces has no ServeGen (traces.fetch.locate);
# SERVEGYM_CACHE: the autoscale disk cache's parent (envs.autoscale.model.cache_root), with the ServeGen replays and oracle plans once built.
PYTHONPATH="$(cd "$(dirname "$0")/../.." && pwd)${PYTHONPATH:+:$PYTHONPATH}" exec python3 -m agents.zoo seeds autoscale "$@"
