#!/usr/bin/env bash
# Install everything the project needs into .venv, then run the test suite.
#   bash scripts/run_tests.sh            # whole suite
#   bash scripts/run_tests.sh -m "not slow" tests/engine   # any pytest arguments
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
python -m pytest "${@:-tests}"
