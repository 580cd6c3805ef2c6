#!/usr/bin/env python3
"""The card's ceilings measured the way bench/RESULTS.md compares against them: device-to-device
copy bandwidth (bytes read + written) and the dense f16 matrix rate through cuBLAS (PyTorch).
Only where PyTorch with CUDA is installed (the GPU machines of bench/gpu.sh); prints why not
otherwise. Medians of 10 timed runs after 3 warm-ups."""
import statistics
import sys

try:
    import torch
except ImportError:
    print("ceilings: PyTorch not installed; skipped")
    sys.exit(0)
if not torch.cuda.is_available():
    print("ceilings: PyTorch sees no CUDA device; skipped")
    sys.exit(0)


def timed(fn, reps=10, warm=3):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b) * 1e-3)
    return statistics.median(times)


print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
n = 1 << 30  # 1 GiB, far past the last-level cache
src = torch.empty(n, dtype=torch.uint8, device="cuda")
dst = torch.empty_like(src)
t = timed(lambda: dst.copy_(src))
print(f"copy: {2 * n / t / 1e9:.0f} GB/s (1 GiB device-to-device, read + written)")
del src, dst
for m, k, nn in ((8192, 8192, 8192), (4096, 4096, 512), (14336, 4096, 512)):
    a = torch.randn(m, k, dtype=torch.float16, device="cuda")
    b = torch.randn(k, nn, dtype=torch.float16, device="cuda")
    t = timed(lambda: a @ b)
    print(f"f16 matmul {m}x{k}x{nn}: {2 * m * k * nn / t / 1e12:.0f} TFLOP/s (cuBLAS)")
