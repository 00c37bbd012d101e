"""Turn a model string or YAML file into a configured Backend.

Model strings: ``local:smollm2-135m`` (the embedded default), ``hf:PATH_OR_ID`` (transformers),
``openai:MODEL@URL[,URL...]`` (any OpenAI-compatible server; several URLs spread load over replicas),
``gguf:PATH`` (a GGUF file), ``scripted:NAME`` (rule-based, for tests). A YAML file names one of these under
``model:`` and adds sampling settings and options. Third-party backends register a factory under the entry
point group ``mijabench.backends`` (scheme -> ``callable(ModelConfig) -> Backend``); the built-in schemes
cannot be taken over (``mijabench.plugins``, docs/plugins.md).
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field, replace
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
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise MijaError(f"{text}: not valid YAML ({str(exc).splitlines()[0]})") from exc
        if not isinstance(data, dict) or not isinstance(data.get("model"), str):
            raise MijaError(f"{text}: field 'model' must name a model string such as local:smollm2-135m")
        config = _from_fields(data["model"], data, source=text)
    else:
        config = _from_fields(text, {}, source="--model")
    return with_settings(config, **settings_overrides)


def with_settings(config: ModelConfig, **settings_overrides: Any) -> ModelConfig:
    """``config`` with the given sampling settings replaced; a None override leaves the setting as it is."""
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


MODEL_FIELDS = ("model", "name", "settings", "concurrency", "family", "params_b", "options")


def _from_fields(spec: str, data: dict[str, Any], source: str) -> ModelConfig:
    """Every field is checked here, before any store is opened: a typo (``setings:``) or a wrong type is
    one error line, never a run with defaults."""
    if ":" not in spec or not spec.split(":", 1)[1]:
        raise MijaError(f"{source}: model '{spec}' must look like SCHEME:TARGET "
                        f"(schemes: {', '.join(sorted(known_schemes()))})")
    scheme = spec.split(":", 1)[0]
    if scheme not in known_schemes():
        raise MijaError(f"{source}: unknown model scheme '{scheme}' "
                        f"(known: {', '.join(sorted(known_schemes()))})")
    unknown = [str(k) for k in data if k not in MODEL_FIELDS]
    if unknown:
        raise MijaError(f"{source}: unknown field(s) {', '.join(sorted(unknown))} "
                        f"(known: {', '.join(MODEL_FIELDS)})")
    raw_settings = _mapping(data.get("settings"), "settings", source)
    allowed = set(SamplingSettings.__dataclass_fields__)
    unknown = [str(k) for k in raw_settings if k not in allowed]
    if unknown:
        raise MijaError(f"{source}: unknown setting(s) {', '.join(sorted(unknown))} "
                        f"(known: {', '.join(sorted(allowed))})")
    check_settings(raw_settings, source)
    options = _mapping(data.get("options"), "options", source)
    if scheme == "openai":
        from .urls import parse_target, split_credentials
        for url in parse_target(spec.split(":", 1)[1])[1]:  # a bad URL fails now, before anything is stored
            split_credentials(url)  # registers a password written in it, wherever the backend will run
        if isinstance(options.get("api_key_env"), str):
            from ..store.secrets import register_secret_env
            register_secret_env(options["api_key_env"])  # masked from the first thing stored
    concurrency = data.get("concurrency")
    if concurrency is not None and (not _is_int(concurrency) or concurrency < 1):
        raise MijaError(f"{source}: concurrency must be a whole number of at least 1, got {concurrency!r}")
    params_b = data.get("params_b")
    if params_b is not None and (not _is_number(params_b) or params_b <= 0):
        raise MijaError(f"{source}: params_b must be a positive number (billions), got {params_b!r}")
    for key in ("name", "family"):
        if data.get(key) is not None and not isinstance(data[key], str | int | float):
            raise MijaError(f"{source}: {key} must be text, got {data[key]!r}")
    return ModelConfig(spec=spec, name=str(data.get("name") or default_name(spec)),
                       settings=SamplingSettings(**raw_settings), concurrency=concurrency,
                       family=data.get("family"), params_b=params_b, options=options)


def check_settings(settings: dict[str, Any], source: str) -> None:
    """Sampling settings of the right type and range (YAML gives strings where numbers were meant)."""
    rules = {
        "max_tokens": (lambda v: _is_int(v) and v >= 1, "a whole number of at least 1"),
        "temperature": (lambda v: _is_number(v) and v >= 0, "a number of at least 0"),
        "top_p": (lambda v: _is_number(v) and 0 < v <= 1, "a number in (0, 1]"),
        "seed": (_is_int, "a whole number"),
        "system_prompt": (lambda v: v is None or isinstance(v, str), "text"),
        "thinking": (lambda v: isinstance(v, bool), "true or false"),
    }
    for key, value in settings.items():
        ok, wanted = rules.get(key, (lambda v: True, ""))
        if not ok(value):
            raise MijaError(f"{source}: setting {key} must be {wanted}, got {value!r}")


def _mapping(value: Any, field_name: str, source: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MijaError(f"{source}: '{field_name}' must be a mapping (key: value lines), got {value!r}")
    return dict(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def default_name(spec: str) -> str:
    """The label stored with responses when none is given. Server URLs are left out on purpose: adding a
    replica or moving a port must not turn the same model into a "new" one and lose resume."""
    if spec.startswith("openai:"):
        return re.split(r"@(?=[a-zA-Z][a-zA-Z0-9+.-]*://)", spec, maxsplit=1)[0]
    return spec


def known_schemes() -> set[str]:
    from ..plugins import backend_plugins

    return set(BUILTIN_FACTORIES) | set(backend_plugins())


def create_backend(config: ModelConfig) -> Backend:
    """Build the backend for a config. Heavy modules are imported here, not before. A built-in scheme is
    always served by the built-in backend: plugins only add schemes."""
    target = BUILTIN_FACTORIES.get(config.scheme)
    if target is None:
        from ..plugins import backend_plugins, build_plugin

        plugin = backend_plugins().get(config.scheme)
        if plugin is None:
            raise MijaError(f"unknown model scheme '{config.scheme}'")
        return build_plugin(plugin, f"model {config.spec}", config)
    module_name, attr_path = target.split(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise MijaError(f"model '{config.spec}' needs an optional dependency that is missing ({exc.name}); "
                        "install mijabench[local] (see README)") from exc
    for attr in attr_path.split("."):
        obj = getattr(obj, attr)
    return obj(config)
