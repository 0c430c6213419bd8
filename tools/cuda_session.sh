#!/usr/bin/env bash
# Everything issue 20 measures on a GPU, in one call on the lent GPU machine (its device time is short):
#   tools/cuda_session.sh [OUT]         OUT defaults to $OUT, else runs/cuda
# writes into OUT
#   tests.log         the device-parametrised suites on device="cuda" (tools/run_cuda_tests.sh, which builds)
#   bench.log         the --device cuda benchmark rows, Orchard against PyTorch (eager and torch.compile)
#   kernels-*.txt     ORCHARD_CUDA_KERNEL_PROFILE tables: GPU time by kernel of the GPT-2 124M bf16 step and
#                     of bf16 attention forward and backward
#   train-{cuda,cpu}.log  20 steps of python -m orchard.train on each device (the losses must agree)
# Every part runs whatever the others did; the script fails when the tests do.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-runs/cuda}}
mkdir -p "$out"
source tools/cuda_env.sh
tools/run_cuda_tests.sh -k cuda -n 8 -q -rfE tests/py > "$out/tests.log" 2>&1
tests=$?
tail -n 3 "$out/tests.log"
export PYTHONPATH=build-cuda/python${PYTHONPATH:+:$PYTHONPATH}
bench() { python3 benchmarks/run.py --device cuda --no-memory --repeat 5 --warmup 2 "$@"; }
bench --frameworks orchard,torch,torch.compile --out "$out/bench" \
  --only add,sum,softmax,layernorm,matmul,matmul_bf16,lm_head_bf16,attn1k_bf16,attn1k,gpt2_train_bf16 > "$out/bench.log" 2>&1
for workload in gpt2_train_bf16 attn1k_bf16; do
  ORCHARD_CUDA_KERNEL_PROFILE="$out/kernels-$workload.txt" bench --frameworks orchard --only "$workload" \
    --out "$out/profile-$workload" > /dev/null 2>&1
done
for device in cuda cpu; do
  python3 -m orchard.train --device "$device" --steps 20 --eval-interval 20 --corpus-bytes 300000 \
    --out "$out/train-$device" > "$out/train-$device.log" 2>&1
done
grep -h "val" "$out"/train-*.log | tail -n 2
exit $tests
