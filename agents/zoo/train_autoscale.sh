#!/usr/bin/env bash
# OUT=DIR [NCPU W STEPS SERVEGEN=DIR CACHE=DIR] bash agents/zoo/train_autoscale.sh [full|small] [seeds options, e.g. --dry-run]: agents/zoo/seeds.py SEED_RUNS["autoscale"] says what it runs.
# SERVEGEN: a folder holding ServeGen/data/language/{m-mid,m-small,m-large} (traces.servegen RECORDS pins them), read as
# $SERVEGYM_TRACE_DIR where ../shared/traces has no ServeGen; CACHE: the autoscale cache's parent ($SERVEGYM_CACHE),
# which holds the ServeGen replays and the oracle's plans once built.
[ -n "$SERVEGEN" ] && export SERVEGYM_TRACE_DIR="$(cd "$SERVEGEN" && pwd)"
[ -n "$CACHE" ] && export SERVEGYM_CACHE="$(cd "$CACHE" && pwd)"
PYTHONPATH="$(cd "$(dirname "$0")/../.." && pwd)${PYTHONPATH:+:$PYTHONPATH}" exec python3 -m agents.zoo seeds autoscale "$@"
