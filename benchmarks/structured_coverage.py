"""Coverage: prune a fixed list of timm architectures 50 %, with prunekit and with Torch-Pruning.

For every model and tool: pruning succeeded, forward runs, output shape unchanged, the output
still depends on the input, MACs before and after (both counted with ``prunekit.metrics.count_macs``),
the time of the prune call alone, ONNX export (dynamo) + onnxruntime run. For prunekit also: the
PruningWarnings of the call, and the share of dense MACs in layers that no prunable group of the
dependency graph touches (each such layer must be named by a warning). For both tools: the share of
dense MACs in conv/linear layers whose weight shape did not change.
Each model runs in its own subprocess with a timeout, so one failure never stops the run.

Random initialisation alone can make a model's output zero or nearly constant (zero-initialised
classifiers and residual gates, layer scales at 1e-5), which would let "forward OK" and "ONNX
matches" pass trivially. Before anything else, every parameter whose values are all below 1e-3 in
magnitude gets a seeded non-trivial value (the same for both tools), and a model counts as ok only
if two different inputs give outputs that differ by more than 1e-3 of the output's scale.

    python benchmarks/structured_coverage.py            # writes benchmarks/results/structured_coverage.{json,md}
    python benchmarks/structured_coverage.py --only vit_tiny_patch16_224 --timeout 300
    python benchmarks/structured_coverage.py --only resnet18 resnest14d --out /tmp/cov_test   # a test run
    python benchmarks/structured_coverage.py --jobs 2 --timeout 150 --resume   # two models at once, continuing an interrupted run

Torch-Pruning 1.6.1 is run as its timm example does: ``MetaPruner`` with
``GroupMagnitudeImportance(p=2)``, the classifier ignored, ``num_heads`` given for every ``qkv``
layer, and ``num_heads``/``head_dim``/``attn_dim`` patched by hand afterwards.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import importlib
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# (timm name, input size, extra create_model kwargs)
MODELS: list[tuple[str, int, dict]] = [
    ("resnet18", 96, {}), ("resnet50", 96, {}), ("resnext26ts", 96, {}), ("seresnext26d_32x4d", 96, {}),
    ("regnetx_002", 96, {}), ("regnety_002", 96, {}),
    ("mobilenetv2_050", 96, {}), ("mobilenetv3_small_050", 96, {}), ("mobilenetv3_large_100", 96, {}),
    ("efficientnet_b0", 96, {}), ("efficientnet_lite0", 96, {}), ("tf_efficientnetv2_b0", 96, {}),
    ("ghostnet_100", 96, {}), ("ghostnetv2_100", 96, {}),
    ("convnext_atto", 96, {}), ("convnextv2_atto", 96, {}),
    ("densenet121", 96, {}), ("dla34", 96, {}), ("dla46_c", 96, {}),
    ("inception_v3", 128, {}), ("xception41", 96, {}),
    ("vit_tiny_patch16_224", 96, {"img_size": 96}), ("vit_small_patch16_224", 96, {"img_size": 96}),
    ("deit_tiny_patch16_224", 96, {"img_size": 96}), ("deit_tiny_distilled_patch16_224", 96, {"img_size": 96}),
    ("mixer_s16_224", 96, {"img_size": 96}), ("resmlp_12_224", 96, {"img_size": 96}), ("gmlp_ti16_224", 96, {"img_size": 96}),
    ("poolformer_s12", 96, {}), ("poolformerv2_s12", 96, {}),
    ("levit_128s", 224, {}), ("levit_conv_128s", 224, {}),
    ("swin_tiny_patch4_window7_224", 224, {}), ("swin_s3_tiny_224", 224, {}),
    ("cspresnet50", 96, {}), ("res2net50_14w_8s", 96, {}), ("dpn68", 96, {}),
    ("pit_ti_224", 224, {}), ("cait_xxs24_224", 96, {"img_size": 96}), ("coat_lite_tiny", 224, {}),
    ("efficientformer_l1", 224, {}), ("edgenext_xx_small", 96, {}), ("mobilevit_xxs", 128, {}),
    ("repvgg_a0", 96, {}), ("rexnet_100", 96, {}), ("hrnet_w18_small", 96, {}), ("fastvit_t8", 96, {}),
    # the constructs of issue 11: grouped convs, split attention, rotary attention, weight-standardised convs, window attention
    ("regnetz_005", 96, {}), ("resnext50_32x4d", 96, {}), ("regnety_008", 96, {}),
    ("resnest14d", 96, {}), ("resnest26d", 96, {}), ("skresnet18", 96, {}),
    ("vit_small_patch16_rope_224", 96, {"img_size": 96}), ("eva02_tiny_patch14_224", 98, {"img_size": 98}),
    ("nf_resnet26", 96, {}), ("nfnet_l0", 96, {}), ("resnetv2_50x1_bit", 96, {}),
    ("maxvit_nano_rw_256", 128, {"img_size": 128}), ("maxxvit_rmlp_nano_rw_256", 128, {"img_size": 128}),
    ("swinv2_cr_tiny_ns_224", 112, {"img_size": 112, "window_size": 7}),
    ("cs3darknet_s", 96, {}), ("focalnet_tiny_srf", 96, {}),
]

# What each model exercises (the table's construct column).
CONSTRUCTS: dict[str, str] = {
    "resnet18": "residual", "resnet50": "bottleneck residual", "resnext26ts": "grouped conv", "seresnext26d_32x4d": "grouped conv + SE",
    "regnetx_002": "grouped conv", "regnety_002": "grouped conv + SE",
    "mobilenetv2_050": "depthwise", "mobilenetv3_small_050": "depthwise + SE", "mobilenetv3_large_100": "depthwise + SE",
    "efficientnet_b0": "depthwise + SE", "efficientnet_lite0": "depthwise", "tf_efficientnetv2_b0": "fused MBConv + SE",
    "ghostnet_100": "ghost concat", "ghostnetv2_100": "ghost concat + attention gate",
    "convnext_atto": "depthwise + layer scale", "convnextv2_atto": "depthwise + GRN",
    "densenet121": "dense concat", "dla34": "tree aggregation", "dla46_c": "tree aggregation",
    "inception_v3": "multi-branch concat", "xception41": "separable conv",
    "vit_tiny_patch16_224": "attention (3 heads)", "vit_small_patch16_224": "attention",
    "deit_tiny_patch16_224": "attention (3 heads)", "deit_tiny_distilled_patch16_224": "attention + dist token",
    "mixer_s16_224": "token mixing", "resmlp_12_224": "token mixing + affine", "gmlp_ti16_224": "spatial gating unit",
    "poolformer_s12": "pool mixer + layer scale", "poolformerv2_s12": "pool mixer + layer scale",
    "levit_128s": "attention with bias, subsample", "levit_conv_128s": "conv attention",
    "swin_tiny_patch4_window7_224": "window attention", "swin_s3_tiny_224": "window attention",
    "cspresnet50": "CSP split", "res2net50_14w_8s": "hierarchical split", "dpn68": "dual path slices",
    "pit_ti_224": "pooling attention", "cait_xxs24_224": "class attention + layer scale", "coat_lite_tiny": "conv attention, split heads",
    "efficientformer_l1": "meta-former + layer scale", "edgenext_xx_small": "split depthwise + XCA", "mobilevit_xxs": "unfold attention",
    "repvgg_a0": "multi-branch (train)", "rexnet_100": "partial residual", "hrnet_w18_small": "multi-resolution fuse", "fastvit_t8": "reparam + layer scale",
    "regnetz_005": "grouped conv + SE", "resnext50_32x4d": "grouped conv", "regnety_008": "grouped conv + SE",
    "resnest14d": "split attention", "resnest26d": "split attention", "skresnet18": "selective kernel (split-sum)",
    "vit_small_patch16_rope_224": "rotary attention", "eva02_tiny_patch14_224": "rotary attention + SwiGLU",
    "nf_resnet26": "weight-standardised conv", "nfnet_l0": "weight-standardised conv + SE", "resnetv2_50x1_bit": "StdConv2d",
    "maxvit_nano_rw_256": "window + grid attention", "maxxvit_rmlp_nano_rw_256": "window + grid attention, ConvNeXt",
    "swinv2_cr_tiny_ns_224": "window attention (cosine)",
    "cs3darknet_s": "CSP split (attr // 2)", "focalnet_tiny_srf": "list-valued split sizes",
}

TINY = 1e-3  # parameters whose every value is smaller than this are re-initialised
SPREAD_TOL = 1e-3  # outputs of two inputs must differ by more than this fraction of the output's scale


def _prune_prunekit(model, x):
    """Prune 50 %; returns the PruneResult (its warnings: PruningWarnings plus any speed-up warnings)."""
    from prunekit.pruners import StructuredPruner

    return StructuredPruner(ratio=0.5).prune(model, x)


def _prune_torch_pruning(model, x):
    import torch_pruning as tp
    from torch import nn

    classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
    ignored = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == 10]
    if isinstance(classifier, nn.Module) and classifier not in ignored:
        ignored.append(classifier)
    num_heads = {m.qkv: m.num_heads for m in model.modules() if hasattr(m, "num_heads") and isinstance(getattr(m, "qkv", None), nn.Linear)}
    pruner = tp.pruner.MetaPruner(
        model, x, importance=tp.importance.GroupMagnitudeImportance(p=2), pruning_ratio=0.5,
        ignored_layers=ignored, num_heads=num_heads,
    )
    pruner.step()
    for m in model.modules():  # the manual patch Torch-Pruning's timm example applies
        if hasattr(m, "num_heads") and isinstance(getattr(m, "qkv", None), nn.Linear):
            m.num_heads = pruner.num_heads.get(m.qkv, m.num_heads)
            m.head_dim = m.qkv.out_features // (3 * m.num_heads)
            if hasattr(m, "attn_dim"):
                m.attn_dim = m.num_heads * m.head_dim


def reinit_degenerate(model, seed: int = 0) -> list[str]:
    """Give every parameter but biases whose values are all below ``TINY`` in magnitude a seeded non-trivial value.

    Weights (2-d and more): normal with std 1/sqrt(fan-in); 1-d/0-d parameters (norm weights, layer
    scales, residual gates): uniform in [0.5, 1). Biases stay: a zero bias never makes an output
    constant, and random ones would swamp the small activations of a randomly initialised network
    (its output would then hardly depend on the input). Returns the names changed.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    changed = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.numel() == 0 or name.endswith("bias") or float(p.abs().max()) >= TINY:  # bias, q_bias, ...
                continue
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p[0].numel()))
            else:
                p.copy_(0.5 + 0.5 * torch.rand(p.shape, generator=gen))
            changed.append(name)
    return changed


