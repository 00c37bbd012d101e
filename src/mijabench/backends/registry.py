"""Turn a model string or YAML file into a configured Backend.

Model strings: ``local:smollm2-135m`` (the embedded default), ``hf:PATH_OR_ID`` (transformers),
``openai:MODEL@URL[,URL...]`` (any OpenAI-compatible server; several URLs spread load over replicas),
``gguf:PATH`` (a GGUF file), ``scripted:NAME`` (rule-based, for tests). A YAML file names one of these under
``model:`` and adds sampling settings and options. Third-party backends register a factory under the entry
point group ``mijabench.backends`` (scheme -> ``callable(ModelConfig) -> Backend``).
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field, replace
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import yaml

from ..errors import MijaError
from ..records import SamplingSettings
from .base import Backend

# scheme -> "module:callable", imported only when used so the core never pulls in torch or HTTP code.
BUILTIN_FACTORIES = {
    "local": "mijabench.backends.embedded:EmbeddedBackend.from_config",
    "hf": "mijabench.backends.transformers_local:TransformersBackend.from_config",
    "openai": "mijabench.backends.openai_compat:OpenAIBackend.from_config",
    "gguf": "mijabench.backends.gguf:create_gguf_backend",
    "scripted": "mijabench.backends.scripted:ScriptedBackend.from_config",
}


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build and describe one target (or judge, or rewriter) model."""

    spec: str  # e.g. "openai:llama3@http://127.0.0.1:8000/v1"
    name: str  # the label responses are stored under
    settings: SamplingSettings = field(default_factory=SamplingSettings)
    concurrency: int | None = None
    family: str | None = None
    params_b: float | None = None
    options: dict[str, Any] = field(default_factory=dict)  # backend-specific (device, batch_size, ...)

    @property
    def scheme(self) -> str:
        return self.spec.split(":", 1)[0]

    @property
    def target(self) -> str:
        return self.spec.split(":", 1)[1]


def parse_model(text: str, **settings_overrides: Any) -> ModelConfig:
    """A ModelConfig from a model string or a YAML file path; overrides replace sampling settings."""
    path = Path(text)
    if text.endswith((".yaml", ".yml")):
        if not path.is_file():
            raise MijaError(f"{text}: model file not found")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise MijaError(f"{text}: not valid YAML ({str(exc).splitlines()[0]})") from exc
        if not isinstance(data, dict) or not isinstance(data.get("model"), str):
            raise MijaError(f"{text}: field 'model' must name a model string such as local:smollm2-135m")
        config = _from_fields(data["model"], data, source=text)
    else:
        config = _from_fields(text, {}, source="--model")
    overrides = {k: v for k, v in settings_overrides.items() if v is not None}
    if overrides:
        config = replace(config, settings=replace(config.settings, **overrides))
    return config


def model_from_dict(data: dict[str, Any] | str, source: str = "config") -> ModelConfig:
    """A ModelConfig from a model string or a mapping in the model-file layout (model, name, settings, ...),
    as found inline in an audit config."""
    if isinstance(data, str):
        return parse_model(data) if data.endswith((".yaml", ".yml")) else _from_fields(data, {}, source)
    if not isinstance(data, dict) or not isinstance(data.get("model"), str):
        raise MijaError(f"{source}: each model needs a field 'model' such as local:smollm2-135m")
    return _from_fields(data["model"], data, source)


def _from_fields(spec: str, data: dict[str, Any], source: str) -> ModelConfig:
    if ":" not in spec or not spec.split(":", 1)[1]:
        raise MijaError(f"{source}: model '{spec}' must look like SCHEME:TARGET "
                        f"(schemes: {', '.join(sorted(known_schemes()))})")
    scheme = spec.split(":", 1)[0]
    if scheme not in known_schemes():
        raise MijaError(f"{source}: unknown model scheme '{scheme}' "
                        f"(known: {', '.join(sorted(known_schemes()))})")
    raw_settings = data.get("settings") or {}
    allowed = set(SamplingSettings.__dataclass_fields__)
    unknown = set(raw_settings) - allowed
    if unknown:
        raise MijaError(f"{source}: unknown setting(s) {', '.join(sorted(unknown))} "
                        f"(known: {', '.join(sorted(allowed))})")
    try:
        settings = SamplingSettings(**raw_settings)
    except TypeError as exc:
        raise MijaError(f"{source}: bad settings ({exc})") from exc
    return ModelConfig(spec=spec, name=str(data.get("name") or default_name(spec)), settings=settings,
                       concurrency=data.get("concurrency"), family=data.get("family"),
                       params_b=data.get("params_b"), options=dict(data.get("options") or {}))


def default_name(spec: str) -> str:
    """The label stored with responses when none is given. Server URLs are left out on purpose: adding a
    replica or moving a port must not turn the same model into a "new" one and lose resume."""
    if spec.startswith("openai:"):
        return re.split(r"@(?=[a-zA-Z][a-zA-Z0-9+.-]*://)", spec, maxsplit=1)[0]
    return spec


def known_schemes() -> set[str]:
    return set(BUILTIN_FACTORIES) | {ep.name for ep in entry_points(group="mijabench.backends")}


def create_backend(config: ModelConfig) -> Backend:
    """Build the backend for a config. Heavy modules are imported here, not before."""
    for ep in entry_points(group="mijabench.backends"):
        if ep.name == config.scheme:
            return ep.load()(config)
    target = BUILTIN_FACTORIES.get(config.scheme)
    if target is None:
        raise MijaError(f"unknown model scheme '{config.scheme}'")
    module_name, attr_path = target.split(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise MijaError(f"model '{config.spec}' needs an optional dependency that is missing ({exc.name}); "
                        "install mijabench[local] (see README)") from exc
    for attr in attr_path.split("."):
        obj = getattr(obj, attr)
    return obj(config)
