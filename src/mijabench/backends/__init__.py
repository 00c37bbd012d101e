"""Model backends behind one interface (``Backend``), and the registry that turns a model string into one."""

from .base import Backend, BackendError, Generation, GenerationRequest, Messages
from .scripted import ScriptedBackend

__all__ = ["Backend", "BackendError", "Generation", "GenerationRequest", "Messages", "ScriptedBackend"]
