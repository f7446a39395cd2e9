#!/bin/sh
# Test-only: a venv under the build's fixtures dir with transformers==4.45.2 from PyPI and
# Debian's torch 1.13 (--system-site-packages). Never installs system-wide; `make run` never
# needs it. Usage: setup_venv.sh PYTHON VENV_DIR
set -eu
py=$1; venv=$2
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import transformers, torch, safetensors, numpy; assert transformers.__version__ == "4.45.2"' 2>/dev/null; then
  echo "hf venv ready: $venv"; exit 0
fi
"$py" -c 'import torch' || { echo "hf venv: $py has no torch (install Debian python3-torch)" >&2; exit 1; }
rm -rf "$venv"
"$py" -m venv --system-site-packages "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check "transformers==4.45.2"
"$venv/bin/python" -c 'import transformers, torch; print("hf venv:", transformers.__version__, "torch", torch.__version__)'
