"""The stub OpenAI-compatible server lives with the speed benchmarks (benchmarks/stub_server.py); tests
import it from here so both use one implementation."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "stub_server.py"
_spec = importlib.util.spec_from_file_location("mijabench_stub_server", _PATH)
_module = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _module  # dataclasses look the module up while the class is built
_spec.loader.exec_module(_module)

Faults = _module.Faults
StubServer = _module.StubServer
reply_for = _module.reply_for

__all__ = ["Faults", "StubServer", "reply_for"]
