"""Exception types raised by prunekit.

Every error names what was wrong, where, and how to fix it. Catch
:class:`PrunekitError` to handle any of them.
"""

from __future__ import annotations


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
