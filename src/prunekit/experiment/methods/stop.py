"""A method's ``stop`` setting in a run: checked against the data, and recorded in the run summary."""

from __future__ import annotations

from typing import Any

from prunekit.errors import ConfigError
from prunekit.experiment.context import RunContext
from prunekit.training.stopping import StopCondition


def check_stop_data(ctx: RunContext, stop: StopCondition | None) -> None:
    """:class:`ConfigError` when ``stop`` limits the accuracy drop but the run has no validation split."""
    if stop is not None and stop.needs_accuracy and ctx.data.val is None:
        raise ConfigError("prune.stop.max_accuracy_drop is measured on the validation split, but this run has none "
                          "(data.val_fraction is 0); set data.val_fraction above 0 (e.g. 0.1), never judge on the test split")


def stop_extra(stop: StopCondition, variants: dict[str, dict[str, Any]], unit: str) -> dict[str, Any]:
    """``extra`` entries of a method result: ``stop`` (the condition, the main variant's outcome and every
    variant's) for ``summary.json``, and ``stop_note`` for the report's notes. ``unit``: "step" or "round"."""
    main, outcome = next(iter(variants.items()))
    kept = outcome["last_good_step"]
    kept_text = f"{unit} {kept + 1} is kept" if kept is not None else f"no {unit} satisfied it, the dense model is kept"
    note = f"stop condition ({main}): {outcome['stop_reason']} ({kept_text}; {unit}s are counted from 1 in the curve)"
    return {"stop": {"condition": stop.model_dump(mode="json", exclude_none=True), "method": main, **{k: v for k, v in outcome.items() if k != "checks"},
                     "variants": variants},
            "stop_note": note}
