"""Attention modes: whole heads vs head dims vs ``attention="auto"`` on timm vision transformers.

Each model (timm, through the torchvision stand-in, random init with seed 0, 96×96 input) is
pruned with ``StructuredPruner(attention=mode, round_to=1)`` for a ratio target (0.5 of every
group) and a MACs target (3× fewer); MACs are counted with ``prunekit.metrics.count_macs`` (dense).
Twice: with timm's fused attention (its default: ``scaled_dot_product_attention`` without
``scale=``, whose implied 1/sqrt(head_dim) removing head dims would change, so head dims are
refused there) and without (``timm.layers.set_fused_attn(False)``: the stored ``scale`` is used).
Reported: the MACs reduction, the first block's heads × head dim after pruning, which mode each
block took, and the prune call's time (one thread).

    python benchmarks/attention_modes.py      # writes benchmarks/results/attention_modes.{json,md}
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import write_results  # noqa: E402
from prunekit.pruners import StructuredPruner  # noqa: E402
from prunekit.report.tables import Table  # noqa: E402

MODELS = ("vit_tiny_patch16_224", "deit_tiny_patch16_224", "vit_small_patch16_224")
MODES = ("heads", "head_dims", "auto")
TARGETS = {"ratio 0.5": {"ratio": 0.5}, "3x MACs": {"macs_reduction": 3.0}}


def run(name: str, mode: str, target: dict, fused: bool) -> dict:
    import timm
    from timm.layers import set_fused_attn

    set_fused_attn(fused)
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=10, img_size=96).eval()
    x = torch.randn(1, 3, 96, 96)
    start = time.perf_counter()
    result = StructuredPruner(**target, attention=mode, round_to=1).prune(model, x)
    seconds = time.perf_counter() - start
    attn = next(m for m in model.modules() if hasattr(m, "num_heads") and hasattr(m, "qkv"))
    modes = sorted(set(result.attention.values()))
    return {"model": name, "fused": fused, "mode": mode, "macs_before": result.macs_before, "macs_after": result.macs_after,
            "macs_reduction": result.macs_reduction, "first_block": f"{attn.num_heads}×{attn.head_dim}",
            "chosen": "/".join(modes), "blocks": len(result.attention), "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=list(MODELS), help="timm model names")
    args = parser.parse_args()
    from support.torchvision_standin import install

    install()
    torch.set_num_threads(1)
    rows: dict[str, list[dict]] = {}
    for label, target in TARGETS.items():
        rows[label] = [run(name, mode, target, fused) for fused in (True, False) for name in args.only for mode in MODES]
    tables = [Table(f"{label}", ["model", "fused attention", "attention", "MACs reduction", "first block heads×dim", "blocks took", "prune s"],
                    [[r["model"], "yes" if r["fused"] else "no", r["mode"], f"{r['macs_reduction']:.2f}×", r["first_block"],
                      f"{r['chosen']} ({r['blocks']})", f"{r['seconds']:.2f}"] for r in rs]) for label, rs in rows.items()]
    write_results("attention_modes", {"targets": TARGETS, "rows": rows}, tables, preamble=__doc__.split("\n\n")[1])


if __name__ == "__main__":
    main()
