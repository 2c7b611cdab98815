"""Observation versions (agents.obs_version): recorded in checkpoints and ONNX exports, checked at load.

A checkpoint trained on another version of its environment's observation is refused in one line; one
that records none (made before versions were recorded) warns once per file; the zoo's files carry the
version with their weights untouched. Also envs.core.capacity's one-line error where no capacity can
be measured (a count unit of inf would zero every count feature)."""

from __future__ import annotations

import json
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

import envs
from agents import obs_version as OV
from agents.policy import ZOO, make_policy
from agents.zoo import RECIPES, zoo_role

KV = "servegym/KVAdmission-v0"
ROUTING = "servegym/Routing-v0"


def _rewrite(src: Path, dst: Path, record: dict | None) -> Path:
    """``src`` copied to ``dst`` with its servegym.json replaced by ``record`` (None: removed)."""
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w") as out:
        for info in z.infolist():
            if info.filename != OV.MEMBER:
                out.writestr(info, z.read(info.filename), compress_type=info.compress_type)
        if record is not None:
            out.writestr(OV.MEMBER, json.dumps(record))
    return dst


def test_every_environment_and_role_has_a_documented_version():
    ids = [*envs.PACKAGES, "servegym/ExpertPlacementParallel-v0"]
    for env_id in ids:
        v, meanings = envs.observation_version(env_id)
        assert v in meanings and all(isinstance(m, str) and m for m in meanings.values()), env_id
    assert envs.observation_version(KV)[0] == 2  # request counts in capacity units since issue 21
    assert set(envs.observation_version(KV)[1]) == {1, 2}
    assert all(envs.observation_version(e)[0] == 1 for e in ids if e != KV)
    # MultiCluster-v0's seats see the single-agent observations (and their versions)
    assert envs.observation_layout("servegym/MultiCluster-v0", "admission") == KV
    assert envs.observation_version("servegym/MultiCluster-v0", "admission")[0] == 2
    assert envs.observation_layout("servegym/MultiCluster-v0", "router") == ROUTING
    with pytest.raises(KeyError, match="role None unknown; its roles: admission, autoscaler, router"):
        envs.observation_version("servegym/MultiCluster-v0")
    assert envs.observation_roles("servegym/MultiCluster-v0") == ["admission", "autoscaler", "router"]
    assert envs.observation_roles(KV) == []
    with pytest.raises(KeyError, match="unknown environment 'servegym/Nope-v0'"):
        envs.observation_version("servegym/Nope-v0")


def test_zoo_checkpoints_carry_the_current_version():
    """Every committed zoo file records the version this servegym builds (``python -m agents.zoo stamp``
    when a new one is committed; a file without it fails here)."""
    assert ZOO
    for env_id, path in ZOO.items():
        rec = OV.read_zip(path)
        assert rec == OV.record(env_id, zoo_role(env_id)), path
        OV.check(path, rec)  # no error


def test_stamp_appends_and_keeps_the_weights_bytes(tmp_path):
    src = _rewrite(ZOO[ROUTING], tmp_path / "plain.zip", None)
    before = src.read_bytes()
    with zipfile.ZipFile(src) as z:
        old = {n: z.read(n) for n in z.namelist()}
        start = z.start_dir  # the old local entries (every member's stored bytes) end here
    rec = OV.stamp_zip(src, ROUTING)
    assert rec == {"env_id": ROUTING, "role": None, "observation_layout": ROUTING, "observation_version": 1}
    with zipfile.ZipFile(src) as z:
        assert {n: z.read(n) for n in z.namelist() if n != OV.MEMBER} == old
        assert z.namelist()[-1] == OV.MEMBER
    assert src.read_bytes()[:start] == before[:start]
    assert OV.read_zip(src) == rec
    again = src.read_bytes()
    OV.stamp_zip(src, ROUTING)  # the same record: the file is left alone
    assert src.read_bytes() == again
    with pytest.raises(ValueError, match="no 'data' member"):
        (tmp_path / "x.zip").write_bytes(b"")
        with zipfile.ZipFile(tmp_path / "x.zip", "w") as z:
            z.writestr("other", "1")
        OV.stamp_zip(tmp_path / "x.zip", ROUTING)


