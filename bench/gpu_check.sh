#!/usr/bin/env bash
# GPU check (issue 7): build a 1M-vector index on the GPU and on the CPU, print recall@10 and QPS
# of both. One script, under 8 minutes on the lent H200 machine (16 cores), as one `device` run.
#
# The device image has CUDA, torch and numpy but no FAISS and no network, so a GPU FAISS travels
# as wheels. Once, here (not on the device), in the repository root:
#
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 -d .whl faiss-gpu-cu12==1.14.1.post1
#
# (its CUDA 12 runtime libraries, nvidia-cublas-cu12 and nvidia-cuda-runtime-cu12, are larger
# than a run may carry; the image's CUDA 13 libraries serve if the loader finds them, else the
# script says which library is missing and stops). Then, with the `device` tool:
#
#   run(command="bash bench/gpu_check.sh", carry=[".whl"], timeout_s=540)
#
# Data: 1M synthetic 384-d unit vectors around 4,096 random directions (seeded; real MiniLM
# vectors at 1M are 1.5 GB, more than a run may carry), 1,000 held-out queries drawn the same
# way. Index: IVF4096,Flat (vecrec's IVF build, trained on 1M/4 points); nprobe swept until
# recall@10 against exact search reaches 0.95; QPS of one batch of all queries, and of single
# queries (CPU: 1 thread; GPU: one call per query). The exact ground truth is a GPU Flat search.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 480 python3 - <<'PY'
import sys, time
import numpy as np

try:
    import faiss
except ImportError as exc:
    sys.exit(f"gpu_check: no faiss importable ({exc}): carry GPU FAISS wheels in .whl (see header)")
if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1:
    sys.exit(f"gpu_check: faiss {faiss.__version__} has no usable GPU support")
print(f"faiss {faiss.__version__}, {faiss.get_num_gpus()} GPU(s)")

N, D, NQ, K, NLIST, TARGET = 1_000_000, 384, 1000, 10, 4096, 0.95
rng = np.random.default_rng(0)
centers = rng.normal(size=(4096, D)).astype(np.float32)
def sample(n):
    x = centers[rng.integers(0, len(centers), n)] + 0.5 * rng.normal(size=(n, D)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)
start = time.perf_counter()
base = np.vstack([sample(100_000) for _ in range(N // 100_000)]).astype(np.float32)
queries = sample(NQ).astype(np.float32)
print(f"data: {N:,d} x {D} in {time.perf_counter() - start:.1f} s")

res = faiss.StandardGpuResources()
flat = faiss.index_cpu_to_gpu(res, 0, faiss.IndexFlatIP(D))
flat.add(base)
truth = flat.search(queries, K)[1]
del flat

def recall(found):
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth)]))

def build(gpu):
    index = faiss.index_factory(D, f"IVF{NLIST},Flat", faiss.METRIC_INNER_PRODUCT)
    if gpu:
        index = faiss.index_cpu_to_gpu(res, 0, index)
    train = base[rng.choice(N, NLIST * 64, replace=False)]
    start = time.perf_counter()
    index.train(train)
    index.add(base)
    return index, time.perf_counter() - start

def set_nprobe(index, gpu, nprobe):
    if gpu:
        faiss.GpuParameterSpace().set_index_parameter(index, "nprobe", nprobe)
    else:
        index.nprobe = nprobe

rows = []
for gpu in (True, False):
    faiss.omp_set_num_threads(16)
    index, built = build(gpu)
    got, nprobe = 0.0, 1
    for nprobe in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048):
        set_nprobe(index, gpu, nprobe)
        got = recall(index.search(queries, K)[1])
        if got >= TARGET:
            break
    start = time.perf_counter()
    index.search(queries, K)
    batch = NQ / (time.perf_counter() - start)
    if not gpu:
        faiss.omp_set_num_threads(1)
    start = time.perf_counter()
    for q in queries[:200]:
        index.search(q[None, :], K)
    single = 200 / (time.perf_counter() - start)
    rows.append(("GPU" if gpu else "CPU (16 threads; single: 1)", built, nprobe, got, batch, single))
    del index

print(f"\n{N:,d} vectors x {D}, IVF{NLIST},Flat, target recall@{K} {TARGET}, {NQ} queries")
print("| where | build s | nprobe | recall@10 | QPS batch | QPS single |")
print("|---|---|---|---|---|---|")
for where, built, nprobe, got, batch, single in rows:
    print(f"| {where} | {built:.1f} | {nprobe} | {got:.3f} | {batch:,.0f} | {single:,.0f} |")
gpu, cpu = rows
print(f"GPU / CPU: build {cpu[1] / gpu[1]:.1f}x faster, batch QPS {gpu[4] / cpu[4]:.1f}x")
PY
