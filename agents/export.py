"""Export a learned policy (SB3 PPO, MaskablePPO, DQN, masked dueling DQN) to ONNX, with a parity check.

    python -m agents.export --env servegym/KVAdmission-v0 --policy zoo --onnx kv.onnx
    python -m agents.export --env ID --policy runs/x/final.zip --onnx out.onnx \\
        [--vecnormalize PATH] [--env-kwargs K=V ...] [--parity-obs 10000] [--no-parity]

The graph an engine runs (``agents.onnx_policy.OnnxPolicy`` with onnxruntime and numpy only):

* inputs ``obs`` float32 [B, n_obs] (raw, as the environment emits it: VecNormalize statistics,
  from ``vecnormalize.pkl`` beside the checkpoint or ``--vecnormalize``, are folded into the
  graph) and ``action_mask`` bool [B, n_scores] (all True = no mask), of the same rows B: onnxruntime fails
  in the node named ``MASK_ROWS_NODE`` for a mask of other rows (it was broadcast);
* outputs ``action`` int64 [B] ([B, D] for MultiDiscrete): the deterministic action, the argmax
  of the scores over the legal actions, and ``logits`` (PPO, MaskablePPO) or ``q_values`` (DQN)
  [B, n_scores], unmasked (the dueling DQN of ``agents.masked_dqn`` masks inside its network:
  its ``q_values`` are -1e9 on the candidates the observation marks absent).

Every algorithm applies the mask (an engine must never take an illegal action; for MaskablePPO
this is exactly SB3's masked ``predict``). The model's metadata (``metadata_props``) records the
environment id and version, the observation layout and its version (``observation_layout``,
``observation_version``: ``agents.obs_version``; absent for a checkpoint that records none), what each
action means, the training
command, the checkpoint's digest, the opset and the parity result. Export fails, writing
nothing, unless on ``--parity-obs`` observations drawn from the environment ONNX and torch agree:
scores within ``1e-4`` and the same action wherever torch's margin between its two best legal
actions exceeds ``1e-4``.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shlex
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

ATOL = 1e-4  # largest score difference allowed between ONNX and torch
MARGIN = 1e-4  # torch's best-vs-second margin above which the actions must match
OPSET = 17
# The graph's Concat of ``action_mask`` beside the scores' rows, which needs them equal (graph_module): onnxruntime's
# error for a mask whose rows are not obs's names the node that failed, so its name says what is wrong.
MASK_ROWS_NODE = "action_mask_must_have_one_row_per_obs_row"
MASKED = float(np.finfo(np.float32).min)  # score of an illegal action before the argmax


# --- checkpoints ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """A checkpoint to export and what is known about how it was trained."""

    checkpoint: Path
    algo: str
    command: str  # the training command, or "unknown"
    env_kwargs: dict[str, Any]
    trace: str
    trace_version: str = ""  # the versioned trace it was trained on (``NAME-vN`` or a file), when known


def resolve_source(env_id: str, spec: str) -> Source:
    """``zoo`` (the environment's reference agent, with its recipe) or a checkpoint path (with
    ``run.json`` beside it, as ``train.py`` writes, when present)."""
    from agents.cli import parse_env_kwargs
    from agents.policy import ZOO, _load_registries
    from agents.sb3_policy import detect_algo

    _load_registries()
    if spec == "zoo":
        from agents.zoo import RECIPES

        if env_id not in ZOO:
            raise KeyError(f"--policy zoo: no reference learned agent for {env_id}; known: {', '.join(ZOO)}")
        if RECIPES[env_id].trainer != "agents.train":  # a team (the multi-agent cluster): export its seat
            raise ValueError(f"--policy zoo: {env_id}'s zoo entry is a team whose learned seat is the router "
                             f"{ZOO[env_id]}; routers see Routing-v0's observation, so export it with "
                             f"--env servegym/Routing-v0 --policy {ZOO[env_id]}")
        args = list(RECIPES[env_id].train_args)
        kw_items: list[str] = []
        if "--env-kwargs" in args:
            i = args.index("--env-kwargs") + 1
            while i < len(args) and not args[i].startswith("--"):
                kw_items.append(args[i])
                i += 1
        trace = args[args.index("--trace") + 1] if "--trace" in args else "default"
        command = shlex.join(["python", "train.py", "--env", env_id, *args])
        path = ZOO[env_id]
        return Source(path, detect_algo(path), command, parse_env_kwargs(kw_items, env_id), trace,
                      RECIPES[env_id].trace)
    path = Path(spec)
    if path.suffix != ".zip" or not path.is_file():
        raise FileNotFoundError(f"--policy {spec!r}: expected 'zoo' or an existing SB3 checkpoint (.zip)")
    run = path.parent / "run.json"
    info = json.loads(run.read_text()) if run.is_file() else {}
    if info.get("env", env_id) != env_id:
        raise ValueError(f"{path}: {run} says it was trained on {info['env']}, not {env_id}")
    return Source(path, detect_algo(path), info.get("command", "unknown"),
                  dict(info.get("env_kwargs", {})), str(info.get("trace", "default")))


def load_vecnormalize(path: Path) -> Any:
    """SB3 ``VecNormalize`` statistics saved with ``VecNormalize.save`` (a trusted pickle). Raises
    ``ValueError`` (one line naming ``path``) for a file that does not unpickle (it was pickle's
    traceback), ``TypeError`` for a pickle of something else."""
    from stable_baselines3.common.vec_env import VecNormalize

    try:
        with open(path, "rb") as f:
            vn = pickle.load(f)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError,
            ValueError, OSError) as err:  # what a file that is no pickle, a truncated one or an unknown class raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ValueError(f"{path}: not readable as VecNormalize statistics ({type(err).__name__}: {first})") from None
    if not isinstance(vn, VecNormalize):
        raise TypeError(f"{path}: expected a pickled stable_baselines3 VecNormalize, got {type(vn).__name__}")
    if vn.norm_obs and not hasattr(vn.obs_rms, "mean"):
        raise ValueError(f"{path}: dict-observation VecNormalize statistics are not supported")
    return vn


# --- the graph -----------------------------------------------------------------------------
def score_segments(action_space: spaces.Space) -> list[int]:
    """Score columns per action dimension: [n] for Discrete, nvec for MultiDiscrete."""
    if isinstance(action_space, spaces.Discrete):
        return [int(action_space.n)]
    if isinstance(action_space, spaces.MultiDiscrete) and action_space.nvec.ndim == 1:
        return [int(n) for n in action_space.nvec]
    raise TypeError(f"ONNX export supports Discrete and 1-D MultiDiscrete action spaces, not {action_space}")


def torch_scores(model: Any, obs: Any) -> Any:
    """Raw scores of an SB3 model for a float32 tensor of (normalized) observations: the logits
    its ``get_distribution`` builds the categorical from, or DQN's (and MaskedDQN's) Q-values."""
    from stable_baselines3.common.policies import BaseModel

    policy = model.policy
    if hasattr(policy, "q_net"):
        return policy.q_net(obs)
    features = BaseModel.extract_features(policy, obs, policy.pi_features_extractor)
    return policy.action_net(policy.mlp_extractor.forward_actor(features))


def masked_argmax(scores: Any, mask: Any, segments: list[int]) -> Any:
    """Best legal action per dimension (works on numpy arrays and torch tensors alike)."""
    if isinstance(scores, np.ndarray):
        lib: Any = np
    else:
        import torch as lib
    masked = lib.where(mask, scores, MASKED)
    if len(segments) == 1:
        return masked.argmax(1)
    out, start = [], 0
    for n in segments:
        out.append(masked[:, start:start + n].argmax(1))
        start += n
    return lib.stack(out, 1)


def graph_module(model: Any, vecnorm: Any | None) -> Any:
    """The torch module that is exported: normalization, the policy's scores, masked argmax."""
    import torch

    segments = score_segments(model.action_space)
    n_scores = sum(segments)

    class PolicyGraph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.policy = model.policy
            self.norm = vecnorm is not None and vecnorm.norm_obs
            if self.norm:
                rms = vecnorm.obs_rms
                std = np.sqrt(rms.var + vecnorm.epsilon)
                self.register_buffer("mean", torch.as_tensor(rms.mean, dtype=torch.float32))
                self.register_buffer("inv_std", torch.as_tensor(1.0 / std, dtype=torch.float32))
                self.clip = float(vecnorm.clip_obs)

        def forward(self, obs: Any, action_mask: Any) -> tuple[Any, Any]:
            x = obs
            if self.norm:
                x = torch.clamp((x - self.mean) * self.inv_std, -self.clip, self.clip)
            scores = torch_scores(model, x)
            # one mask row per observation row: the mask beside a [B, n] tensor of the scores' rows (an ONNX Concat
            # on axis 1, which broadcasts nothing), so onnxruntime fails, in the node named MASK_ROWS_NODE
            # (export_model), for a mask of other rows; the Where of masked_argmax broadcast a [1, n] mask over every
            # observation, or one observation over a [2, n] mask into two actions. About 1 us a call at batch 1.
            # (onnxruntime's optimizer folded a Reshape of the mask to [B, n] into [-1, n], and a Gather of its rows
            # 0..B-1 into a Slice, which clamps: neither checked anything.)
            action_mask = torch.cat([action_mask, scores > 0], 1)[:, :n_scores]  # (any [B, n] bool beside it)
            return masked_argmax(scores, action_mask, segments), scores

    return PolicyGraph().eval()


