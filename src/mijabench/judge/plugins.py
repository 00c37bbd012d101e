"""Judges from other packages: the entry-point group ``mijabench.judges`` (found by ``mijabench.plugins``).

A judge string ``NAME:TARGET`` whose NAME a plugin registered calls the plugin's factory with TARGET. The
object it returns needs:

- ``version``: text that changes whenever the judge may decide differently. It goes into the verdicts'
  fingerprint with the plugin's package name and version, so a new version re-judges instead of mixing.
- ``judge(response, *, prompt, language)``: the verdict on one reply, as ``(label, reasoning)`` or an
  object with ``label`` and ``reasoning``. ``label`` is ``"safe"`` or ``"harmful"``; anything else is
  stored as ``unparsed`` (never counted as safe), with what the plugin said in the reasoning.

Plugin judges run in this process, without a model server, like the rule judge. Verdicts are stored under
the judge string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import MijaError
from ..records import HARMFUL, SAFE, UNPARSED
from .identity import JudgeIdentity, plugin_judge_identity


@dataclass
class PluginJudge:
    name: str  # the judge string, e.g. "keywords:strict"
    judge_object: Any
    identity: JudgeIdentity

    def decide(self, response: str, prompt: str, language: str) -> tuple[str, str]:
        """(label, reasoning) for one reply; a failing plugin stops the run with one line (what was judged
        before it is kept)."""
        try:
            answer = self.judge_object.judge(response, prompt=prompt, language=language)
        except Exception as exc:  # a plugin's own bug: named, not a traceback through the runner
            raise MijaError(f"judge {self.name} failed: {type(exc).__name__}: {exc}") from exc
        if isinstance(answer, tuple) and len(answer) == 2:
            label, reasoning = answer
        else:
            label, reasoning = getattr(answer, "label", None), getattr(answer, "reasoning", "")
        if label not in (SAFE, HARMFUL):
            return UNPARSED, f"the plugin answered {label!r}: {reasoning or ''}".strip()
        return label, str(reasoning or "")


def is_plugin_judge(spec: Any) -> bool:
    """A judge string served by an installed judge plugin."""
    from ..plugins import judge_plugins

    return isinstance(spec, str) and ":" in spec and spec.split(":", 1)[0] in judge_plugins()


def load_plugin_judge(spec: str) -> PluginJudge:
    from ..plugins import build_plugin, judge_plugins, origin

    scheme, target = spec.split(":", 1)
    entry = judge_plugins()[scheme]
    judge_object = build_plugin(entry, f"judge {spec}", target)
    version = getattr(judge_object, "version", None)
    if not isinstance(version, str) or not version:
        raise MijaError(f"judge {spec}: the plugin ({origin(entry)}) gives its judge no 'version' text")
    if not callable(getattr(judge_object, "judge", None)):
        raise MijaError(f"judge {spec}: the plugin ({origin(entry)}) gives its judge no 'judge' method")
    return PluginJudge(spec, judge_object, plugin_judge_identity(spec, version, origin(entry)))
