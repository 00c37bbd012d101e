"""mijabench: demographic safety audits for language models.

The package follows the data flow: sources (seeds) -> bench (scenarios, prompts) -> run (responses)
-> judge (verdicts) -> analysis -> report / align. Records and the taxonomy sit underneath every stage;
the store is the one place each stage reads from and writes to.
"""

__version__ = "0.1.0"
