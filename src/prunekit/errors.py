"""Exception types raised by prunekit.

Every error names what was wrong, where, and how to fix it. Catch
:class:`PrunekitError` to handle any of them.
"""

from __future__ import annotations

from typing import Any

#: Longest echo of a user's value in an error message.
ECHO_LIMIT = 80


def shorten(value: Any, limit: int = ECHO_LIMIT) -> str:
    """``repr(value)`` cut to about ``limit`` characters, saying how long it was (for error messages).

    A value is never rendered whole first: a huge string or an alias-bomb list costs no more than
    its first ``limit`` characters.
    """
    if isinstance(value, str):
        text = repr(value[: limit + 1])
        size = len(value)
    elif isinstance(value, (list, tuple, dict, set)):
        text = _shorten_container(value, limit)
        size = len(value)
    else:
        text = repr(value) if not isinstance(value, int) or value.bit_length() < 256 else f"<int of {len(str(abs(value)))} digits>"
        size = len(text)
    if len(text) <= limit:
        return text
    unit = "items" if isinstance(value, (list, tuple, dict, set)) else "characters"
    return f"{text[:limit]}… ({size:,} {unit})"


def _shorten_container(value: Any, limit: int) -> str:
    """repr of a container built item by item until ``limit`` characters are exceeded."""
    items = value.items() if isinstance(value, dict) else value
    open_, close = {dict: "{}", list: "[]", tuple: "()", set: "{}"}.get(type(value), "[]")
    parts: list[str] = []
    length = 0
    for item in items:
        if length > limit:
            parts.append("…")
            break
        part = f"{shorten(item[0], limit)}: {shorten(item[1], limit)}" if isinstance(value, dict) else shorten(item, limit)
        parts.append(part)
        length += len(part) + 2
    return open_ + ", ".join(parts) + close


class PrunekitError(Exception):
    """Base class of every error prunekit raises on purpose."""


class UnknownNameError(PrunekitError, KeyError):
    """A name was looked up in a registry that does not hold it."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConfigError(PrunekitError, ValueError):
    """A setting (recipe field or API argument) has an invalid value."""


class DataError(PrunekitError):
    """A dataset is missing, corrupted, or cannot be downloaded."""


class ChecksumError(DataError):
    """A file's checksum does not match the expected one."""


class CheckpointError(PrunekitError):
    """A checkpoint or saved artifact is missing, corrupted or incompatible."""


class DamagedFileError(CheckpointError):
    """A saved file cannot be read back: truncated, garbage, not UTF-8/JSON/safetensors, or an unknown format."""


class StructureError(PrunekitError):
    """A model's structure cannot be handled the way it was asked to."""


class ExportError(PrunekitError):
    """A model could not be exported, or the exported model disagrees with the original."""


class TrainingDivergedError(PrunekitError):
    """Training produced a non-finite loss or weights (usually a learning rate that is too high)."""