@contextmanager
def torch_one_thread() -> Iterator[None]:
    """Torch on one intra-op thread: for these small MLPs more threads only add contention
    (on a busy 2-core machine a 16x80 batch took 16 ms per layer instead of 20 us)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _reference(model: Any, vecnorm: Any | None, obs: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Torch's (eager, through SB3's own normalization) actions and scores."""
    import torch

    x = vecnorm.normalize_obs(obs) if vecnorm is not None else obs
    with torch.no_grad(), torch_one_thread():
        scores = torch_scores(model, torch.as_tensor(np.asarray(x, np.float32))).numpy()
    return masked_argmax(scores, mask, score_segments(model.action_space)), scores


class OpsetError(ValueError):
    """An ``opset`` torch's TorchScript exporter cannot write this graph in (unsupported version,
    or an operator the graph uses that the version lacks: ``where`` before opset 9)."""


def export_model(model: Any, out: Path, vecnorm: Any | None = None, opset: int = OPSET,
                 metadata: dict[str, str] | None = None) -> None:
    """Write ``model`` (an SB3 PPO, MaskablePPO, DQN or MaskedDQN with a Box observation) as ONNX.
    Raises ``OpsetError`` for an ``opset`` torch cannot write the graph in, ``ValueError`` for an ``out``
    that is no writable ``.onnx`` file name (:func:`check_onnx_path`, before any work; it took x.txt)."""
    out = check_onnx_path(out, "export_model: out")
    import onnx
    import torch

    if not isinstance(model.observation_space, spaces.Box) or len(model.observation_space.shape) != 1:
        raise TypeError(f"ONNX export supports flat Box observations, not {model.observation_space}")
    n_obs = int(model.observation_space.shape[0])
    n_scores = sum(score_segments(model.action_space))
    if vecnorm is not None and vecnorm.norm_obs and np.shape(vecnorm.obs_rms.mean) != (n_obs,):
        raise ValueError(f"VecNormalize statistics have shape {np.shape(vecnorm.obs_rms.mean)}, "
                         f"the policy's observation ({n_obs},)")
    model.policy.set_training_mode(False)
    graph = graph_module(model, vecnorm)
    score_name = "q_values" if hasattr(model.policy, "q_net") else "logits"
    dummy = (torch.zeros(2, n_obs), torch.ones(2, n_scores, dtype=torch.bool))
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # torch >= 2.9 defaults to the dynamo exporter (needs onnxscript); the TorchScript
        # exporter handles these MLPs exactly and has no extra dependency.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            torch.onnx.export(
                graph, dummy, str(out), dynamo=False, opset_version=opset,
                input_names=["obs", "action_mask"], output_names=["action", score_name],
                dynamic_axes={"obs": {0: "batch"}, "action_mask": {0: "batch"},
                              "action": {0: "batch"}, score_name: {0: "batch"}},
            )
        except RuntimeError as err:  # an opset torch cannot write, or one without an operator the graph uses
            if "opset" not in str(err):
                raise
            raise OpsetError(f"--opset {opset}: {str(err).splitlines()[0]} (default {OPSET})") from None
    proto = onnx.load(str(out))
    name_mask_rows_check(proto)
    onnx.checker.check_model(proto)
    # the action's layout, so that OnnxPolicy checks each MultiDiscrete component's mask (``export`` adds meanings)
    action = {"space": repr(model.action_space), "segments": score_segments(model.action_space),
              "mask": "action_mask[b, i] False = illegal; all True = unmasked"}
    set_metadata(proto, {"opset": str(opset), "action": json.dumps(action), **(metadata or {})})
    onnx.save(proto, str(out))


