"""Human labels for judge validation: draw a stratified sample, label it on a local web page, export.

The web app (``create_app``, ``serve``) needs the ``annotate`` extra (starlette, uvicorn, jinja2) and is
imported only when asked for, so the sampler and export work without it.
"""

from __future__ import annotations

from .db import HUMAN_LABELS, Annotation, SampleEntry, SampleInfo, annotations, resolve_sample, samples
from .export import ExportReport, export_labels
from .sampler import SampleReport, Shortfall, current_votes, draw_sample

__all__ = ["HUMAN_LABELS", "Annotation", "SampleEntry", "SampleInfo", "annotations", "resolve_sample",
           "samples", "ExportReport", "export_labels", "SampleReport", "Shortfall", "current_votes",
           "draw_sample", "create_app", "serve"]


def __getattr__(name: str):
    if name in ("create_app", "serve"):
        from . import web
        return getattr(web, name)
    raise AttributeError(name)
