#!/usr/bin/env bash
# Regenerates the lock files from pyproject.toml (needs uv: `pip install uv`, and PyPI):
#   constraints.txt              every dependency of the dev extra, for the test environment and CI
#   container/requirements.lock  the image's runtime dependencies (worker and Lambda), hash-pinned,
#                                for Python 3.12 on linux/amd64, at the versions constraints.txt pins
#   container/build.lock         setuptools, hash-pinned, to build the project's own wheel in the image
# Run it after changing a dependency in pyproject.toml, then commit the three files together.
set -euo pipefail
cd "$(dirname "$0")/.."
image_target=(--python-version 3.12 --python-platform x86_64-manylinux_2_28 --generate-hashes --no-header --quiet)
uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 --no-header --quiet -o constraints.txt
uv pip compile pyproject.toml --extra worker --extra lambda --extra local -c constraints.txt "${image_target[@]}" \
  -o container/requirements.lock
build_requirement=$(python3 -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"])')
echo "$build_requirement" | uv pip compile - "${image_target[@]}" -o container/build.lock