def test_a_checkpoint_of_an_earlier_version_is_refused_in_one_line(tmp_path):
    old = _rewrite(ZOO[KV], tmp_path / "kv_x.zip", {**OV.record(KV), "observation_version": 1})
    vec = envs.make_vec(KV, 1, seed=0)
    with pytest.raises(OV.ObservationMismatch) as err:
        make_policy(str(old), vec, KV)
    msg = str(err.value)
    assert msg == (f"{old}: trained on {KV} observation v1 (request counts over max_seqs: queue_len "
                   "log2(1 + queued) / 10, running and decoding / max_seqs); this servegym builds v2 (request "
                   "counts in capacity units (envs.core.capacity.count_unit, issue 21): queue_len "
                   "log2(1 + queued / unit) / 4, running and decoding / unit); retrain")
    assert "\n" not in msg
    future = _rewrite(ZOO[KV], tmp_path / "kv_y.zip", {**OV.record(KV), "observation_version": 7})
    with pytest.raises(OV.ObservationMismatch, match="observation v7 \\(a version this servegym does not know\\)"):
        OV.check_zip(future)
    bad = _rewrite(ZOO[KV], tmp_path / "kv_z.zip", {"env_id": KV})
    with pytest.raises(ValueError, match="kv_z.zip: servegym.json must be a JSON object with keys"):
        OV.check_zip(bad)
    unknown = _rewrite(ZOO[KV], tmp_path / "kv_w.zip", {**OV.record(KV), "observation_layout": "servegym/Nope-v0"})
    with pytest.raises(ValueError, match="kv_w.zip: servegym.json: env_id 'servegym/KVAdmission-v0' has observation "
                       "layout 'servegym/KVAdmission-v0', the record says 'servegym/Nope-v0'"):
        OV.check_zip(unknown)
    # a MultiCluster router seat's record names its seat; the version is Routing-v0's
    seat = _rewrite(ZOO["servegym/MultiCluster-v0"], tmp_path / "r.zip",
                    {**OV.record("servegym/MultiCluster-v0", "router"), "observation_version": 0})
    with pytest.raises(OV.ObservationMismatch, match="r.zip: trained on servegym/MultiCluster-v0 \\(router seat\\) "
                       "observation v0 "):
        OV.check_zip(seat)


