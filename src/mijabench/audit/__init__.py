"""`mijabench audit`: the whole chain from one config, resumable at every stage."""

from .config import PRESETS, AuditConfig, make_config, preset, read_config_file
from .pipeline import STAGES, AuditResult, run_audit, stratified_sample

__all__ = ["PRESETS", "STAGES", "AuditConfig", "AuditResult", "make_config", "preset", "read_config_file",
           "run_audit", "stratified_sample"]