def _exports(model, x) -> bool:
    """Whether the dynamo ONNX exporter takes ``model`` at all (to tell an exporter limit from a pruning fault)."""
    import torch

    try:
        with tempfile.TemporaryDirectory() as tmp:
            torch.onnx.export(model, (x,), os.path.join(tmp, "m.onnx"), dynamo=True, verbose=False)
        return True
    except Exception:
        return False


def input_spread(model, x, x2) -> float:
    """max |f(x) - f(x2)| / max |f(x)|: 0 for an output that ignores its input."""
    import torch

    with torch.no_grad():
        a, b = model(x), model(x2)
    return float((a - b).abs().max() / a.abs().max().clamp_min(1e-30))


def weight_shapes(model) -> dict[str, tuple[int, ...]]:
    """Weight shape of every conv/linear layer (the layers count_macs counts per layer)."""
    from prunekit.layer_kinds import kind_of

    return {n: tuple(getattr(m, k.weight).shape) for n, m in model.named_modules() if (k := kind_of(m)) is not None and k.macs_over is not None}


def untouched_layers(model, x) -> tuple[list[str], list[str] | None]:
    """Conv/linear layers that no prunable group of prunekit's dependency graph touches (counted here from
    the groups' members, less the layers the model's inputs/outputs alone fix), and the graph's own ``untouched_layers()`` names."""
    import warnings

    from prunekit.pruners import StructuredPruner

    with warnings.catch_warnings():  # the prune call itself reports them
        warnings.simplefilter("ignore")
        graph = StructuredPruner(ratio=0.5).graph(model, x)
    touched = {m.module for g in graph.prunable_groups() for m in g.members}
    fixed = set(graph.fixed_by_model())  # channels fixed by the model's inputs/outputs alone (token-mixing linears): nothing to warn about
    reported = [u.name for u in graph.untouched_layers()]
    return [n for n in weight_shapes(model) if n not in touched and n not in fixed], reported


