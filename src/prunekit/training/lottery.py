"""Lottery tickets (Frankle & Carbin 2019): iterative magnitude pruning with reset or rewinding.

Round 0 trains the dense network and remembers its weights at ``rewind_step`` (0 = the
initialisation). Round ``r ≥ 1`` prunes the previous round's *trained* ticket to
``1 − (1 − rate)^r`` per layer (monotone masks), resets the surviving weights to the remembered
ones and trains again. Controls per round: ``random_reinit`` (same masks, a fresh initialisation
from another seed) and ``random_mask`` (remembered weights, random masks with the same number of
weights per layer). Every trained network is evaluated on ``test`` at the end and at the epoch of
lowest validation loss (early stopping, checked once per epoch).

Files under ``out_dir``: ``rewind.safetensors`` and, per round, ``round_NN/masks.safetensors``,
``ticket.safetensors`` (the trained ticket) and ``<kind>.json`` records. A rerun skips what
exists and resumes an interrupted training from ``round_NN/train_<kind>.safetensors``; what is
damaged (a warning names it) is made again.

Simplification: after rewinding to step ``k`` every round trains for the full ``train`` budget
(open_lth trains for the remaining ``T − k`` steps, continuing the learning-rate schedule).
"""

from __future__ import annotations

import logging
import os
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import torch
from pydantic import Field
from torch import Tensor, nn

from prunekit._deprecation import renamed
from prunekit._settings import Seed, Settings
from prunekit._io import load_safetensors, read_record, save_safetensors, write_json
from prunekit.errors import CheckpointError, ConfigError, DamagedFileError
from prunekit.masks import MaskSet, prunable_parameters
from prunekit.metrics.accuracy import evaluate
from prunekit.pruners.unstructured import Batches, UnstructuredConfig, prune_unstructured
from prunekit.schedules.iterative import cumulative_sparsity
from prunekit.training import distributed
from prunekit.training.callbacks import Callback
from prunekit.training.config import TrainConfig
from prunekit.training.loop import fit
from prunekit.training.trainer import Trainer

log = logging.getLogger(__name__)

T = TypeVar("T")

Control = Literal["random_reinit", "random_mask"]
_Rate = Annotated[float, Field(gt=0.0, lt=1.0)]


class LotteryConfig(Settings):
    """Settings of a lottery-ticket experiment.

    ``rate`` is the fraction of each layer's *remaining* weights pruned per round;
    ``rate_overrides`` give some layers their own rate (e.g. ``{"fc3.weight": 0.1}``: the output
    layer at half the rate, as in the paper). ``scope="global"`` ranks all non-overridden layers
    together instead. Weights remaining are counted over the pruned parameters only.
    """


    rounds: int = Field(12, ge=0, le=1000, description="pruning rounds after the dense round 0")
    rate: float = Field(0.2, gt=0.0, lt=1.0)
    rate_overrides: dict[str, _Rate] = Field(default_factory=dict)
    scope: Literal["layer", "global"] = "layer"
    rewind_step: int = Field(0, ge=0, description="0 = reset to initialisation; k = rewind to iteration k")
    controls: tuple[Control, ...] = ()
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    train: TrainConfig = TrainConfig()
    seed: Seed = Field(0, description="initialisation seed; random_reinit uses other seeds derived from it")

    def pruning_config(self, round_index: int) -> UnstructuredConfig:
        """Magnitude pruning to the cumulative sparsity of round ``round_index``."""
        return UnstructuredConfig(
            criterion="magnitude",
            sparsity=cumulative_sparsity(self.rate, round_index),
            scope=self.scope,
            overrides={p: cumulative_sparsity(r, round_index) for p, r in self.rate_overrides.items()},
            include=self.include,
            exclude=self.exclude,
        )


@dataclass
class LotteryRoundResult:
    """Test accuracy of one trained network of one round."""

    round: int
    kind: str
    weights_remaining: float
    test_accuracy: float
    early_stop_test_accuracy: float
    early_stop_step: int
    layer_remaining: dict[str, float] = field(default_factory=dict)


