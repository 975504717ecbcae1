"""``--data`` on the command line: ``imagefolder:PATH``, ``arrays:PATH``, ``cifar10``, ``pkg.mod:fn``."""

from __future__ import annotations

from prunekit.errors import ConfigError

#: Prefixes that name a kind of user data read from a path.
_PATH_KINDS = ("imagefolder", "arrays")


def parse_data_argument(text: str) -> dict[str, str]:
    """The recipe ``data`` fields ``text`` stands for.

    ``imagefolder:PATH`` and ``arrays:PATH`` give ``{"name": kind, "path": PATH}``; anything else
    is a dataset name: a registered one (``cifar10``) or a ``package.module:function`` factory.

    >>> parse_data_argument("imagefolder:photos/")
    {'name': 'imagefolder', 'path': 'photos/'}
    """
    text = text.strip()
    kind, sep, path = text.partition(":")
    if sep and kind in _PATH_KINDS:
        if not path:
            raise ConfigError(f"--data {text!r}: give the path after '{kind}:', e.g. {kind}:data/")
        return {"name": kind, "path": path}
    if text in _PATH_KINDS:
        raise ConfigError(f"--data {text!r}: give the path as {text}:PATH")
    if not text:
        raise ConfigError("--data is empty: give a dataset name, imagefolder:PATH, arrays:PATH or package.module:function")
    return {"name": text}