def unnamed(layers: list[str], warnings: list[str]) -> list[str]:
    """The layers that no warning names (a name counts as a whole dotted token)."""
    tokens = {t.rstrip(".") for w in warnings for t in re.findall(r"[\w.]+", w)}
    return [n for n in layers if n not in tokens]


def run_one(name: str, size: int, kwargs: dict, tool: str) -> dict:
    """Prune one model with one tool and record what works."""
    import numpy as np
    import torch

    from prunekit.metrics import count_macs
    from support.torchvision_standin import install

    install()
    import timm

    torch.manual_seed(0)
    torch.set_num_threads(1)
    record: dict = {"model": name, "tool": tool, "input": size}
    t0 = time.perf_counter()
    try:
        model = timm.create_model(name, pretrained=False, num_classes=10, **kwargs).eval()
        reinit = reinit_degenerate(model)
        record["reinitialised"] = len(reinit)
        record["reinitialised_names"] = reinit[:20]
        x, x2 = torch.randn(1, 3, size, size), torch.randn(1, 3, size, size)
        with torch.no_grad():
            dense_out = model(x)
        record["dense_input_spread"] = input_spread(model, x, x2)
        if record["dense_input_spread"] <= SPREAD_TOL:
            raise RuntimeError(f"the dense model's output hardly depends on its input (spread {record['dense_input_spread']:.2g}) even after re-initialisation")
        report = count_macs(model, x)
        record["macs_before"] = report.dense
        record["params_before"] = sum(p.numel() for p in model.parameters())
        shapes_before = weight_shapes(model)
        dense_model = copy.deepcopy(model)  # for the untouched-layer count (after the timed call) and the dense export check
    except Exception as exc:
        record.update(ok=False, stage="create", error=f"{type(exc).__name__}: {exc}"[:400])
        return record
    try:
        importlib.import_module("prunekit.pruners" if tool == "prunekit" else "torch_pruning")  # imports are not prune time
        t_prune = time.perf_counter()  # the tool's prune call only (Torch-Pruning: constructor + step() + head patch)
        result = (_prune_prunekit if tool == "prunekit" else _prune_torch_pruning)(model, x)
        record["prune_seconds"] = round(time.perf_counter() - t_prune, 3)
        warned = result.warnings if result is not None else []
        if tool == "prunekit":  # the graph for this count is built only after the timed call, so that call starts as cold as Torch-Pruning's
            untouched, record["untouched_reported"] = untouched_layers(dense_model, x)
            per_layer = {layer.name: layer.dense for layer in report.layers}
            record["untouched_layers"] = untouched
            record["untouched_macs_fraction"] = round(sum(per_layer.get(n, 0) for n in untouched) / max(1, report.dense), 4)
            record["warnings"] = len(warned)
            record["warning_texts"] = [w[:300] for w in warned]
            record["untouched_unnamed"] = unnamed(record["untouched_layers"], warned)
            record["reported_macs"] = [result.macs_before, result.macs_after]  # must equal count_macs before and after
    except Exception as exc:
        record.update(ok=False, stage="prune", error=f"{type(exc).__name__}: {exc}"[:400], trace=traceback.format_exc()[-1500:])
        return record
    try:
        model.eval()
        with torch.no_grad():
            out = model(x)
        record["out_shape"] = list(out.shape)
        record["forward_ok"] = tuple(out.shape) == tuple(dense_out.shape)
        after = count_macs(model, x)
        record["macs_after"] = after.dense
        if "reported_macs" in record:
            record["reported_macs_match"] = record["reported_macs"] == [record["macs_before"], after.dense]
        record["params_after"] = sum(p.numel() for p in model.parameters())
        shapes_after, per_layer_after = weight_shapes(model), {layer.name: layer.dense for layer in after.layers}
        unchanged = [n for n, shape in shapes_before.items() if shapes_after.get(n) == shape]
        record["unchanged_macs_fraction"] = round(sum(per_layer_after.get(n, 0) for n in unchanged) / max(1, record["macs_before"]), 4)
        record["input_spread"] = input_spread(model, x, x2)
        record["input_dependent"] = record["input_spread"] > SPREAD_TOL
    except Exception as exc:
        record.update(ok=False, forward_ok=False, stage="forward", error=f"{type(exc).__name__}: {exc}"[:400])
        return record
    try:
        import onnxruntime as ort

        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "m.onnx")
            torch.onnx.export(model, (x,), path, dynamo=True, verbose=False)
            session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        scale = float(np.abs(out.numpy()).max())  # relative to the output's own scale, however small
        record["export_ok"] = bool(np.allclose(got, out.numpy(), atol=1e-3 * scale, rtol=1e-3))
    except Exception as exc:
        record.update(export_ok=False, export_error=f"{type(exc).__name__}: {exc}"[:300], dense_export_ok=_exports(dense_model, x))
    record["ok"] = bool(record["forward_ok"] and record["input_dependent"] and record["macs_after"] < record["macs_before"])
    if not record["ok"]:
        record["stage"] = "check"
        record["error"] = "; ".join(why for bad, why in [
            (not record["forward_ok"], f"output shape {record['out_shape']} instead of {list(dense_out.shape)}"),
            (not record["input_dependent"], f"the pruned output hardly depends on the input (spread {record['input_spread']:.2g} <= {SPREAD_TOL})"),
            (record["macs_after"] >= record["macs_before"], "MACs not reduced"),
        ] if bad)
    record["seconds"] = round(time.perf_counter() - t0, 2)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="model names to run (default: the whole list)")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per model and tool")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "TOOL"), help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(HERE / "results"), help="results directory")
    parser.add_argument("--jobs", type=int, default=1, help="models run at once (each process uses one thread; timings are side by side per model)")
    parser.add_argument("--resume", action="store_true", help="keep the records already in --out and run only the missing ones")
    args = parser.parse_args()
    if args.one:
        name, tool = args.one
        size, kwargs = next((s, k) for n, s, k in MODELS if n == name)
        print("RESULT " + json.dumps(run_one(name, size, kwargs, tool)))
        return
    unknown = sorted(set(args.only or ()) - {n for n, _s, _k in MODELS})
    if unknown:
        parser.error(f"not in the model list: {', '.join(unknown)} (add them to MODELS with an input size)")
    chosen = [m for m in MODELS if not args.only or m[0] in args.only]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")])}
    out = Path(args.out)
    done: dict[tuple[str, str], dict] = {}
    if args.resume and (out / "structured_coverage.json").exists():
        done = {(r["model"], r["tool"]): r for r in json.loads((out / "structured_coverage.json").read_text())["records"]}
    order = {name: i for i, (name, _s, _k) in enumerate(chosen)}
    records = [r for key, r in done.items() if key[0] in order]
    lock = threading.Lock()

    def run_model(name: str) -> None:
        for tool in ("prunekit", "torch_pruning"):  # both tools of a model back to back, under the same load
            if (name, tool) in done:
                continue
            rec = _run_subprocess(name, tool, args.timeout, env)
            with lock:
                records.append(rec)
                records.sort(key=lambda r: (order[r["model"]], r["tool"]))
                print(f"{name:34s} {tool:14s} ok={rec.get('ok')} export={rec.get('export_ok')} {rec.get('error', '')[:90]}", flush=True)
                write_results(records, out)  # after every model: an interrupted run keeps what it measured (--resume continues it)

    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(run_model, [name for name, _s, _k in chosen]))