def run_lottery(
    model_fn: Callable[[], nn.Module],
    train: Batches,
    val: Batches | None,
    test: Batches,
    config: LotteryConfig,
    out_dir: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> list[LotteryRoundResult]:
    """Run rounds ``0..config.rounds``; return the records of tickets and controls, round by round.

    ``model_fn()`` builds the untrained network; it is called after seeding, so it must draw its
    initialisation from torch's global RNG (every ``nn.Module`` does).
    """
    out = Path(out_dir)
    run = _Run(model_fn, train, val, test, config, out, torch.device(device), progress)
    records = [run.round_zero()]
    for r in range(1, config.rounds + 1):
        records += run.round(r)
    return records


class _Run:
    """One experiment's state: where files live and how to build, train and evaluate networks."""

    def __init__(self, model_fn: Callable[[], nn.Module], train: Batches, val: Batches | None, test: Batches,
                 config: LotteryConfig, out: Path, device: torch.device, progress: bool) -> None:
        self.model_fn, self.train, self.val, self.test = model_fn, train, val, test
        self.config, self.out, self.device, self.progress = config, out, device, progress

    def build(self, seed: int, masks: MaskSet | None = None) -> nn.Module:
        torch.manual_seed(seed)
        model = self.model_fn()
        targets = prunable_parameters(model, self.config.include, self.config.exclude)
        (masks if masks is not None else MaskSet.ones(model, targets)).attach(model)
        return model

    def round_zero(self) -> LotteryRoundResult:
        round_dir = self.out / "round_00"
        model = self.build(self.config.seed)
        main = distributed.is_main_process()  # under torchrun rank 0 writes; the others read after a barrier
        if main and _load_if_intact(round_dir / "masks.safetensors", MaskSet.load) is None:
            MaskSet.from_model(model).save(round_dir / "masks.safetensors")
        rewind_path = self.out / "rewind.safetensors"
        if main and self.config.rewind_step == 0 and _load_if_intact(rewind_path, load_safetensors) is None:
            save_safetensors(rewind_path, model.state_dict())
        distributed.barrier()
        extra = [RewindPoint(self.config.rewind_step, rewind_path)] if self.config.rewind_step else []
        return self.train_and_record(model, 0, "ticket", extra)

    def round(self, r: int) -> list[LotteryRoundResult]:
        round_dir = self.out / f"round_{r:02d}"
        masks_path = round_dir / "masks.safetensors"
        masks = _load_if_intact(masks_path, MaskSet.load)
        if masks is None:
            previous = self.out / f"round_{r - 1:02d}"
            trained = self.build(self.config.seed, MaskSet.load(previous / "masks.safetensors"))
            trained.load_state_dict(load_safetensors(previous / "ticket.safetensors"))
            masks = MaskSet(distributed.broadcast_masks(prune_unstructured(trained, self.config.pruning_config(r))))
            if distributed.is_main_process():
                masks.save(masks_path)
        rewind_path = self.out / "rewind.safetensors"
        if not rewind_path.exists():
            raise ConfigError(f"rewind_step={self.config.rewind_step} was never reached in round 0 (no {rewind_path}); lower it")
        try:
            rewind_state = load_safetensors(rewind_path)
        except DamagedFileError as exc:  # round 0 is trained, so its rewind point cannot be made again
            raise DamagedFileError(f"{exc}; it was saved at step {self.config.rewind_step} of round 0, so the experiment "
                                   f"must start over: run it with another output folder") from None
        records = [self.train_and_record(rewind(self.build(self.config.seed), rewind_state, masks), r, "ticket")]
        for control in self.config.controls:
            records.append(self.train_and_record(self.control(control, r, masks, rewind_state), r, control))
        return records

    def control(self, kind: Control, r: int, masks: MaskSet, rewind_state: Mapping[str, Tensor]) -> nn.Module:
        if kind == "random_reinit":
            return self.build(self.config.seed + 10_000 + r, masks)
        generator = torch.Generator().manual_seed(self.config.seed + 20_000 + r)
        return rewind(self.build(self.config.seed), rewind_state, random_masks_like(masks, generator))

    def train_and_record(self, model: nn.Module, r: int, kind: str, extra: list[Callback] | None = None) -> LotteryRoundResult:
        round_dir = self.out / f"round_{r:02d}"
        record_path = round_dir / f"{kind}.json"
        ticket = round_dir / "ticket.safetensors" if kind == "ticket" else None
        saved = _load_if_intact(record_path, lambda path: _read_record(path, ticket))
        if saved is not None:
            return saved
        tracker = EarlyStopTest(self.test, self.device)
        fit(model, self.train, self.config.train, val=self.val, callbacks=[tracker, *(extra or [])],
            checkpoint=round_dir / f"train_{kind}.safetensors", device=self.device, progress=self.progress,
            description=f"lottery round {r} {kind}")
        final = evaluate(model, self.test, device=self.device).accuracy
        used = MaskSet.from_model(model)
        record = LotteryRoundResult(
            round=r,
            kind=kind,
            weights_remaining=used.kept() / used.numel(),
            test_accuracy=final,
            early_stop_test_accuracy=tracker.best_test_accuracy if tracker.best_step is not None else final,
            early_stop_step=tracker.best_step if tracker.best_step is not None else -1,
            layer_remaining={n: 1.0 - s for n, s in used.layer_sparsity().items()},
        )
        if distributed.is_main_process():
            if kind == "ticket":
                save_safetensors(round_dir / "ticket.safetensors", model.state_dict())
            write_json(record_path, asdict(record))
        distributed.barrier()  # the next round reads the ticket rank 0 wrote
        log.info("lottery round %d %s: %.2f%% weights remaining, test accuracy %.4f (early stop %.4f)",
                 r, kind, 100 * record.weights_remaining, final, record.early_stop_test_accuracy)
        return record


def _load_if_intact(path: Path, load: Callable[[Path], T]) -> T | None:
    """``load(path)``; ``None`` if the file is missing or damaged (a warning names it: it is made again)."""
    if not path.exists():
        return None
    try:
        return load(path)
    except CheckpointError as exc:
        log.warning("%s; making it again", exc)
        return None


def _read_record(path: Path, ticket: Path | None) -> LotteryRoundResult:
    """A saved record; for a ticket, its trained weights must read back too (the next round starts from them)."""
    if ticket is not None:
        load_safetensors(ticket)
    return read_record(path, LotteryRoundResult, "lottery record")


def rewind(model: nn.Module, state: Mapping[str, Tensor], masks: MaskSet) -> nn.Module:
    """Load the remembered ``state`` into ``model`` and attach ``masks``: effective weights = state · mask."""
    model.load_state_dict(dict(state))
    masks.attach(model)
    return model


def random_masks_like(masks: MaskSet, generator: torch.Generator) -> MaskSet:
    """Random masks keeping exactly as many entries per parameter as ``masks`` does."""
    out = {}
    for name, mask in masks.items():
        flat = torch.zeros(mask.numel(), dtype=torch.bool)
        flat[torch.randperm(mask.numel(), generator=generator)[: int(mask.sum())]] = True
        out[name] = flat.view_as(mask)
    return MaskSet(out)


class RewindPoint(Callback):
    """Saves the model's state after iteration ``step`` to ``path`` (once; kept across resumes)."""

    def __init__(self, step: int, path: Path) -> None:
        self.step = step
        self.path = path

    def on_step_end(self, trainer: Trainer, step: int, loss: float) -> None:
        if step == self.step and distributed.is_main_process() and not self.path.exists():
            save_safetensors(self.path, trainer.model.state_dict())


class EarlyStopTest(Callback):
    """Evaluates ``test`` whenever the validation loss reaches a new minimum (epoch ends)."""

    def __init__(self, test: Batches, device: torch.device) -> None:
        self.test = test
        self.device = device
        self.best_val_loss = float("inf")
        self.best_step: int | None = None
        self.best_test_accuracy = 0.0

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: dict[str, Any]) -> None:
        if "val_loss" in record and record["val_loss"] < self.best_val_loss:
            self.best_val_loss = record["val_loss"]
            self.best_step = trainer.state.step
            self.best_test_accuracy = evaluate(trainer.model, self.test, device=self.device).accuracy

    def state_dict(self) -> dict[str, Any]:
        return {"best_val_loss": self.best_val_loss, "best_step": self.best_step, "best_test_accuracy": self.best_test_accuracy}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_val_loss = state["best_val_loss"]
        self.best_step = state["best_step"]
        self.best_test_accuracy = state["best_test_accuracy"]


__getattr__ = renamed(__name__, {"LotteryRecord": ("LotteryRoundResult", lambda: LotteryRoundResult)})


def seed_spread(curves: Sequence[Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Mean and spread over seeds of lottery curves (one per seed, rows with ``method``, ``round``,
    ``fraction_remaining`` and ``accuracy``): one row per (method, round) that some seed has, with
    ``accuracy`` the mean, ``accuracy_std`` the sample standard deviation (0 for one seed),
    ``accuracies`` the per-seed values in the order of ``curves`` and ``seeds`` how many there are."""
    cells: dict[tuple[str, int], list[Mapping[str, Any]]] = {}
    for curve in curves:
        for row in curve:
            cells.setdefault((row["method"], row["round"]), []).append(row)
    out = []
    for (method, r), rows in sorted(cells.items(), key=lambda item: (item[0][1], item[0][0])):
        accs = [float(row["accuracy"]) for row in rows]
        out.append({"method": method, "round": r, "fraction_remaining": statistics.fmean(row["fraction_remaining"] for row in rows),
                    "accuracy": statistics.fmean(accs), "accuracy_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                    "accuracies": accs, "seeds": len(accs)})
    return out
