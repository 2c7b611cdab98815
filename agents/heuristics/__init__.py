"""Heuristics and oracles of every environment; importing registers them by ``--policy`` name."""

from agents.heuristics import kv_admission  # noqa: F401