def _run_subprocess(name: str, tool: str, timeout: int, env: dict[str, str]) -> dict:
    """One model and tool in a fresh process (one failure or hang never stops the run)."""
    try:
        proc = subprocess.run([sys.executable, __file__, "--one", name, tool], capture_output=True, text=True, timeout=timeout, env=env)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        return json.loads(line[7:]) if line else {"model": name, "tool": tool, "ok": False, "stage": "crash", "error": proc.stderr[-400:]}
    except subprocess.TimeoutExpired:
        return {"model": name, "tool": tool, "ok": False, "stage": "timeout", "error": f"over {timeout}s"}


def _geomean(values: list[float]) -> float | None:
    return round(math.exp(sum(math.log(v) for v in values) / len(values)), 3) if values else None


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def _reduction(r: dict) -> float:
    return r["macs_before"] / max(1, r["macs_after"])


def summarise(records: list[dict]) -> dict:
    """Per-tool counts and medians, and the comparison over the models both tools pass."""
    models = list(dict.fromkeys(r["model"] for r in records))
    by = {(r["model"], r["tool"]): r for r in records}
    summary: dict = {}
    for tool in ("prunekit", "torch_pruning"):
        rs = [by[(m, tool)] for m in models if (m, tool) in by]
        summary[tool] = {
            "models": len(rs),
            "ok": sum(bool(r.get("ok")) for r in rs),
            "export_ok": sum(bool(r.get("export_ok")) for r in rs),
            "ok_fraction": round(sum(bool(r.get("ok")) for r in rs) / max(1, len(rs)), 3),
            "not_input_dependent": [r["model"] for r in rs if r.get("input_dependent") is False],
            "median_prune_seconds": _median([r["prune_seconds"] for r in rs if "prune_seconds" in r]),
        }
    pk = [by[(m, "prunekit")] for m in models if (m, "prunekit") in by]
    summary["prunekit"]["warnings_total"] = sum(r.get("warnings", 0) for r in pk)
    summary["prunekit"]["models_with_unnamed_untouched_layer"] = [r["model"] for r in pk if r.get("untouched_unnamed")]
    summary["prunekit"]["models_reporting_other_macs"] = [r["model"] for r in pk if r.get("reported_macs_match") is False]
    both = [m for m in models if by.get((m, "prunekit"), {}).get("ok") and by.get((m, "torch_pruning"), {}).get("ok")]
    summary["both_ok"] = {
        "models": len(both),
        "geomean_macs_reduction": {t: _geomean([_reduction(by[(m, t)]) for m in both]) for t in ("prunekit", "torch_pruning")},
        "median_prune_seconds": {t: _median([by[(m, t)]["prune_seconds"] for m in both]) for t in ("prunekit", "torch_pruning")},
    }
    return summary


