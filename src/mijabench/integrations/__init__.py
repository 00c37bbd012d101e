"""Bridges to other evaluation tools. Each lives in its own subpackage, imports its tool lazily and is the
only place in mijabench that imports it, so the core installs light."""
