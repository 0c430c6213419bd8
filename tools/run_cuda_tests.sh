#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: builds Orchard and runs the device-parametrised suites on
# device="cuda" (CI has no GPU; the lent GPU machine runs this, see docs/ARCHITECTURE.md).
#   tools/run_cuda_tests.sh [pytest args...]     e.g. tools/run_cuda_tests.sh -k cuda tests/py/test_elementwise.py
# The machine's setup (carried wheels, NVRTC, compiler): tools/cuda_env.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/cuda_env.sh
echo "NVRTC: $ORCHARD_NVRTC_LIBRARY"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
# The tests of this script are the Python suites: no GoogleTest or clang checks (ORCHARD_BUILD_TESTS=OFF),
# and no emulated Metal device (a Linux build has the CUDA device without it).
cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DPython_EXECUTABLE="$(command -v python3)" ${ORCHARD_CMAKE_ARGS:-} \
  -DORCHARD_BUILD_TESTS=OFF -DORCHARD_METAL_EMULATOR=OFF -DORCHARD_CUDA_KERNELS=ON > /dev/null
cmake --build build-cuda -j "$(nproc)"
export PYTHONPATH=build-cuda/python${PYTHONPATH:+:$PYTHONPATH}
python3 -c "import orchard as oc; assert oc.cuda.is_available(), 'no CUDA device'; print('cuda available')"
python3 -m pytest -q -p no:cacheprovider "$@"
