"""The vLLM engine path of the Ray executor: Ray's LLM batch API (``ray.data.llm``) answers the request rows
with vLLM engines on GPU nodes, instead of mijabench backends on CPU workers.

UNTESTED in this repository (it needs GPUs, ``vllm`` and ``ray[llm]``). It is kept a thin wrapper so that
what it relies on is only the documented ``vLLMEngineProcessorConfig`` / ``build_processor`` API; the rows it
returns have the same columns as ``ray_mode.BlockGenerator``'s, so the driver stores them the same way.
See docs/scale-out.md for the recipe.
"""

from __future__ import annotations

import json
from typing import Any

from ..backends.registry import ModelConfig
from ..errors import MijaError


def vllm_stage(config: ModelConfig, num_workers: int):
    """A processor (``dataset -> dataset``) for ``hf:ID_OR_PATH`` models (or ``options.vllm.model_source``).

    ``options.vllm`` may set ``tensor_parallel_size``, ``batch_size``, ``engine_kwargs`` and any other
    ``vLLMEngineProcessorConfig`` field (``accelerator_type``, ``max_concurrent_batches``, ...). Rows that
    fail come back with ``__inference_error__`` set (and skip the postprocess step); the driver stores
    them as errors, retried by the next run.
    """
    try:
        from ray.data.llm import build_processor, vLLMEngineProcessorConfig
    except ImportError as exc:
        raise MijaError("engine 'vllm' needs Ray's LLM extra and vLLM: pip install 'ray[llm]' vllm") from exc
    options = dict(config.options.get("vllm") or {})
    source = options.pop("model_source", None) or (config.target if config.scheme == "hf" else None)
    if not source:
        raise MijaError(f"{config.spec}: engine 'vllm' runs hf:MODEL specs "
                        "(or set options.vllm.model_source)")
    engine_kwargs = {"tensor_parallel_size": int(options.pop("tensor_parallel_size", 1)),
                     **options.pop("engine_kwargs", {})}
    settings = config.settings
    # The same sampling as the other backends: greedy by default, seeded, reasoning modes off.
    sampling = {"temperature": settings.temperature, "top_p": settings.top_p,
                "max_tokens": settings.max_tokens, "seed": settings.seed}
    processor_config = vLLMEngineProcessorConfig(
        model_source=source, engine_kwargs=engine_kwargs, concurrency=num_workers,
        batch_size=int(options.pop("batch_size", 64)), should_continue_on_error=True, **options)

    def preprocess(row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "messages": json.loads(row["messages"]), "sampling_params": sampling}

    def postprocess(row: dict[str, Any]) -> dict[str, Any]:
        return {"rid": row["rid"], "item_id": row["item_id"], "text": row["generated_text"],
                "prompt_tokens": row.get("num_input_tokens"),
                "completion_tokens": row.get("num_generated_tokens"),
                "latency_s": row.get("time_taken_llm"), "finish_reason": None, "error": None,
                "error_kind": None, "attempts": 1}

    return build_processor(processor_config, preprocess=preprocess, postprocess=postprocess,
                           builder_kwargs={"chat_template_kwargs": {"enable_thinking": settings.thinking}})
