"""ExpertPlacement-v0 plays the recorded episodes bit for bit (issue 16: the load generator and the
cluster model got faster, the results did not change). ``tests/golden/expert_placement.json`` was
recorded by ``tests/golden/expert_placement_golden.py`` on the code of commit 711ea3f (before issue
16's first ExpertPlacement change) for envs/expert_placement and traces/moe.py: SHA-256 of every
episode's expert counts and of every observation, mask, reward and done flag, metrics as exact floats.
The observation digests were re-recorded on b8730e7 (issue 21's features in time; counts and metrics
unchanged); counts, observations and metrics were re-recorded for expert_load-v2 (the generator draws
with ``traces.portable``, the same counts on every machine; each case's inputs unchanged)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"
sys.path.insert(0, str(GOLDEN))
import expert_placement_golden as G  # noqa: E402

RECORD = json.loads((GOLDEN / "expert_placement.json").read_text())["cases"]


@pytest.mark.parametrize("name", list(G.CASES))
def test_episodes_bit_identical_to_the_record(name):
    got = G.play(name)
    want = RECORD[name]
    # Inputs that moved fail rather than skip (a skip hid two Disaggregation golden cases for two days):
    # whoever changes them on purpose re-records the cases they move, in the same commit.
    assert got["inputs"] == want["inputs"], (
        f"{name}: the scenario's inputs (hwmodels costs, initial placement) differ from the record's, so the "
        f"episodes cannot be compared; if they changed on purpose, re-record with "
        f"`python tests/golden/expert_placement_golden.py --out FILE` and say why in the commit")
    assert G.compare(name, got, want) == []


def test_compare_sees_a_changed_metric_and_load():
    want = RECORD["default_eplb"]
    got = json.loads(json.dumps(want))
    got["metrics"][1]["moe_layer_time_s"] = (float.fromhex(want["metrics"][1]["moe_layer_time_s"]) * (1 + 2**-52)).hex()
    got["counts"][2] = "0" * 64
    bad = G.compare("x", got, want)
    assert any("moe_layer_time_s" in b for b in bad) and any("expert counts" in b for b in bad)
