"""Backends and judges added by other packages, found through entry points (docs/plugins.md).

Two entry-point groups:

- ``mijabench.backends``: ``NAME = "module:factory"``; ``factory(ModelConfig) -> Backend`` serves the
  model strings ``NAME:TARGET``.
- ``mijabench.judges``: ``NAME = "module:factory"``; ``factory(target: str)`` returns a judge for the judge
  strings ``NAME:TARGET`` (see ``judge.plugins`` for what a judge object provides).

Built-ins always win. A plugin whose name is a built-in scheme (``openai``, ``rules``...) would silently take
over every audit that names it, so it is refused: one line on stderr, and it is never loaded. A judge plugin
may not reuse a backend's name either, since a judge string names a backend for LLM judges.
Plugins are looked up once per process.
"""

from __future__ import annotations

import sys
from functools import cache
from importlib.metadata import EntryPoint, entry_points

from .errors import MijaError

BACKEND_GROUP = "mijabench.backends"
JUDGE_GROUP = "mijabench.judges"


@cache
def backend_plugins() -> dict[str, EntryPoint]:
    from .backends.registry import BUILTIN_FACTORIES

    return _accepted(BACKEND_GROUP, set(BUILTIN_FACTORIES), "a built-in model scheme")


@cache
def judge_plugins() -> dict[str, EntryPoint]:
    from .backends.registry import BUILTIN_FACTORIES
    from .judge.rules import RULES_JUDGE

    taken = set(BUILTIN_FACTORIES) | {RULES_JUDGE.split(":", 1)[0]}
    accepted = _accepted(JUDGE_GROUP, taken, "a built-in model or judge scheme")
    for name in sorted(set(accepted) & set(backend_plugins())):
        _refuse(accepted.pop(name), JUDGE_GROUP, "also a backend plugin's scheme")
    return accepted


def _accepted(group: str, builtin: set[str], what: str) -> dict[str, EntryPoint]:
    accepted: dict[str, EntryPoint] = {}
    for ep in entry_points(group=group):
        if ep.name in builtin:
            _refuse(ep, group, what)
        elif ep.name in accepted:
            _refuse(ep, group, f"already registered by {origin(accepted[ep.name])}")
        elif ":" in ep.name or not ep.name:
            _refuse(ep, group, "not a usable scheme name")
        else:
            accepted[ep.name] = ep
    return accepted


def _refuse(ep: EntryPoint, group: str, why: str) -> None:
    sys.stderr.write(f"mijabench: ignoring plugin '{ep.name}' ({group}, from {origin(ep)}): "
                     f"'{ep.name}' is {why}\n")


def origin(ep: EntryPoint) -> str:
    """The package (name and version) that registered an entry point: part of a plugin judge's identity."""
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else ep.value


def build_plugin(ep: EntryPoint, what: str, argument):
    """Load a plugin's factory and call it with ``argument``; whatever goes wrong in the plugin's own code
    (an import, the factory) is one line naming it and its package, not a traceback."""
    try:
        return ep.load()(argument)
    except MijaError:
        raise
    except Exception as exc:  # noqa: BLE001 - a third-party package's failure, reported as such
        why = f"{type(exc).__name__}: {exc}"
        raise MijaError(f"{what}: the plugin ({origin(ep)}) failed to load: {why}") from exc
