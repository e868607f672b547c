#!/usr/bin/env bash
# The MR-SP GPU runs, as they were made on an nvidia-h200-x2 machine (issue 23), in parts that
# each fit one 10-minute device call: bash benchmarks/mrsp_gpu_runs.sh PART OUTDIR.
# Then: python benchmarks/mrsp_gpu.py --report OUTDIR/runs (writes OUTDIR.json). The 7B point:
#   torchrun --nproc-per-node 2 benchmarks/mrsp_gpu.py --configuration C --shape 7b --frames 512 --steps 2
set -u
part=$1
out=${2:-benchmarks/results/mrsp_gpu_h200}
runs=$out/runs
mkdir -p "$runs"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1
bench=benchmarks/mrsp_gpu.py
limit=${LIMIT:-540}
case $part in
  1)  # A and B side by side, one GPU each (3B shapes)
    CUDA_VISIBLE_DEVICES=0 timeout "$limit" python3 $bench --configuration A --shape 3b \
      --frames 16,256,512 --sweep 1024,2048 --out "$runs" >"$out/A_3b.log" 2>&1 &
    CUDA_VISIBLE_DEVICES=1 timeout "$limit" python3 $bench --configuration B --shape 3b \
      --frames 16,256,512 --sweep 1024 --out "$runs" >"$out/B_3b.log" 2>&1 &
    wait ;;
  2)  # C (sp=2) and D (data parallel) on both GPUs, one after the other
    timeout $((limit / 2)) torchrun --nproc-per-node 2 $bench --configuration C --shape 3b \
      --frames 256,512 --out "$runs" >"$out/C_3b.log" 2>&1
    timeout $((limit / 2)) torchrun --nproc-per-node 2 $bench --configuration D --shape 3b \
      --frames 256,512 --out "$runs" >"$out/D_3b.log" 2>&1 ;;
  3)  # one step each: A at 512 frames (GPU 0), B at 2048 (GPU 1)
    CUDA_VISIBLE_DEVICES=0 timeout "$limit" python3 $bench --configuration A --shape 3b \
      --sweep 512 --out "$runs" >"$out/A_3b_512.log" 2>&1 &
    CUDA_VISIBLE_DEVICES=1 timeout "$limit" python3 $bench --configuration B --shape 3b \
      --sweep 2048 --out "$runs" >"$out/B_3b_2048.log" 2>&1 &
    wait ;;
  4)  # C's frame ceiling, one step a point
    timeout "$limit" torchrun --nproc-per-node 2 $bench --configuration C --shape 3b \
      --sweep 1024,2048,3600 --out "$runs" >"$out/C_3b_sweep.log" 2>&1 ;;
  5)  # the shared-prefix forward on one GPU (E, 3B) beside B with 7B shapes
    CUDA_VISIBLE_DEVICES=0 timeout "$limit" python3 $bench --configuration E --shape 3b \
      --frames 256,512 --sweep 1024,2048,3600 --out "$runs" >"$out/E_3b.log" 2>&1 &
    CUDA_VISIBLE_DEVICES=1 timeout "$limit" python3 $bench --configuration B --shape 7b \
      --frames 256 --sweep 512,1024 --out "$runs" >"$out/B_7b.log" 2>&1 &
    wait ;;
  6)  # the shared-prefix forward with sp=2 (F), up to the hour-long video
    timeout "$limit" torchrun --nproc-per-node 2 $bench --configuration F --shape 3b \
      --frames 512 --sweep 1024,2048,3600 --out "$runs" >"$out/F_3b.log" 2>&1 ;;
  7)  # 7B: today's code (A) and the shared prefix (E), one GPU each
    CUDA_VISIBLE_DEVICES=0 timeout "$limit" python3 $bench --configuration A --shape 7b \
      --frames 64 --sweep 256,512 --out "$runs" >"$out/A_7b.log" 2>&1 &
    CUDA_VISIBLE_DEVICES=1 timeout "$limit" python3 $bench --configuration E --shape 7b \
      --frames 512 --sweep 1024,2048 --out "$runs" >"$out/E_7b.log" 2>&1 &
    wait ;;
  8)  # one step each: F with 7B shapes at 2048 and 3,600 frames, then C (3B) at 2048
    timeout 430 torchrun --nproc-per-node 2 $bench --configuration F --shape 7b \
      --sweep 2048,3600 --out "$runs" >"$out/F_7b.log" 2>&1
    timeout 390 torchrun --nproc-per-node 2 $bench --configuration C --shape 3b \
      --sweep 2048 --out "$runs" >"$out/C_3b_2048.log" 2>&1 ;;
  9)  # 16 frames: the shared prefix (E) beside today's code (A), one GPU each
    CUDA_VISIBLE_DEVICES=0 timeout "$limit" python3 $bench --configuration E --shape 3b \
      --frames 16 --out "$runs" >"$out/E_3b_16.log" 2>&1 &
    CUDA_VISIBLE_DEVICES=1 timeout "$limit" python3 $bench --configuration A --shape 3b \
      --frames 16 --out "$runs" >"$out/A_3b_16.log" 2>&1 &
    wait ;;
esac
tail -n 5 "$out"/*.log
