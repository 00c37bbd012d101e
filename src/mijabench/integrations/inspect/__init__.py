"""MiJaBench in Inspect AI (the ``inspect`` extra): the ``mijabench/mijabench`` task and Inspect logs into
the workspace.

- ``task``: the Inspect task (registered through the ``inspect_ai`` entry point, ``_registry``);
- ``scorers``: the rule judge and the LLM judges with their vote, as Inspect scorers;
- ``items``: which benchmark items a task run covers (no Inspect import);
- ``logs``: Inspect logs (``.eval``/``.json``) into items, responses and verdicts for ``mijabench import``;
- ``logfiles``: whether a path is an Inspect log (no Inspect import).

Nothing here is imported by the core: ``sources.importer`` loads ``logs`` only when it is given a log.
"""
