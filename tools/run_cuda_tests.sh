#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: builds Orchard and runs the device-parametrised suites on
# device="cuda" (CI has no GPU; the lent GPU machine runs this, see docs/ARCHITECTURE.md).
#   tools/run_cuda_tests.sh [pytest args...]     e.g. tools/run_cuda_tests.sh -k cuda tests/py/test_elementwise.py
# Python packages the machine lacks may be carried as wheels in .whl/ (installed into /tmp/site).
# NVRTC: ORCHARD_NVRTC_LIBRARY, else the CUDA toolkit's libnvrtc found under /usr/local.
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
if [ -z "${ORCHARD_NVRTC_LIBRARY:-}" ]; then
  ORCHARD_NVRTC_LIBRARY=$(find /usr/local -name 'libnvrtc.so.*' -not -name '*builtins*' 2>/dev/null | sort | head -n 1)
  export ORCHARD_NVRTC_LIBRARY
fi
echo "NVRTC: $ORCHARD_NVRTC_LIBRARY"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
# The lent GPU machine's default compiler (/opt/gcc) links a libstdc++ into _core that crashes formatting
# numbers: take the system's, unless ORCHARD_CMAKE_ARGS or CXX chooses.
if [ -z "${ORCHARD_CMAKE_ARGS:-}${CXX:-}" ] && [ -x /usr/bin/g++ ]; then
  ORCHARD_CMAKE_ARGS="-DCMAKE_CXX_COMPILER=/usr/bin/g++ -DCMAKE_C_COMPILER=/usr/bin/gcc"
fi
# The tests of this script are the Python suites: no GoogleTest or clang checks (ORCHARD_BUILD_TESTS=OFF),
# and no emulated Metal device (a Linux build has the CUDA device without it).
cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DPython_EXECUTABLE="$(command -v python3)" ${ORCHARD_CMAKE_ARGS:-} \
  -DORCHARD_BUILD_TESTS=OFF -DORCHARD_METAL_EMULATOR=OFF -DORCHARD_CUDA_KERNELS=ON > /dev/null
cmake --build build-cuda -j "$(nproc)"
export PYTHONPATH=build-cuda/python${PYTHONPATH:+:$PYTHONPATH}
python3 -c "import orchard as oc; assert oc.cuda.is_available(), 'no CUDA device'; print('cuda available')"
python3 -m pytest -q -p no:cacheprovider "$@"
