"""Coverage: prune a fixed list of timm architectures 50 %, with prunekit and with Torch-Pruning.

For every model and tool: pruning succeeded, forward runs, output shape unchanged, MACs before and
after (both counted with ``prunekit.metrics.count_macs``), ONNX export (dynamo) + onnxruntime run.
Each model runs in its own subprocess with a timeout, so one failure never stops the run.

    python benchmarks/structured_coverage.py            # writes benchmarks/results/structured_coverage.{json,md}
    python benchmarks/structured_coverage.py --only vit_tiny_patch16_224 --timeout 300

Torch-Pruning 1.6.1 is run as its timm example does: ``MetaPruner`` with
``GroupMagnitudeImportance(p=2)``, the classifier ignored, ``num_heads`` given for every ``qkv``
layer, and ``num_heads``/``head_dim``/``attn_dim`` patched by hand afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
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
]


def _prune_prunekit(model, x):
    from prunekit.pruners import StructuredPruner

    StructuredPruner(ratio=0.5).prune(model, x)


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


def macs(model, x) -> int:
    from prunekit.metrics import count_macs

    return count_macs(model, x).dense


def run_one(name: str, size: int, kwargs: dict, tool: str) -> dict:
    """Prune one model with one tool and record what works."""
    import numpy as np
    import torch

    from support.torchvision_standin import install

    install()
    import timm

    torch.manual_seed(0)
    torch.set_num_threads(1)
    record: dict = {"model": name, "tool": tool, "input": size}
    t0 = time.perf_counter()
    try:
        model = timm.create_model(name, pretrained=False, num_classes=10, **kwargs).eval()
        x = torch.randn(1, 3, size, size)
        with torch.no_grad():
            dense_out = model(x)
        record["macs_before"] = macs(model, x)
        record["params_before"] = sum(p.numel() for p in model.parameters())
    except Exception as exc:
        record.update(ok=False, stage="create", error=f"{type(exc).__name__}: {exc}"[:400])
        return record
    try:
        t_prune = time.perf_counter()  # the tool's prune call only (Torch-Pruning: constructor + step() + head patch)
        (_prune_prunekit if tool == "prunekit" else _prune_torch_pruning)(model, x)
        record["prune_seconds"] = round(time.perf_counter() - t_prune, 3)
    except Exception as exc:
        record.update(ok=False, stage="prune", error=f"{type(exc).__name__}: {exc}"[:400], trace=traceback.format_exc()[-1500:])
        return record
    try:
        model.eval()
        with torch.no_grad():
            out = model(x)
        record["out_shape"] = list(out.shape)
        record["forward_ok"] = tuple(out.shape) == tuple(dense_out.shape)
        record["macs_after"] = macs(model, x)
        record["params_after"] = sum(p.numel() for p in model.parameters())
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
        scale = max(1.0, float(np.abs(out.numpy()).max()))
        record["export_ok"] = bool(np.allclose(got, out.numpy(), atol=1e-3 * scale, rtol=1e-3))
    except Exception as exc:
        record.update(export_ok=False, export_error=f"{type(exc).__name__}: {exc}"[:300])
    record["ok"] = bool(record["forward_ok"] and record["macs_after"] < record["macs_before"])
    record["seconds"] = round(time.perf_counter() - t0, 2)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="model names to run (default: the whole list)")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per model and tool")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "TOOL"), help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(HERE / "results"), help="results directory")
    args = parser.parse_args()
    if args.one:
        name, tool = args.one
        size, kwargs = next((s, k) for n, s, k in MODELS if n == name)
        print("RESULT " + json.dumps(run_one(name, size, kwargs, tool)))
        return
    chosen = [m for m in MODELS if not args.only or m[0] in args.only]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")])}
    records = []
    for name, _size, _kw in chosen:
        for tool in ("prunekit", "torch_pruning"):
            try:
                proc = subprocess.run([sys.executable, __file__, "--one", name, tool], capture_output=True, text=True, timeout=args.timeout, env=env)
                line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
                rec = json.loads(line[7:]) if line else {"model": name, "tool": tool, "ok": False, "stage": "crash", "error": proc.stderr[-400:]}
            except subprocess.TimeoutExpired:
                rec = {"model": name, "tool": tool, "ok": False, "stage": "timeout", "error": f"over {args.timeout}s"}
            records.append(rec)
            print(f"{name:34s} {tool:14s} ok={rec.get('ok')} export={rec.get('export_ok')} {rec.get('error', '')[:90]}", flush=True)
    write_results(records, Path(args.out))


def write_results(records: list[dict], out: Path) -> None:
    from prunekit._io import write_json, write_text

    models = list(dict.fromkeys(r["model"] for r in records))
    by = {(r["model"], r["tool"]): r for r in records}
    summary = {}
    for tool in ("prunekit", "torch_pruning"):
        rs = [by[(m, tool)] for m in models if (m, tool) in by]
        summary[tool] = {
            "models": len(rs),
            "ok": sum(bool(r.get("ok")) for r in rs),
            "export_ok": sum(bool(r.get("export_ok")) for r in rs),
            "ok_fraction": round(sum(bool(r.get("ok")) for r in rs) / max(1, len(rs)), 3),
        }
    write_json(out / "structured_coverage.json", {"summary": summary, "records": records})

    def cell(r: dict | None) -> str:
        if r is None:
            return "-"
        if not r.get("ok"):
            return f"FAIL ({r.get('stage', '?')})"
        red = r["macs_before"] / max(1, r["macs_after"])
        return f"ok {red:.2f}× MACs, onnx {'ok' if r.get('export_ok') else 'FAIL'}"

    lines = [
        "# Structured pruning coverage (timm, 50 % channels, random init)",
        "",
        f"prunekit: {summary['prunekit']['ok']}/{summary['prunekit']['models']} ok, ONNX {summary['prunekit']['export_ok']}; "
        f"Torch-Pruning 1.6.1: {summary['torch_pruning']['ok']}/{summary['torch_pruning']['models']} ok, ONNX {summary['torch_pruning']['export_ok']}.",
        "'ok' = pruning and forward succeed, output shape unchanged, MACs reduced (prunekit.metrics.count_macs).",
        "",
        "| model | input | prunekit | Torch-Pruning | MACs dense (M) |",
        "|---|---:|---|---|---:|",
    ]
    for m in models:
        a, b = by.get((m, "prunekit")), by.get((m, "torch_pruning"))
        dense = (a or b or {}).get("macs_before")
        lines.append(f"| {m} | {(a or b or {}).get('input', '')} | {cell(a)} | {cell(b)} | {dense / 1e6:.1f} |" if dense else f"| {m} | | {cell(a)} | {cell(b)} | |")
    failures = [r for r in records if not r.get("ok") or not r.get("export_ok")]
    if failures:
        lines += ["", "## Failures", ""] + [f"- {r['model']} / {r['tool']}: {r.get('stage', 'export')}: {r.get('error') or r.get('export_error', '')}" for r in failures]
    write_text(out / "structured_coverage.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
