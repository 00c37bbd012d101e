"""mijabench: demographic safety audits for language models.

The package follows the data flow: sources (seeds) -> bench (scenarios, prompts) -> run (responses)
-> judge (verdicts) -> analysis -> report / align. Records and the taxonomy sit underneath every stage;
the store is the one place each stage reads from and writes to.

The names below are the stable Python API (docs/python-api.md). They are imported on first use, so
``import mijabench`` loads no stage, no numpy and no HTTP client.

    import mijabench as mb
    ws = mb.Workspace("my-workspace")
    ws.build("demo", seeds="demo")
    ws.run("demo", "scripted:always-complies")
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module it lives in
_API = {
    "Workspace": "mijabench.api",
    "Seed": "mijabench.records",
    "Scenario": "mijabench.records",
    "BenchmarkItem": "mijabench.records",
    "Response": "mijabench.records",
    "Verdict": "mijabench.records",
    "SamplingSettings": "mijabench.records",
    "SAFE": "mijabench.records",
    "HARMFUL": "mijabench.records",
    "UNPARSED": "mijabench.records",
    "load_taxonomy": "mijabench.taxonomy",
    "Taxonomy": "mijabench.taxonomy",
    "parse_model": "mijabench.backends.registry",
    "ModelConfig": "mijabench.backends.registry",
    "Backend": "mijabench.backends.base",
    "MijaError": "mijabench.errors",
    "InputError": "mijabench.errors",
}

__all__ = [  # the keys of _API (a test checks), written out for readers and linters
    "HARMFUL", "SAFE", "UNPARSED", "Backend", "BenchmarkItem", "InputError", "MijaError", "ModelConfig",
    "Response", "SamplingSettings", "Scenario", "Seed", "Taxonomy", "Verdict", "Workspace", "__version__",
    "load_taxonomy", "parse_model",
]

if TYPE_CHECKING:
    from .api import Workspace
    from .backends.base import Backend
    from .backends.registry import ModelConfig, parse_model
    from .errors import InputError, MijaError
    from .records import (
        HARMFUL,
        SAFE,
        UNPARSED,
        BenchmarkItem,
        Response,
        SamplingSettings,
        Scenario,
        Seed,
        Verdict,
    )
    from .taxonomy import Taxonomy, load_taxonomy


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'mijabench' has no attribute '{name}'")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
