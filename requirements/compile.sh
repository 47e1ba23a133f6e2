#!/usr/bin/env bash
# Regenerates requirements/linux-cpu.lock (pip-compile of pyproject.toml's dependencies with the extras
# test, slurm and report, plus requirements/linux-cpu.in) and workflow/envs/guidebench.yaml (the same pins
# for the rules' conda environment). Run from anywhere on Linux with Python 3.11 and pip-tools
# (`pip install pip-tools`, e.g. in a scratch venv); pip must find the CPU build of torch (here
# /opt/wheels; elsewhere add `--extra-index-url https://download.pytorch.org/whl/cpu` to PIP_COMPILE_ARGS),
# else the lock pulls CUDA packages (nvidia-*, triton) and this script stops.
set -euo pipefail
cd "$(dirname "$0")/.."
pip-compile --quiet --extra test --extra slurm --extra report --strip-extras --no-emit-find-links \
    --no-emit-index-url --allow-unsafe --upgrade ${PIP_COMPILE_ARGS:-} \
    --output-file requirements/linux-cpu.lock pyproject.toml requirements/linux-cpu.in
# The CPU wheel is a local version (2.13.0+cpu); the lock keeps the public one, which pip matches to it.
sed -i -E 's/^torch==([0-9.]+)\+cpu$/torch==\1/' requirements/linux-cpu.lock
if grep -qiE '^(nvidia-|triton==)' requirements/linux-cpu.lock; then
    echo "requirements/linux-cpu.lock pulls CUDA packages: pip found a CUDA build of torch, not the CPU one" >&2
    exit 1
fi
python3 - <<'PY'
from pathlib import Path

pins = [line for line in Path("requirements/linux-cpu.lock").read_text().splitlines()
        if line and not line.startswith((" ", "#", "-"))]
header = Path("workflow/envs/guidebench.yaml").read_text().split("dependencies:")[0]
body = ["dependencies:", "  - python=3.11", "  - pip", "  - pip:",
        *(f"      - {p}" for p in pins),
        "      # the package itself, from this repository (see the header)",
        "      - -e ../.."]
Path("workflow/envs/guidebench.yaml").write_text(header + "\n".join(body) + "\n")
PY
echo "wrote requirements/linux-cpu.lock and workflow/envs/guidebench.yaml"
