# Sourced by tools/run_cuda_tests.sh and tools/cuda_session.sh on the GPU machine: what Orchard's CUDA
# device needs there, exported for every command after it.
# - Python packages the machine lacks may be carried as wheels in .whl/ (installed into /tmp/site).
# - NVRTC: ORCHARD_NVRTC_LIBRARY, else the CUDA toolkit's libnvrtc found under /usr/local.
# - The machine's default compiler (/opt/gcc, which it also exports as CXX) links a libstdc++ into _core
#   that crashes formatting numbers: the build takes the system's, unless ORCHARD_CMAKE_ARGS chooses.
# Once per process tree: cuda_session.sh sources it, then runs run_cuda_tests.sh, which does too.
[ -n "${ORCHARD_CUDA_ENV:-}" ] && return 0
export ORCHARD_CUDA_ENV=1
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
if [ -z "${ORCHARD_NVRTC_LIBRARY:-}" ]; then
  ORCHARD_NVRTC_LIBRARY=$(find /usr/local -name 'libnvrtc.so.*' -not -name '*builtins*' 2>/dev/null | sort | head -n 1)
  export ORCHARD_NVRTC_LIBRARY
fi
if [ -z "${ORCHARD_CMAKE_ARGS:-}" ] && [ -x /usr/bin/g++ ]; then
  export ORCHARD_CMAKE_ARGS="-DCMAKE_CXX_COMPILER=/usr/bin/g++ -DCMAKE_C_COMPILER=/usr/bin/gcc"
fi
