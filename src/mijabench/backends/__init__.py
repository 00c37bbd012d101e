"""Model backends behind one interface (``Backend``), and the registry that turns a model string into one."""

from .base import Backend, BackendError, Generation, GenerationRequest, Messages
from .errorkind import ErrorKind
from .scripted import ScriptedBackend

__all__ = ["Backend", "BackendError", "ErrorKind", "Generation", "GenerationRequest", "Messages",
           "ScriptedBackend"]
