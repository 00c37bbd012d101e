"""The ``inspect_ai`` entry point: importing this module registers the ``mijabench/mijabench`` task."""

from .task import mijabench

__all__ = ["mijabench"]