def test_an_unversioned_checkpoint_warns_once_per_file(tmp_path):
    a = _rewrite(ZOO[ROUTING], tmp_path / "a.zip", None)
    b = _rewrite(ZOO[ROUTING], tmp_path / "b.zip", None)
    vec = envs.make_vec(ROUTING, 1, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            pa = make_policy(str(a), vec, ROUTING)
        make_policy(str(b), vec, ROUTING)
        make_policy("zoo", vec, ROUTING)  # stamped: silent
    mine = [w for w in caught if issubclass(w.category, OV.ObservationVersionUnknown)]
    assert [str(w.message).split(":")[0] for w in mine] == [str(a), str(b)]
    assert "records no observation version" in str(mine[0].message) and "\n" not in str(mine[0].message)
    assert pa.observation is None  # and it still plays
    obs = vec.reset()
    assert pa.act(obs, vec.action_masks()).shape == (1,)


def test_save_load_round_trip_and_run_json(tmp_path):
    """train.py's final.zip and checkpoint.zip record the version, run.json repeats it; --resume checks it."""
    from agents import train

    args = ["--algo", "ppo", "--timesteps", "64", "--n-envs", "1", "--env-kwargs", "window_requests=64",
            "--out", str(tmp_path), "--no-eval", "--no-progress"]
    assert train.main(args) == 0
    for name in ("final.zip", "checkpoint.zip"):
        assert OV.read_zip(tmp_path / name) == OV.record(KV)
    assert json.loads((tmp_path / "run.json").read_text())["observation"] == OV.record(KV)
    vec = envs.make_vec(KV, 1, seed=0, window_requests=64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a stamped file loads without a warning
        assert make_policy(str(tmp_path / "final.zip"), vec, KV).observation == OV.record(KV)
    _rewrite(tmp_path / "final.zip", tmp_path / "checkpoint.zip", {**OV.record(KV), "observation_version": 1})
    with pytest.raises(SystemExit) as exc:
        train.main([*args, "--timesteps", "128", "--resume"])
    assert exc.value.code == 2


def test_atomic_save_finds_the_env_id_through_wrappers(tmp_path):
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecMonitor

    from agents.training import atomic_save

    vec = VecMonitor(envs.make_vec(ROUTING, 1, seed=0))
    assert OV.env_id_of(vec) == ROUTING
    model = PPO("MlpPolicy", vec, n_steps=8, batch_size=8, device="cpu")
    atomic_save(model, tmp_path / "m.zip")
    assert OV.read_zip(tmp_path / "m.zip") == OV.record(ROUTING)
    with pytest.raises(ValueError, match="no servegym environment id"):
        OV.env_id_of(object())


def test_onnx_export_records_and_the_runtime_checks(tmp_path):
    import onnx

    from agents import export as X
    from agents.onnx_policy import OnnxPolicy

    out = tmp_path / "kv.onnx"
    X.export(KV, "zoo", out, parity_obs=64)
    p = OnnxPolicy(out, env_id=KV)
    assert p.metadata["observation_version"] == "2" and p.metadata["observation_layout"] == KV
    assert p.observation == {"env_id": KV, "role": None, "observation_layout": KV, "observation_version": 2}
    proto = onnx.load(str(out))
    X.set_metadata(proto, {"observation_version": "1"})
    onnx.save(proto, str(tmp_path / "old.onnx"))
    with pytest.raises(OV.ObservationMismatch, match="old.onnx: trained on servegym/KVAdmission-v0 observation v1 "):
        OnnxPolicy(tmp_path / "old.onnx", env_id=KV)
    keep = [e for e in proto.metadata_props if e.key not in OV.ONNX_KEYS]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    onnx.save(proto, str(tmp_path / "none.onnx"))
    with pytest.warns(OV.ObservationVersionUnknown, match="none.onnx: records no observation version"):
        OnnxPolicy(tmp_path / "none.onnx", env_id=KV)
    # export refuses a checkpoint of an earlier version, writing nothing
    old = _rewrite(ZOO[KV], tmp_path / "kv_old.zip", {**OV.record(KV), "observation_version": 1})
    with pytest.raises(OV.ObservationMismatch):
        X.export(KV, str(old), tmp_path / "never.onnx", parity_obs=0)
    assert not (tmp_path / "never.onnx").exists()


def test_evaluate_and_leaderboard_refuse_in_one_line(tmp_path, capsys):
    from agents import evaluate, leaderboard

    old = _rewrite(ZOO[KV], tmp_path / "kv_x.zip", {**OV.record(KV), "observation_version": 1})
    for main, argv in ((evaluate.main, ["--env", KV, "--policy", str(old), "--episodes", "1"]),
                       (leaderboard.main, ["--quick", "--envs", KV, "--policy", str(old),
                                           "--out", str(tmp_path / "lb")])):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert f"{old}: trained on {KV} observation v1 " in err and err.endswith("; retrain"), err


def test_the_recipe_trainers_record_their_seat():
    assert {zoo_role(e) for e in RECIPES} == {None, "router"}
    assert zoo_role("servegym/MultiCluster-v0") == "router"


def test_capacity_of_requests_that_finish_together_is_a_one_line_error():
    """40 requests of one length finish in one iteration when measured once (no completion rate: a count
    unit of inf would zero every count feature); the environment repeats a trace shorter than the
    measurement's stream (envs.core.capacity), so its replica serves them in waves: a finite capacity."""
    from envs.core.capacity import NoSteadyState, measure_capacity_rps
    from envs.core.workload import build_workload
    from envs.kv_admission import env as kva
    from traces.trace import Trace, TraceMeta

    n = 40
    tr = Trace(np.arange(n) * 2.0, np.full(n, 80, np.int64), np.full(n, 8, np.int64), TraceMeta("same", "tests", "n/a"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vec = kva.KVAdmissionVecEnv(1, seed=0, trace=tr, split="all", window_requests=n)
    assert np.isfinite(vec.scenario.capacity_rps) and vec.scenario.capacity_rps > 0
    wl, _ = build_workload(tr, n, 1.0, 0)
    with pytest.raises(NoSteadyState) as err:  # measured as given: a stream of its 40 requests
        measure_capacity_rps(vec.scenario.engine, wl, max_requests=n,
                             source="KVAdmission: training part of trace 'same'")
    msg = str(err.value)
    assert msg.startswith("measure_capacity_rps: KVAdmission: training part of trace 'same': the 20th and 80th "
                          "percentile completions coincide (completion 8 at ") and "completion 32 at " in msg
    assert "\n" not in msg and isinstance(err.value, ValueError)
    assert measure_capacity_rps.__doc__ and "NoSteadyState" in measure_capacity_rps.__doc__


# Bad input, as a user who edits servegym.json or an ONNX file's metadata would make it (review rv): every
# path ends in one line naming the file and what is wrong. Before, a malformed record was a plain ValueError
# that agents.evaluate ended in a traceback, a record naming another environment loaded silently, an ONNX
# version '²' (str.isdigit() but no int) was int()'s message without the file, and show refused .onnx.
_BAD_RECORDS = {
    "malformed.zip": b"{not json",
    "binary.zip": b"\xff\xfe",
    "list.zip": b"[1, 2]",
    "missing.zip": json.dumps({"env_id": KV, "observation_version": 2}).encode(),
    "extra.zip": json.dumps({**OV.record(KV), "extra": 1}).encode(),
    "strver.zip": json.dumps({**OV.record(KV), "observation_version": "2"}).encode(),
    "boolver.zip": json.dumps({**OV.record(KV), "observation_version": True}).encode(),
    "nullver.zip": json.dumps({**OV.record(KV), "observation_version": None}).encode(),
    "intenv.zip": json.dumps({**OV.record(KV), "env_id": 3}).encode(),
    "envid.zip": json.dumps({**OV.record(KV), "env_id": ROUTING}).encode(),  # layout not its env_id's
    "noenv.zip": json.dumps({**OV.record(KV), "env_id": "servegym/Nope-v0"}).encode(),
}


def _raw(src: Path, dst: Path, blob: bytes) -> Path:
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w") as out:
        for info in z.infolist():
            if info.filename != OV.MEMBER:
                out.writestr(info, z.read(info.filename), compress_type=info.compress_type)
        out.writestr(OV.MEMBER, blob)
    return dst


def test_a_malformed_record_is_a_one_line_policy_error(tmp_path):
    for name, blob in _BAD_RECORDS.items():
        path = _raw(ZOO[KV], tmp_path / name, blob)
        with pytest.raises(OV.ObservationRecordError) as err:  # a PolicyMismatch, so a ValueError too
            OV.check_zip(path)
        assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value), (name, err.value)
    assert issubclass(OV.ObservationRecordError, ValueError)
    from agents.policy_base import PolicyMismatch

    assert issubclass(OV.ObservationRecordError, PolicyMismatch)


def test_evaluate_ends_a_malformed_record_in_one_line(tmp_path, capsys):
    from agents import evaluate

    for name in ("malformed.zip", "strver.zip"):
        path = _raw(ZOO[KV], tmp_path / name, _BAD_RECORDS[name])
        with pytest.raises(SystemExit) as exc:
            evaluate.main(["--env", KV, "--policy", str(path), "--episodes", "1"])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"--policy: {path}: " in err, err


def test_a_record_of_another_environment_is_refused(tmp_path, capsys):
    routing = _rewrite(ZOO[KV], tmp_path / "as_routing.zip", OV.record(ROUTING))  # a consistent record, wrong env
    vec = envs.make_vec(KV, 1, seed=0)
    with pytest.raises(OV.ObservationRecordError, match=f"as_routing.zip: trained on {ROUTING}'s observation, "
                       f"not {KV}'s"):
        make_policy(str(routing), vec, KV)
    from agents import train

    with pytest.raises(SystemExit) as exc:
        train.main(["--env", KV, "--timesteps", "64", "--n-envs", "1", "--out", str(tmp_path / "run"),
                    "--init", str(routing)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [f"python train.py: error: --init {routing}: trained on {ROUTING}'s observation, "
                                f"not {KV}'s"], err


def test_onnx_metadata_tampered_and_show(tmp_path, capsys):
    import onnx

    from agents import export as X
    from agents.onnx_policy import OnnxPolicy
    from examples import engine_hook

    out = tmp_path / "kv.onnx"
    X.export(KV, "zoo", out, parity_obs=16)
    assert OV.main(["show", str(out)]) == 0  # an ONNX export's record, as for a zip
    assert capsys.readouterr().out == f"{out}: {json.dumps(OV.record(KV), sort_keys=True)}\n"
    proto = onnx.load(str(out))
    for name, meta, match in (
            ("sup.onnx", {"observation_version": "\u00b2"}, "metadata observation_version must be an integer, got"),
            ("word.onnx", {"observation_version": "two"}, "metadata observation_version must be an integer, got"),
            ("routing.onnx", {"observation_layout": ROUTING, "observation_version": "1"},
             f"trained on {ROUTING}'s observation, not {KV}'s")):
        bad = onnx.ModelProto()
        bad.CopyFrom(proto)
        X.set_metadata(bad, meta)
        onnx.save(bad, str(tmp_path / name))
        with pytest.raises(OV.ObservationRecordError, match=f"{name}: {match}"):
            OnnxPolicy(tmp_path / name, env_id=KV)
        with pytest.raises(SystemExit) as exc:  # the engine hook: one line, no usage block
            engine_hook.main(["--onnx", str(tmp_path / name), "--requests", "5"])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith(f"python -m examples.engine_hook: error: "
                                                             f"{tmp_path / name}: "), err


def test_engine_hook_refuses_bad_numbers_in_one_line(capsys):
    from examples import engine_hook

    for flag, value in (("--requests", "0"), ("--rate", "-1"), ("--rate", "nan"), ("--capacity-blocks", "0"),
                        ("--budget-us", "0")):
        with pytest.raises(SystemExit) as exc:
            engine_hook.main(["--onnx", "unused.onnx", flag, value])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"error: {flag}: must be" in err, err


def test_stamp_cli_takes_short_names_replaces_a_bad_record_and_is_idempotent(tmp_path, capsys):
    """``python -m agents.obs_version stamp`` takes ``--env`` as every command does (``KVAdmission``;
    was "unknown environment"), replaces an earlier record that is not even UTF-8 (was
    UnicodeDecodeError's message without the file), and a second stamp leaves the same bytes."""
    path = _raw(ZOO[KV], tmp_path / "kv.zip", b"\xff\xfe")
    assert OV.main(["stamp", str(path), "--env", "KVAdmission"]) == 0
    assert OV.read_zip(path) == OV.record(KV)
    first = path.read_bytes()
    assert OV.main(["stamp", str(path), "--env", "kv_admission"]) == 0
    assert path.read_bytes() == first
    with zipfile.ZipFile(ZOO[KV]) as z, zipfile.ZipFile(path) as s:  # the weights' members as they were
        assert all(z.read(n) == s.read(n) for n in z.namelist() if n != OV.MEMBER)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        OV.main(["stamp", str(path), "--env", "kvx"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--env: unknown environment 'kvx'" in err, err


def test_stamp_refuses_a_checkpoint_whose_spaces_are_not_the_envs(tmp_path, capsys):
    """``stamp`` compares the policy's observation and action spaces (the SB3 zip's ``data``) with the
    env/seat named: a KVAdmission-v0 checkpoint stamped as MultiCluster-v0's router (was accepted), a
    Routing-v0 one whose action space was edited, a ``data`` with no readable space: one line, exit 2,
    the file unchanged. Every zoo file (a copy) stamped as its own env/seat twice keeps its bytes."""
    import base64

    import cloudpickle
    from gymnasium import spaces

    kv = _rewrite(ZOO[KV], tmp_path / "kv.zip", None)
    data = json.loads(zipfile.ZipFile(ZOO[ROUTING]).read("data"))
    data["action_space"][":serialized:"] = base64.b64encode(cloudpickle.dumps(spaces.Discrete(9))).decode()
    act = tmp_path / "act.zip"
    with zipfile.ZipFile(act, "w") as out, zipfile.ZipFile(ZOO[ROUTING]) as z:
        for info in z.infolist():
            if info.filename != OV.MEMBER:
                out.writestr(info, json.dumps(data) if info.filename == "data" else z.read(info.filename))
    del data["observation_space"]
    nospace = tmp_path / "nospace.zip"
    with zipfile.ZipFile(nospace, "w") as out:
        out.writestr("data", json.dumps(data))
    cases = ((kv, ["--env", "MultiCluster", "--role", "router"],
              "its policy's observation space is Box(80,), servegym/MultiCluster-v0 (router seat)'s (default "
              "configuration) is Box(87,); not stamped"),
             (act, ["--env", "Routing"], "its policy's action space is Discrete(9), servegym/Routing-v0's (default "
              "configuration) is Discrete(8)"),
             (nospace, ["--env", "Routing"], "its 'data' member holds no readable observation_space (KeyError"))
    for path, args, says in cases:
        before = path.read_bytes()
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            OV.main(["stamp", str(path), *args])
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and len(err.splitlines()) == 1 and f"error: {path}: {says}" in err, err
        assert path.read_bytes() == before
    for env_id, src in ZOO.items():  # stamping is still idempotent (and accepted) for the zoo's own seats
        path = Path(shutil.copy(src, tmp_path / Path(src).name))
        role = ["--role", zoo_role(env_id)] if zoo_role(env_id) else []
        for _ in range(2):
            assert OV.main(["stamp", str(path), "--env", env_id, *role]) == 0
            assert path.read_bytes() == Path(src).read_bytes(), env_id


def test_stamp_role_on_a_single_agent_env_names_the_multi_agent_envs(tmp_path, capsys):
    """``stamp --role`` with a single-agent --env is one line saying --role applies only to the multi-agent
    environment(s), naming them and the --env given (was "unknown PettingZoo environment
    'servegym/Routing-v0'"); the file is left as it was."""
    path = Path(shutil.copy(ZOO[ROUTING], tmp_path / "r.zip"))
    before = path.read_bytes()
    with pytest.raises(SystemExit) as exc:
        OV.main(["stamp", str(path), "--env", "Routing", "--role", "router"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1, err
    assert ("stamp: error: --role router: applies only to the multi-agent environment(s) servegym/MultiCluster-v0; "
            "--env servegym/Routing-v0 is single-agent (stamp it without --role)") in err, err
    assert "PettingZoo" not in err and path.read_bytes() == before


@pytest.mark.parametrize("role, says", [
    (["--role", "scheduler"], "--role scheduler: not a seat of servegym/MultiCluster-v0; "),
    ([], "--role: required with the multi-agent --env servegym/MultiCluster-v0; "),
])
def test_stamp_unknown_or_missing_role_on_the_multi_agent_env_names_the_option(tmp_path, capsys, role, says):
    """``stamp --env MultiCluster`` with an unknown or no --role: one line under the stamp prefix, like its other
    argument errors, naming --role, the value and the valid seats (was 'python -m agents.obs_version: error:
    servegym/MultiCluster-v0: role 'scheduler' unknown; its roles: ...', the KeyError's text); the file is left
    as it was."""
    path = Path(shutil.copy(ZOO["servegym/MultiCluster-v0"], tmp_path / "m.zip"))
    before = path.read_bytes()
    with pytest.raises(SystemExit) as exc:
        OV.main(["stamp", str(path), "--env", "MultiCluster", *role])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and err.splitlines() == [
        f"python -m agents.obs_version stamp: error: {says}allowed: admission, autoscaler, router"], err
    assert path.read_bytes() == before


def _routing_checkpoint(path: Path, replicas: int) -> Path:
    """An untrained MaskablePPO checkpoint (SB3's own save, no record) of Routing-v0 with ``replicas``."""
    from sb3_contrib import MaskablePPO

    vec = envs.make_vec(ROUTING, 1, seed=0, replicas=replicas)
    MaskablePPO("MlpPolicy", vec, n_steps=8, batch_size=8, device="cpu", seed=0).save(path)
    vec.close()
    return path


def test_stamp_checks_and_records_env_kwargs(tmp_path, capsys, monkeypatch):
    """A Routing-v0 checkpoint trained with replicas=4 (not the default 8) is refused by ``stamp`` against the
    default configuration, stamped with ``--env-kwargs replicas=4`` (the record keeps them as its fifth key
    and still loads), and ``agents.zoo stamp --env Routing --env-kwargs replicas=4`` does the same for the zoo
    file; bad --env-kwargs are one line naming them (the config's own parser: agents.cli.parse_env_kwargs;
    the environment's range check). On main --env-kwargs was an unknown argument."""
    from agents.zoo import __main__ as zoo_main

    path = _routing_checkpoint(tmp_path / "r4.zip", 4)
    before = path.read_bytes()
    bad = ((["--env", "Routing"], "servegym/Routing-v0's (default configuration) is Box("),
           (["--env", "Routing", "--env-kwargs", "replicas=0"],
            "error: --env-kwargs replicas=0: servegym/Routing-v0 refuses them: Routing: replicas must be an integer >= 1"),
           (["--env", "Routing", "--env-kwargs", "replicas=4.5"], "error: --env-kwargs 'replicas=4.5': replicas must be int"),
           (["--env", "Routing", "--env-kwargs", "replica=4"], "servegym/Routing-v0 has no key 'replica'; valid keys:"),
           (["--env", "Routing", "--env-kwargs", "replicas=6"], "servegym/Routing-v0's (--env-kwargs replicas=6) is "))
    for args, says in bad:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            OV.main(["stamp", str(path), *args])
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and len(err.splitlines()) == 1 and says in err, (args, err)
        assert path.read_bytes() == before
    assert OV.main(["stamp", str(path), "--env", "Routing", "--env-kwargs", "replicas=4"]) == 0
    rec = OV.read_zip(path)
    assert rec == {**OV.record(ROUTING), "env_kwargs": {"replicas": 4}}
    assert '"env_kwargs": {"replicas": 4}' in capsys.readouterr().out
    vec = envs.make_vec(ROUTING, 1, seed=0, replicas=4)
    make_policy(str(path), vec, ROUTING)  # the fifth key passes the load check
    vec.close()
    stamped = path.read_bytes()
    assert OV.main(["stamp", str(path), "--env", "Routing", "--env-kwargs", "replicas=4"]) == 0
    assert path.read_bytes() == stamped  # idempotent
    # the zoo command, on a copy put in the zoo's place
    zoo_file = _routing_checkpoint(tmp_path / "zoo_r4.zip", 4)
    monkeypatch.setitem(ZOO, ROUTING, zoo_file)
    for args, says in ((["--env", "Routing", "--env", "KVAdmission", "--env-kwargs", "replicas=4"],
                        "--env-kwargs replicas=4: give exactly one --env"),
                       (["--env-kwargs", "replicas=4"], "--env-kwargs replicas=4: give exactly one --env"),
                       (["--env", "Routing"], "(default configuration) is Box(")):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            zoo_main.main(["stamp", *args])
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and len(err.splitlines()) == 1 and says in err, (args, err)
    assert zoo_main.main(["stamp", "--env", "Routing", "--env-kwargs", "replicas=4"]) == 0
    assert "checked with --env-kwargs replicas=4" in capsys.readouterr().out
    assert OV.read_zip(zoo_file) == rec


def test_the_checkpoint_records_share_one_zip_json_reader(tmp_path):
    """agents.hpa_residual.read_spec and agents.obs_version.read_zip each opened a zip member and parsed its
    JSON with their own errors; both read through agents.policy_base.read_zip_json (each its error class)."""
    from agents import hpa_residual
    from agents.policy_base import PolicyFileError, read_zip_json

    path = tmp_path / "c.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("data", "{}")
        z.writestr("ok.json", '{"a": [1, 2]}')
        z.writestr(OV.MEMBER, "not json")
        z.writestr(hpa_residual.MEMBER, b"\xff")
    assert read_zip_json(path, "ok.json", ValueError) == {"a": [1, 2]}
    assert read_zip_json(path, "absent.json", ValueError) is None
    with pytest.raises(OV.ObservationRecordError, match=rf"^{path}: unreadable observation record {OV.MEMBER} \("):
        OV.read_zip(path)
    with pytest.raises(PolicyFileError, match=rf"^{path}: unreadable {hpa_residual.MEMBER} \(.*codec"):
        hpa_residual.read_spec(path)
    (tmp_path / "no.zip").write_text("plain")
    with pytest.raises(KeyError, match="unreadable x.json"):
        read_zip_json(tmp_path / "no.zip", "x.json", KeyError)
