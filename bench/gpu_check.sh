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
# way. Index: IVF4096,Flat (the nlist vecrec's ivf_nlist gives 1M items; vecrec trains on up to
# 256 points per list, all 1M here, this script on 64 per list to stay in time); nprobe swept
# until recall@10 against exact search reaches 0.95; QPS of one batch of all queries, and of
# single queries (CPU: 1 thread; GPU: one call per query). The exact ground truth is a GPU Flat
# search.
#
# Then vecrec's own query path on the CPU-built index (engine/ann.py Searcher with the GPU twin
# of engine/gpu.py, as `--gpu` serves it): recall and QPS through it, a per-request nprobe, and
# the CPU fallbacks (k > 2048, a filter), which the unit tests cover only with a stand-in.
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
    if gpu:
        del index
    else:
        cpu_index, cpu_nprobe = index, nprobe

print(f"\n{N:,d} vectors x {D}, IVF{NLIST},Flat, target recall@{K} {TARGET}, {NQ} queries")
print("| where | build s | nprobe | recall@10 | QPS batch | QPS single |")
print("|---|---|---|---|---|---|")
for where, built, nprobe, got, batch, single in rows:
    print(f"| {where} | {built:.1f} | {nprobe} | {got:.3f} | {batch:,.0f} | {single:,.0f} |")
gpu, cpu = rows
print(f"GPU / CPU: build {cpu[1] / gpu[1]:.1f}x faster, batch QPS {gpu[4] / cpu[4]:.1f}x")
sys.stdout.flush()


def vecrec_routing(cpu_index, nprobe):
    """vecrec's Searcher over ``cpu_index`` with its GPU twin: what --gpu serves."""
    import types
    from pathlib import Path

    # engine/__init__ imports pandas and sentence-transformers, which the device image lacks;
    # the search path itself needs only faiss, numpy and (for the GPU check) torch.
    package = types.ModuleType("engine")
    package.__path__ = [str(Path("engine").resolve())]
    sys.modules.setdefault("engine", package)
    from engine.ann import Searcher
    from engine.gpu import GPU_MAX_K, gpu_twin

    faiss.omp_set_num_threads(16)
    cpu_index.nprobe = nprobe
    twin = gpu_twin(cpu_index)
    assert twin is not None, "gpu_twin kept the IVF index on the CPU"
    on_gpu = Searcher(cpu_index, base, {"nprobe": nprobe}, gpu=twin)
    on_cpu = Searcher(cpu_index, base, {"nprobe": nprobe})
    print(f"\nvecrec Searcher, IVF{NLIST},Flat nprobe {nprobe}:")
    for where, searcher in (("GPU twin", on_gpu), ("CPU", on_cpu)):
        start = time.perf_counter()
        found = searcher.search(queries, K)[1]
        batch = NQ / (time.perf_counter() - start)
        start = time.perf_counter()
        for q in queries[:200]:
            searcher.search(q[None, :], K)
        single = 200 / (time.perf_counter() - start)
        print(f"  {where}: recall@10 {recall(found):.3f}, QPS batch {batch:,.0f}, single {single:,.0f}")
    low = recall(on_gpu.with_params({"nprobe": 1}).search(queries, K)[1])
    print(f"  per-request nprobe=1 on the GPU twin: recall@10 {low:.3f}")
    assert not twin.fallbacks, f"unexpected CPU fallbacks: {dict(twin.fallbacks)}"
    big = on_gpu.search(queries[:5], GPU_MAX_K + 1)[1]
    allowed = np.zeros(N, dtype=bool)
    allowed[::2] = True
    filtered = on_gpu.search(queries[:5], K, allowed)[1]
    assert (big >= 0).all() and allowed[filtered].all()
    print(f"  fallbacks to the CPU index (k={GPU_MAX_K + 1}, a filter): {dict(twin.fallbacks)}")


try:
    vecrec_routing(cpu_index, cpu_nprobe)
except Exception as exc:  # the bare figures above stand; say what failed
    print(f"vecrec routing check failed: {type(exc).__name__}: {exc}")
    sys.exit(1)
PY
