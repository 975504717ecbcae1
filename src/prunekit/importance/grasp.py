"""The Hessian-gradient product GraSP scores with (Wang et al. 2020): ``Hg`` with ``g = ∇L``.

``g`` is the mean loss gradient over the batches (held fixed); ``Hg = ∇(gᵀ∇L)``, averaged over the
same batches, both w.r.t. the named *effective* (masked) weights. Like
:func:`~prunekit.importance.calibration.collect_gradients`, the model's ``.grad`` fields, buffers
and the global RNG are left as they were.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import islice

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils import parametrize

from prunekit.errors import ConfigError
from prunekit.importance.calibration import LossFn, collect_gradients
from prunekit.masks import effective_weight


def hessian_gradient_products(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], names: Sequence[str], n_batches: int = 1,
                              loss_fn: LossFn = F.cross_entropy) -> dict[str, Tensor]:
    """``Hg`` per named effective weight over the first ``n_batches`` of ``(inputs, labels)``."""
    pairs = list(islice(batches, n_batches))
    if not pairs:
        raise ConfigError("the GraSP Hessian-gradient product got no batches; pass an iterable of (inputs, labels)")
    grads = collect_gradients(model, pairs, names, len(pairs), loss_fn)
    device = next(model.parameters()).device
    saved_buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    totals: dict[str, Tensor] = {n: torch.zeros_like(g) for n, g in grads.items()}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for x, y in pairs:
            with parametrize.cached():
                weights = [effective_weight(model, n) for n in names]
                loss = loss_fn(model(x.to(device)), y.to(device))
                first = torch.autograd.grad(loss, weights, create_graph=True, allow_unused=True)
                z = sum(((grads[n] * g).sum() for n, g in zip(names, first) if g is not None), torch.zeros((), device=device))
                if not z.requires_grad:
                    continue
                second = torch.autograd.grad(z, weights, allow_unused=True)
            for name, hg in zip(names, second):
                if hg is not None:
                    totals[name] += hg.detach()
    with torch.no_grad():
        for key, buf in model.named_buffers():
            buf.copy_(saved_buffers[key])
    return {n: t / len(pairs) for n, t in totals.items()}
