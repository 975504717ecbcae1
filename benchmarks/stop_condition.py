"""Stop condition "prune until the validation drop passes 0.5 points": the sparsity reached and its test accuracy.

LeNet-300-100 on MNIST (dense: 8 epochs, Adam 1e-3, batch 128, 10% of the training set held out
as the validation split). Iterative global magnitude pruning removes 30% of the remaining weights
per round (schedule ``iterative``, rate 0.3, up to 99.5%), each round fine-tuned 1 epoch (Adam
1e-4), with ``StopCondition(max_accuracy_drop=0.5)`` judged on the validation split. The run stops
at the first round whose validation accuracy is more than 0.5 points below the dense model's and
returns the last round that satisfied it; the test accuracy is measured once, on that model.

    python benchmarks/stop_condition.py       # writes benchmarks/results/stop_condition.{json,md}

ResNet-20 on CIFAR-10 (``--models resnet20``) starts from the committed dense checkpoint
(``benchmarks/cifar_dense.py``) and fine-tunes each round 1 epoch (SGD lr 0.01, momentum 0.9, cosine,
weight decay 5e-4, channels-last), with the same 30% rounds and the same stop condition. Each run
keeps the rows of the models it did not run from the previous results.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from cifar_dense import cifar_train_config
from common import RESULTS, WORK, data_root, dense_checkpoint, setup_logging, write_results

from prunekit.metrics import count_parameters, evaluate
from prunekit.pruners import UnstructuredConfig
from prunekit.report.tables import Table
from prunekit.schedules import build_schedule
from prunekit.training import StopCondition, TrainConfig
from prunekit.training.prune_finetune import prune_finetune
from prunekit.zoo import get_loaders

SETTINGS = {
    "lenet_300_100": {"dataset": "mnist", "dense": TrainConfig(epochs=8, optimizer={"name": "adam", "lr": 1e-3}),
                      "finetune": TrainConfig(epochs=1, optimizer={"name": "adam", "lr": 1e-4})},
    "resnet20": {"dataset": "cifar10", "dense": cifar_train_config(),
                 "finetune": TrainConfig(epochs=1, optimizer={"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4},
                                         lr_schedule={"name": "cosine"}, channels_last=True, eval_every_epochs=0)},
}
MAX_DROP = 0.5


def run(model_name: str) -> dict:
    s = SETTINGS[model_name]
    model, record = dense_checkpoint(model_name, s["dataset"], s["dense"])
    data = get_loaders(s["dataset"], data_root(), batch_size=128, val_fraction=0.1, seed=0, progress=False)
    dense_val = evaluate(model, data.val).accuracy
    dense_test = record["test_accuracy"]
    start = time.perf_counter()
    result = prune_finetune(model, data.train, UnstructuredConfig(sparsity=0.995, scope="global"),
                            build_schedule({"name": "iterative", "rate": 0.3, "final_sparsity": 0.995}), s["finetune"], val=data.val,
                            checkpoint_dir=WORK / f"stop_condition-{model_name}", stop=StopCondition(max_accuracy_drop=MAX_DROP))
    seconds = time.perf_counter() - start
    good = next((r for r in result if r.round == result.last_good_step), None)
    counts = count_parameters(model)
    return {"model": model_name, "dataset": s["dataset"], "dense_val_accuracy": dense_val, "dense_test_accuracy": dense_test,
            "rounds_run": len(result), "last_good_round": result.last_good_step, "stopped_at": result.stopped_at, "stop_reason": result.stop_reason,
            "sparsity_reached": good.sparsity if good else 0.0, "val_accuracy_at_stop": good.accuracy if good else dense_val,
            "test_accuracy_at_stop": evaluate(model, data.test).accuracy, "compression_ratio": counts.compression_ratio,
            "rounds": [vars(r) | {"layer_sparsity": None} for r in result], "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["lenet_300_100"])
    args = parser.parse_args()
    setup_logging()
    torch.manual_seed(0)
    fresh = {name: run(name) for name in args.models}
    previous = RESULTS / "stop_condition.json"
    kept = [r for r in json.loads(previous.read_text())["rows"] if r["model"] not in fresh] if previous.exists() else []
    rows = sorted([*kept, *fresh.values()], key=lambda r: list(SETTINGS).index(r["model"]))
    table = Table(f"Iterative magnitude pruning until the validation drop passes {MAX_DROP} points",
                  ["model", "dataset", "dense test (%)", "rounds run", "last good round", "sparsity reached", "compression",
                   "val drop at stop (points)", "test accuracy at stop (%)", "test drop (points)", "minutes"],
                  [[r["model"], r["dataset"], round(100 * r["dense_test_accuracy"], 2), r["rounds_run"], r["last_good_round"],
                    f"{100 * r['sparsity_reached']:.1f}%", f"{r['compression_ratio']:.1f}×",
                    round(100 * (r["dense_val_accuracy"] - r["val_accuracy_at_stop"]), 2), round(100 * r["test_accuracy_at_stop"], 2),
                    round(100 * (r["dense_test_accuracy"] - r["test_accuracy_at_stop"]), 2), round(r["seconds"] / 60, 1)] for r in rows],
                  note="Rows of models not run by the last invocation are kept from the previous one.")
    write_results("stop_condition", {"rows": rows}, [table], "\n\n".join(__doc__.split("\n\n")[i] for i in (1, 3)))


if __name__ == "__main__":
    main()
