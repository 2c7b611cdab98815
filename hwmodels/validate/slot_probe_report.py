"""The analysis of a ``slot_probe`` JSON (CPU): does the slot of the long sequence explain 27 vs 20.6 ms?

Per batch: the median replay time (ms; one replay = LAYERS attention calls = the attention of one
engine iteration) of every order, and the spread over the long sequence's slots (max / min of the
"long@s" medians). For the real batches, the recorded iteration time minus the probe's attention
time in recorded order is the rest of the iteration (everything but attention); the slot hypothesis
explains the split if that rest is about the same in the 20.6 and the 27 ms batches (spread well
under the 6.4 ms split) while the attention times differ by the split. Also printed: the full
iteration ratio the probe predicts (rest, taken as the mean over batches, + attention) against the
recorded one.
"""

from __future__ import annotations

import json

import numpy as np


def medians(d: dict) -> dict:
    """{(group, batch): {order: median replay ms}}; ValueError when a configuration has no times."""
    out: dict = {}
    for c in d["configs"]:
        t = c.get("replay_ms")
        if not t:
            raise ValueError(f"slot_probe JSON: configuration {c['group']} {c['batch']} {c['order']} has no replay_ms")
        out.setdefault((c["group"], c["batch"]), {})[c["order"]] = float(np.median(t))
    return out


def slot_spread(orders: dict) -> tuple[float, float, float, int, int]:
    """(min, max, max/min, slot of min, slot of max) over the "long@s" medians of one batch."""
    sl = {int(k.split("@")[1]): v for k, v in orders.items() if k.startswith("long@")}
    s = sorted(sl)
    v = np.array([sl[k] for k in s])
    return float(v.min()), float(v.max()), float(v.max() / v.min()), s[int(v.argmin())], s[int(v.argmax())]


def analyse(d: dict) -> dict:
    """Numbers behind the report (JSON-ready)."""
    med = medians(d)
    res = {"real": [], "synthetic": []}
    for bi, rb in enumerate(d["real_batches"]):
        o = med[("real", bi)]
        lo, hi, ratio, smin, smax = slot_spread(o)
        rec = float(np.median(rb["recorded_gpu_ms"]))
        res["real"].append({"batch": bi, "run": rb["run"], "iteration": rb["iteration"], "decode_seqs": rb["decode_seqs"],
                            "long_slot": int(np.argmax(rb["contexts"])), "recorded_ms": rec,
                            "attn_recorded_order_ms": o["recorded"], "rest_ms": rec - o["recorded"],
                            "attn_ascending_ms": o["ascending"], "attn_descending_ms": o["descending"],
                            "slot_min_ms": lo, "slot_max_ms": hi, "slot_ratio": ratio, "slot_min_at": smin, "slot_max_at": smax})
    for (g, b), o in sorted(med.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        if g != "synthetic":
            continue
        lo, hi, ratio, smin, smax = slot_spread(o)
        res["synthetic"].append({"n": b, "slot_ms": [o[f"long@{s}"] for s in range(b)], "slot_min_ms": lo,
                                 "slot_max_ms": hi, "slot_ratio": ratio, "slot_min_at": smin, "slot_max_at": smax})
    real = res["real"]
    if real:
        rec = np.array([r["recorded_ms"] for r in real])
        rest = np.array([r["rest_ms"] for r in real])
        attn = np.array([r["attn_recorded_order_ms"] for r in real])
        slow, fast = rec >= 24.0, rec < 24.0  # the two recorded levels, 27.0 and 20.6 ms
        v = {"rest_ms_min": float(rest.min()), "rest_ms_max": float(rest.max())}
        if slow.any() and fast.any():
            v.update({"recorded_split_ms": float(rec[slow].mean() - rec[fast].mean()),
                      "recorded_ratio": float(rec[slow].mean() / rec[fast].mean()),
                      "attn_split_ms": float(attn[slow].mean() - attn[fast].mean()),
                      "predicted_ratio": float((rest.mean() + attn[slow].mean()) / (rest.mean() + attn[fast].mean()))})
            v["reproduced"] = bool(abs(v["attn_split_ms"] - v["recorded_split_ms"]) <= 0.25 * v["recorded_split_ms"])
        res["verdict"] = v
    return res


def report(path: str) -> str:
    """The printed analysis of the probe JSON at ``path``. ``ValueError`` naming ``path`` when it
    cannot be read, is not JSON, or lacks what ``slot_probe --out`` writes (``configs``, ``layers``,
    ``real_batches``, ``synthetic``, ``repeats``)."""
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"slot_probe report {path}: cannot read it as JSON ({err})") from None
    try:
        return _report(path, d)
    except (KeyError, TypeError, IndexError, AttributeError) as err:
        raise ValueError(f"slot_probe report {path}: not a slot_probe --out JSON "
                         f"({type(err).__name__}: {err})") from None


def _report(path: str, d: dict) -> str:
    a = analyse(d)
    env = d.get("environment", {})
    L = d["layers"]
    lines = [f"slot probe {path}: {env.get('gpu')} ({env.get('sm_count')} SMs), torch {env.get('torch')}, "
             f"{env.get('nvidia_smi', '')}; one replay = {L} attention calls (ms, medians of {d['repeats']})", "",
             "real batches (Mooncake load runs; recorded = the engine's whole iteration, GPU time):",
             "batch  run                         iter  seqs  long@  recorded  attn(rec)  rest   asc    desc   "
             "slot min..max (at)        max/min"]
    for r in a["real"]:
        lines.append(f"{r['batch']:5d}  {r['run']:<26} {r['iteration']:5d}  {r['decode_seqs']:4d}  {r['long_slot']:5d}  "
                     f"{r['recorded_ms']:8.2f}  {r['attn_recorded_order_ms']:9.3f}  {r['rest_ms']:5.2f}  "
                     f"{r['attn_ascending_ms']:5.2f}  {r['attn_descending_ms']:5.2f}  "
                     f"{r['slot_min_ms']:6.3f}..{r['slot_max_ms']:6.3f} ({r['slot_min_at']}..{r['slot_max_at']})  "
                     f"{r['slot_ratio']:6.3f}")
    lines += ["", f"synthetic: one {d['synthetic']['long']}-token sequence + n-1 of {d['synthetic']['short']}; "
              "median ms per slot of the long one", "  n  max/min  min(at)  max(at)  per slot"]
    for s in a["synthetic"]:
        lines.append(f"{s['n']:3d}  {s['slot_ratio']:6.3f}  {s['slot_min_ms']:6.3f}({s['slot_min_at']})  "
                     f"{s['slot_max_ms']:6.3f}({s['slot_max_at']})  " + " ".join(f"{x:.3f}" for x in s["slot_ms"]))
    v = a.get("verdict")
    if v:
        lines.append("")
        lines.append(f"rest of the iteration (recorded - attention): {v['rest_ms_min']:.2f}..{v['rest_ms_max']:.2f} ms")
        if "recorded_split_ms" in v:
            lines.append(f"recorded split {v['recorded_split_ms']:.2f} ms (ratio {v['recorded_ratio']:.3f}); "
                         f"probe attention split {v['attn_split_ms']:.2f} ms over {L} layers; predicted iteration "
                         f"ratio {v['predicted_ratio']:.3f}: " + ("REPRODUCED (within 25% of the split)" if v["reproduced"]
                                                                   else "NOT reproduced by attention alone"))
        else:
            lines.append("the real batches do not span both recorded levels (27 and 20.6 ms): no split to compare")
    return "\n".join(lines)