def write_results(records: list[dict], out: Path) -> None:
    from prunekit._io import write_json, write_text

    models = list(dict.fromkeys(r["model"] for r in records))
    by = {(r["model"], r["tool"]): r for r in records}
    summary = summarise(records)
    write_json(out / "structured_coverage.json", {"summary": summary, "records": records})

    def cell(r: dict | None) -> str:
        if r is None:
            return "-"
        if not r.get("ok"):
            return f"FAIL ({r.get('stage', '?')})"
        onnx = "ok" if r.get("export_ok") else "FAIL (dense too)" if r.get("dense_export_ok") is False else "FAIL"
        return f"ok {_reduction(r):.2f}×, onnx {onnx}"

    def num(r: dict | None, key: str, fmt: str = "{}", scale: int = 1) -> str:
        return fmt.format(r[key] * scale) if r and r.get(key) is not None else "-"

    def one_line(text: str) -> str:
        return " ".join(re.sub(r"\x1b\[[0-9;]*m", "", text).split())[:300]

    pk, tp, both = summary["prunekit"], summary["torch_pruning"], summary["both_ok"]
    lines = [
        "# Structured pruning coverage (timm, 50 % channels, random init, degenerate parameters re-initialised)",
        "",
        f"- Pass: prunekit {pk['ok']}/{pk['models']}, Torch-Pruning 1.6.1 {tp['ok']}/{tp['models']}; "
        f"ONNX export matching: prunekit {pk['export_ok']}, Torch-Pruning {tp['export_ok']}.",
        f"- Where both pass ({both['models']} models): geometric-mean MACs reduction prunekit "
        f"{both['geomean_macs_reduction']['prunekit']}× vs Torch-Pruning {both['geomean_macs_reduction']['torch_pruning']}×; "
        f"median prune time prunekit {both['median_prune_seconds']['prunekit']} s vs Torch-Pruning {both['median_prune_seconds']['torch_pruning']} s.",
        f"- Median prune time over every model the tool pruned: prunekit {pk['median_prune_seconds']} s, Torch-Pruning {tp['median_prune_seconds']} s.",
        f"- prunekit models with an untouched layer no warning names: {len(pk['models_with_unnamed_untouched_layer'])} (must be 0); "
        f"PruningWarnings in total: {pk['warnings_total']}.",
        f"- prunekit models whose PruneResult MACs (before / after) differ from count_macs: {len(pk.get('models_reporting_other_macs', []))} (must be 0).",
        "",
        "| model | construct | input | MACs dense (M) | prunekit | Torch-Pruning | prune s (pk / TP) | pk warnings | pk untouched MACs | unchanged MACs (pk / TP) |",
        "|---|---|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    for m in models:
        a, b = by.get((m, "prunekit")), by.get((m, "torch_pruning"))
        first = a or b or {}
        dense = f"{first['macs_before'] / 1e6:.1f}" if first.get("macs_before") else ""
        lines.append(
            f"| {m} | {CONSTRUCTS.get(m, '')} | {first.get('input', '')} | {dense} | {cell(a)} | {cell(b)} | "
            f"{num(a, 'prune_seconds', '{:.2f}')} / {num(b, 'prune_seconds', '{:.2f}')} | {num(a, 'warnings')} | "
            f"{num(a, 'untouched_macs_fraction', '{:.0f} %', 100)} | "
            f"{num(a, 'unchanged_macs_fraction', '{:.0f} %', 100)} / {num(b, 'unchanged_macs_fraction', '{:.0f} %', 100)} |"
        )
    lines += [
        "",
        "## Columns",
        "",
        f"- Before anything is measured, every parameter but biases whose values are all below {TINY:g} in magnitude (zero-initialised "
        "classifiers, norm weights and residual gates, layer scales at 1e-5, 1e-6 class tokens) gets a seeded non-trivial value, "
        "the same for both tools (`reinitialised` in the JSON).",
        f"- ok: pruning and forward succeed, the output shape is unchanged, MACs are reduced, and the pruned output depends on the "
        f"input (two random inputs give outputs differing by more than {SPREAD_TOL:g} of the output's largest magnitude; "
        "`input_spread` in the JSON). ×: dense / pruned MACs, both counted with `prunekit.metrics.count_macs`.",
        "- onnx: dynamo export + onnxruntime output within 1e-3 (relative to the output's own scale) of torch's; "
        "'FAIL (dense too)': the exporter refuses the unpruned model as well.",
        "- prune s: the tool's prune call only (prunekit `StructuredPruner.prune`; Torch-Pruning constructor + `step()` + head patch), one thread.",
        "- pk warnings: messages in prunekit's `PruneResult.warnings` (PruningWarnings; Torch-Pruning has no counterpart).",
        "- pk untouched MACs: dense MACs of conv/linear layers that no prunable group of prunekit's dependency graph touches, "
        "over the dense model's MACs. Each such layer must be named by a warning.",
        "- unchanged MACs: dense MACs of conv/linear layers whose weight shape is the same after pruning, over the dense model's MACs "
        "(includes the classifier's output side and whatever the tool chose not to narrow). Both shares count a layer's MACs "
        "only where its module is called; a weight used through `F.linear` directly (EVA's fused qkv) counts among the other MACs.",
    ]
    unnamed_rows = [r for r in records if r.get("untouched_unnamed")]
    if unnamed_rows:
        lines += ["", "## Untouched layers that no warning names", ""]
        lines += [f"- {r['model']}: {', '.join(r['untouched_unnamed'][:8])}{' ...' if len(r['untouched_unnamed']) > 8 else ''}" for r in unnamed_rows]
    failures = [r for r in records if not r.get("ok") or not r.get("export_ok")]
    if failures:
        lines += ["", "## Failures", ""] + [f"- {r['model']} / {r['tool']}: {r.get('stage', 'export')}: {one_line(r.get('error') or r.get('export_error', ''))}" for r in failures]
    write_text(out / "structured_coverage.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
