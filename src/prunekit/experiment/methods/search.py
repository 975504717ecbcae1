"""``prune.search`` of ``method: structured``: per-group ratios searched under the section's target before pruning.

The search (:func:`prunekit.analysis.search_ratios`) runs on the dense model, scores candidates
on the validation split and keeps every scored candidate under ``<run>/search/<strategy>/``, so a
restarted run does not score them again; ``<run>/search/<strategy>.json`` holds the answer and the
trials. The variant then prunes to the searched ``layer_ratios`` like any other.
"""

from __future__ import annotations

from typing import Any

from prunekit._io import write_json
from prunekit.analysis import search_ratios
from prunekit.analysis.search_problem import SearchConfig
from prunekit.errors import ConfigError
from prunekit.experiment.context import RunContext
from prunekit.importance import collect_calibration, make_criterion
from prunekit.pruners.structured_config import StructuredConfig
from prunekit.training import calibration_data, distributed


def searched_config(ctx: RunContext, search: SearchConfig, config: StructuredConfig, calibration_batches: int) -> tuple[StructuredConfig, dict[str, Any]]:
    """The config pruning to the searched ratios, and the method's extras: the search's summary and a report note."""
    if ctx.data.val is None:
        raise ConfigError("prune.search scores candidates on the validation split, and this recipe has none: set data.val_fraction > 0 (e.g. 0.1)")
    train = ctx.data.train
    epoch = train.epoch
    found = None
    try:
        if distributed.is_main_process():  # under torchrun rank 0 searches (one cache file) and the others get its result
            bn = calibration_data(train, 0, search.bn_batches, ctx.device) if search.bn_batches else []
            model = ctx.dense_model()
            needs = make_criterion(config.importance).needs
            calibration = collect_calibration(model, calibration_data(train, 0, calibration_batches, ctx.device), needs) if needs else None
            result = search_ratios(model, ctx.example_input(), config, search, val=ctx.data.val, train=bn, cache_dir=ctx.run.path / "search" / search.strategy,
                                   calibration=calibration, device=ctx.device, progress=ctx.progress)
            write_json(ctx.run.path / "search" / f"{search.strategy}.json", result.to_dict())
            found = (None if result.config is None else result.config.model_dump(mode="json"), result.to_dict())
    finally:
        train.set_epoch(epoch)
    dumped, searched = distributed.broadcast_object(found)  # as JSON: a search result holds an unpicklable Plan
    if dumped is None:
        raise ConfigError(f"the searched ratios of {ctx.recipe.model.name} cannot be written as layer_ratios (a group has no module of its own); "
                          "use the Python API's SearchResult.plan instead")
    summary = {k: v for k, v in searched.items() if k != "trials"}
    note = (f"per-group ratios searched by the {search.strategy} strategy on the validation split: {searched['metric']} "
            f"{searched['dense_cost'] / searched['cost']:.2f}× below dense (goal {searched['goal']:.4g}), {len(searched['trials'])} candidates "
            f"({searched['evaluated']} scored now, {searched['seconds_per_candidate']:.2f} s each); ratios in search/{search.strategy}.json")
    return StructuredConfig.model_validate(dumped), {"search": summary, "search_note": note}