def name_mask_rows_check(proto: Any) -> None:
    """Name :data:`MASK_ROWS_NODE` the graph's Concat of ``action_mask`` beside the scores' rows (:func:`graph_module`:
    it fails for a mask whose rows are not ``obs``'s): the first Concat downstream of ``action_mask``. ``RuntimeError``
    if there is none (the exporter wrote another graph than :func:`graph_module`'s)."""
    reached, frontier = set(), {"action_mask"}
    while frontier:
        nodes = [n for n in proto.graph.node if frontier & set(n.input) and id(n) not in reached]
        for n in nodes:
            if n.op_type == "Concat":
                n.name = MASK_ROWS_NODE
                return
            reached.add(id(n))
        frontier = {o for n in nodes for o in n.output}
    raise RuntimeError("ONNX export: no Concat of action_mask in the graph (graph_module puts the mask beside the "
                       "scores' rows)")


def set_metadata(proto: Any, items: dict[str, str]) -> None:
    """Add or replace ``metadata_props`` entries of an ONNX model proto."""
    old = {p.key: p.value for p in proto.metadata_props}
    old.update(items)
    del proto.metadata_props[:]
    for k, v in old.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v


# --- parity --------------------------------------------------------------------------------
@dataclass
class Parity:
    """ONNX against torch on a set of observations."""

    n_obs: int
    max_abs_diff: float  # largest |onnx score - torch score|
    decided: int  # observations whose torch margin exceeds MARGIN (in every action dimension)
    mismatches: int  # decided observations where the actions differ
    same_action: int  # observations (of all) where the actions agree
    ok: bool


