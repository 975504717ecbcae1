"""The run's PIE examples (test examples the pruned model gets wrong and the dense right): ``pie.json``
with all of them and ``plots/pie_examples.png``, a thumbnail grid of the first ones, for the report."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from prunekit._io import write_json
from prunekit.metrics.pie import examples_at
from prunekit.report import plots
from prunekit.report.thumbnails import MAX_THUMBNAILS, thumbnail_grid

PIE_FILE, PIE_PNG = "pie.json", "plots/pie_examples.png"


def write_pie(run_dir: Path, pie: dict[str, Any], test: Iterable[tuple[Tensor, Tensor]], class_names: Sequence[str] = (),
              mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> dict[str, Any]:
    """Write ``pie.json`` (``pie`` as :func:`prunekit.metrics.pie.pie_examples` gives it) and, when there
    are any, the thumbnail grid of the first :data:`MAX_THUMBNAILS`, de-normalised with ``mean``/``std``;
    returns what ``summary.json`` keeps: the count, the file names and the shown examples."""
    write_json(run_dir / PIE_FILE, pie)
    shown = pie["examples"][:MAX_THUMBNAILS]
    out: dict[str, Any] = {"count": pie["count"], "seeds": pie["seeds"], "file": PIE_FILE, "shown": shown}
    if shown:
        name = (lambda c: class_names[c] if c < len(class_names) else str(c)) if class_names else str  # noqa: E731
        captions = [f"#{e['index']} label {name(e['label'])}\ndense {name(e['dense'])} / pruned {'/'.join(name(p) for p in e['pruned'])}"
                    for e in shown]
        images = examples_at(test, [e["index"] for e in shown])
        fig = thumbnail_grid(images, captions, mean, std, title=f"{pie['count']} examples wrong after pruning, right before"
                             + (f" (first {len(shown)} shown)" if pie["count"] > len(shown) else ""))
        plots.save_png(fig, str(run_dir / PIE_PNG))
        out["thumbnails"] = PIE_PNG
    return out
