"""Policies (heuristics, oracles, learned agents), training glue, evaluation and export."""