def check_parity(onnx_path: Path, model: Any, vecnorm: Any | None, obs: np.ndarray,
                 mask: np.ndarray, atol: float = ATOL, margin: float = MARGIN) -> Parity:
    from agents.onnx_policy import OnnxPolicy

    segments = score_segments(model.action_space)
    ref_a, ref_s = _reference(model, vecnorm, obs, mask)
    onnx_a, onnx_s = OnnxPolicy(onnx_path).run(obs, mask)
    diff = float(np.max(np.abs(onnx_s - ref_s))) if obs.shape[0] else 0.0
    legal = np.where(mask, ref_s.astype(np.float64), -np.inf)
    decided = np.ones(obs.shape[0], bool)
    start = 0
    for n in segments:
        top2 = -np.partition(-legal[:, start:start + n], 1, axis=1)[:, :2] if n > 1 else None
        if top2 is not None:
            decided &= (top2[:, 0] - top2[:, 1]) > margin
        start += n
    same = onnx_a == ref_a
    if same.ndim > 1:
        same = same.all(1)
    mismatches = int((decided & ~same).sum())
    return Parity(int(obs.shape[0]), diff, int(decided.sum()), mismatches, int(same.sum()),
                  ok=bool(diff <= atol and mismatches == 0))


def collect_observations(env_id: str, n: int, model: Any, seed: int = 0, n_envs: int = 16,
                         explore: float = 0.5, vecnorm: Any | None = None, progress: bool = False,
                         **env_kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
    """``n`` observations and masks from the environment's training split, acting as the
    exported graph does (the model's best legal action) and, with probability ``explore`` per
    decision, a random legal action (to reach states the model alone avoids). ``progress``: a
    bar on stderr (ExpertPlacement takes about a minute for 10,000)."""
    from tqdm import tqdm

    import envs
    from agents.policy import RandomPolicy

    vec = envs.make_vec(env_id, n_envs, seed=seed, split="train", **env_kwargs)
    rand = RandomPolicy(vec, seed)
    rng = np.random.default_rng(seed)
    obs_out, mask_out = [], []
    obs = vec.reset()
    got = 0
    bar = tqdm(total=n, desc="parity observations", unit="obs", disable=not progress, file=sys.stderr)
    while got < n:
        mask = vec.action_masks()
        obs_out.append(obs)
        mask_out.append(mask)
        got += obs.shape[0]
        bar.update(min(obs.shape[0], n - bar.n))
        a = _reference(model, vecnorm, obs, mask)[0]
        explored = rng.random(obs.shape[0]) < explore
        a = np.where(explored[:, None] if a.ndim > 1 else explored, rand.act(obs, mask), a)  # [E] or [E, D]
        obs, _, _, _ = vec.step(a)
    bar.close()
    vec.close()
    return np.concatenate(obs_out)[:n], np.concatenate(mask_out)[:n]


# --- the command ---------------------------------------------------------------------------
def _servegym_version() -> str:
    try:
        return importlib_metadata.version("servegym")
    except importlib_metadata.PackageNotFoundError:
        return "unknown (source tree, not installed)"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_onnx_path(path: Path | str, what: str) -> Path:
    """``Path(path)``; ``ValueError("WHAT PATH: expected a file name ending in .onnx, got '.txt'")`` (one
    line) unless its name ends in ``.onnx`` (and has a stem) and can be written (``envs.options.output_problem``): policies are told apart by suffix (``agents.policy.make_policy``),
    so an ONNX model written to x.txt is one that no ``--policy`` reads. ``what``: the option or argument
    (``--onnx``; ``export: out``)."""
    path = Path(path)
    if path.name == ".onnx":  # Path('.onnx').suffix is '': a hidden file, no stem
        raise ValueError(f"{what} {path}: expected a name before .onnx (e.g. policy.onnx)")
    if path.suffix != ".onnx":
        raise ValueError(f"{what} {path}: expected a file name ending in .onnx, "
                         f"got {repr(path.suffix) if path.suffix else 'no suffix'}")
    from envs.options import output_problem

    problem = output_problem(path, False)  # a folder there, or a file above it: the CLIs' one check
    if problem is not None:
        raise ValueError(f"{what} {path}: {problem}")
    return path


def export(env_id: str, spec: str, out: Path, vecnormalize: Path | None = None,
           env_kwargs: dict[str, Any] | None = None, parity_obs: int = 10_000, seed: int = 0,
           opset: int = OPSET, progress: bool = False) -> Parity | None:
    """Export ``spec`` (``zoo`` or a checkpoint) of ``env_id`` to ``out`` and check parity on
    ``parity_obs`` observations (0: skip). Raises ``RuntimeError`` (writing nothing) on failure, ``ValueError``
    for an ``out`` whose name does not end in ``.onnx`` (:func:`check_onnx_path`, before any work)."""
    from gymnasium.envs.registration import parse_env_id

    import envs
    from agents.sb3_policy import load_model
    from traces.errors import TraceError

    from agents import obs_version

    out = check_onnx_path(out, "export: out")
    src = resolve_source(env_id, spec)
    from agents.hpa_residual import MEMBER, read_spec

    if read_spec(src.checkpoint) is not None:  # its actions are offsets from an HPA the ONNX graph would not hold
        raise ValueError(f"{src.checkpoint}: an HPA-residual checkpoint ({MEMBER}, agents.hpa_residual) acts through "
                         "its base HPA, which an ONNX export does not hold; export is for checkpoints that act alone")
    # refused if trained on another observation version; its record goes into the ONNX metadata (none: the
    # export records none either, and OnnxPolicy warns as loading the checkpoint did)
    observation = obs_version.check_zip(src.checkpoint)
    if observation is not None and observation["observation_layout"] != envs.observation_layout(env_id):
        raise ValueError(f"{src.checkpoint}: trained on {observation['observation_layout']}'s observation, "
                         f"not {env_id}'s")
    model = load_model(src.checkpoint, src.algo, device="cpu")
    vn_path = vecnormalize or (src.checkpoint.parent / "vecnormalize.pkl")
    if vecnormalize is not None and not vn_path.is_file():
        raise FileNotFoundError(f"--vecnormalize {vecnormalize}: no such file")
    vecnorm = load_vecnormalize(vn_path) if vn_path.is_file() else None
    kwargs = {**src.env_kwargs, **(env_kwargs or {})}
    kwargs.setdefault("trace", src.trace)
    if progress:
        print(f"agents.export: building {env_id} (trace {kwargs['trace']!r}) to check the layout",
              file=sys.stderr, flush=True)
    try:
        probe = envs.make_vec(env_id, 1, seed=seed, split="train", **kwargs)
    except TraceError as err:
        if kwargs["trace"] == "default":
            raise
        print(f"agents.export: the training trace is unavailable ({err}); parity observations come "
              "from the environment's default trace", file=sys.stderr)
        kwargs["trace"] = "default"
        probe = envs.make_vec(env_id, 1, seed=seed, split="train", **kwargs)
    if probe.observation_space.shape != model.observation_space.shape:
        raise ValueError(
            f"{src.checkpoint}: the policy takes observations of shape {model.observation_space.shape}, "
            f"{env_id} with env_kwargs {kwargs} emits {probe.observation_space.shape} (pass the "
            "--env-kwargs it was trained with)")
    if probe.action_space != model.action_space:
        raise ValueError(f"{src.checkpoint}: action space {model.action_space} != {env_id}'s {probe.action_space}")
    segments = score_segments(model.action_space)
    # What each observation entry and action means, as the environment names them.
    feats, meanings = probe.feature_names(), probe.action_meanings()
    if (len(feats), len(meanings)) != (model.observation_space.shape[0], sum(segments)):
        raise ValueError(
            f"{env_id}: feature_names() names {len(feats)} features and action_meanings() {len(meanings)} "
            f"actions, the policy has {model.observation_space.shape[0]} and {sum(segments)}")
    probe.close()
    version = parse_env_id(env_id)[2]
    meta = {
        "env_id": env_id,
        "env_version": f"v{version}" if version is not None else "unversioned",
        "servegym_version": _servegym_version(),
        "algorithm": src.algo,
        "observation": json.dumps({
            "shape": list(model.observation_space.shape), "dtype": "float32", "features": feats,
            "env_kwargs": {k: repr(v) for k, v in kwargs.items() if k != "trace"},
            "normalization": "VecNormalize folded into the graph" if vecnorm is not None else "none",
        }),
        "action": json.dumps({
            "space": repr(model.action_space), "segments": segments, "meanings": meanings,
            "mask": "action_mask[b, i] False = illegal; all True = unmasked",
        }),
        "training_command": src.command,
        "training_trace": src.trace_version or src.trace,
        "checkpoint": src.checkpoint.name,
        "checkpoint_sha256": _sha256(src.checkpoint),
        "vecnormalize_sha256": _sha256(vn_path) if vecnorm is not None else "",
        **obs_version.onnx_metadata(observation),
    }
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / out.name
        if progress:
            print(f"agents.export: exporting {src.checkpoint} ({src.algo}) to ONNX opset {opset}",
                  file=sys.stderr, flush=True)
        export_model(model, staged, vecnorm, opset, meta)
        parity = None
        if parity_obs > 0:
            obs, mask = collect_observations(env_id, parity_obs, model, seed, vecnorm=vecnorm,
                                             progress=progress, **kwargs)
            parity = check_parity(staged, model, vecnorm, obs, mask)
            if not parity.ok:
                raise RuntimeError(f"ONNX parity failed for {src.checkpoint} ({env_id}): {asdict(parity)}")
            import onnx

            proto = onnx.load(str(staged))
            set_metadata(proto, {"parity": json.dumps(asdict(parity))})
            onnx.save(proto, str(staged))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(staged.read_bytes())
    return parity


def build_parser() -> Any:
    from agents import cli

    p = cli.make_parser("python -m agents.export", __doc__, selected=cli.options.single_agent_ids())
    p.add_argument("--env", type=cli.single_env_arg, default="servegym/KVAdmission-v0",
                   help="environment id, short name or package name (listed below)")
    p.add_argument("--policy", required=True, help="zoo or an SB3 checkpoint (.zip)")
    p.add_argument("--onnx", type=Path, required=True, help="output file")
    p.add_argument("--vecnormalize", type=Path, help="VecNormalize statistics (default: "
                   "vecnormalize.pkl beside the checkpoint, if present)")
    p.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                   help="environment config the policy was trained with (default: run.json/recipe; "
                        "keys listed below per environment)")
    p.add_argument("--parity-obs", type=int, default=10_000, help="observations of the parity check")
    p.add_argument("--no-parity", action="store_true", help="skip the parity check")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--opset", type=int, default=OPSET)
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    from agents import cli

    p = build_parser()
    a = p.parse_args(argv)

    def body() -> int:
        if a.seed < 0:  # was reported as "--env ... --policy ...: expected non-negative integer"
            raise cli.UsageError(f"--seed {a.seed}: must be >= 0")
        try:
            check_onnx_path(a.onnx, "--onnx")
        except ValueError as err:
            raise cli.UsageError(str(err)) from None
        if a.parity_obs < 1 and not a.no_parity:
            raise cli.UsageError(f"--parity-obs {a.parity_obs}: must be >= 1 (or pass --no-parity)")
        if a.policy != "zoo":  # the refusal names zoo too (was 'allowed: an existing .zip file')
            cli.check_policies(a.env, [a.policy], allowed=(".zip",), names=("zoo",))
        if a.vecnormalize is not None and not a.vecnormalize.is_file():
            raise cli.UsageError(f"--vecnormalize {a.vecnormalize}: no such file")
        kwargs = cli.parse_env_kwargs(a.env_kwargs, a.env)
        cli.check_output(a.onnx, "--onnx")  # before the parity run, not a traceback at the write
        try:
            parity = export(a.env, a.policy, a.onnx, a.vecnormalize, kwargs,
                            0 if a.no_parity else a.parity_obs, a.seed, a.opset,
                            progress=not a.no_progress)
        except OpsetError as err:
            raise cli.UsageError(str(err)) from None
        except RuntimeError as err:  # the parity check failed: a finding, not a usage error
            print(f"export failed: {err}", file=sys.stderr)
            return 1
        except (ValueError, TypeError, KeyError, FileNotFoundError) as err:
            raise cli.UsageError(f"--env {a.env} --policy {a.policy}: "
                                 f"{err.args[0] if isinstance(err, KeyError) else err}") from None
        if parity is not None:
            print(f"parity on {parity.n_obs} observations: max |score diff| {parity.max_abs_diff:.2e}, "
                  f"{parity.decided} decided by a margin > {MARGIN:g}, {parity.mismatches} mismatches, "
                  f"{parity.same_action} same action overall")
        print(f"wrote {a.onnx}")
        return 0

    return cli.run_main(p, body)


if __name__ == "__main__":
    sys.exit(main())
