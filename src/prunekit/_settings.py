"""The base of every settings model (API configs and recipe sections) and shared bounded types.

Settings are typed and closed: unknown keys fail, values are immutable, and numbers must be
finite (``inf``/``nan`` never reach a training loop). Counts that drive loops have upper bounds
so that a typo cannot turn into an hour-long (or endless) run.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field


class Settings(BaseModel):
    """Unknown keys are errors; values are immutable; numbers must be finite."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


S = TypeVar("S", bound=Settings)


def settings_of(source: BaseModel, cls: type[S], **replace: Any) -> S:
    """The ``cls`` settings held by ``source`` (e.g. a recipe section extending an API config): its
    values of ``cls``'s fields, with ``replace`` given instead of theirs."""
    return cls(**source.model_dump(include=set(cls.model_fields) - set(replace)), **replace)


#: The largest seed every RNG prunekit seeds accepts (NumPy's limit).
MAX_SEED = 2**32 - 1
#: Upper bound of epoch counts (fractional epochs allowed).
MAX_EPOCHS = 100_000
#: Upper bound of batch sizes.
MAX_BATCH = 65_536
#: Upper bound of counts of batches, steps, rounds and repeats.
MAX_COUNT = 1_000_000

Seed = Annotated[int, Field(ge=0, le=MAX_SEED, description="random seed (0 … 2**32 − 1)")]
