"""tessel's kernels and the anchors, timed in one process on one GPU; writes a results JSON.

Run on the GPU machine from the repository root, after `make gpu-bundle` here:
    python3 bench/run.py [--quick]
Results go to $OUT (the device tool's output folder) or bench/results/, named <date>-<commit>.json;
`tessel plot RESULTS -o plot.svg` draws them. Timings are medians of CUDA-event measurements;
tessel's are taken by `tessel bench` (rotating input sets larger than L2), the anchors' by
triton.testing.do_bench (which flushes L2 between runs).
"""
import datetime, json, os, subprocess, sys

import torch
from triton.testing import do_bench

QUICK = "--quick" in sys.argv
TESSEL = ".gpu/bin/tessel"
KERNELS = ".gpu/kernels"
ARCH = "sm_90a" if torch.cuda.get_device_capability() == (9, 0) else "sm_80"
DTYPES = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}

records, ratios = [], []


def rec(group, name, size, metric, value, **extra):
    r = dict(group=group, name=name, size=size, metric=metric, value=value, **extra)
    records.append(r)
    return r


def tessel_bench(kernel, shape, package=None):
    pkg = f"{KERNELS}/{package or kernel}.{ARCH}.tpkg"
    args = [TESSEL, "bench", pkg, "--kernel", kernel, "--shape", ",".join(f"{k}={v}" for k, v in shape.items()), "--json"]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def median_ms(fn):
    return do_bench(fn, warmup=25, rep=100, return_mode="median")


# Elementwise c = a*b + c: memory bound; the anchor is PyTorch's fused addcmul_.
sizes = [1 << 16, 1 << 20, 1 << 24] if QUICK else [1 << 16, 1 << 18, 1 << 20, 1 << 22, 1 << 24, 1 << 26, 1 << 28]
for name, tdt in DTYPES.items():
    if QUICK and name == "f16":
        continue
    for n in sizes:
        t = tessel_bench("fma", {"N": n}, package=f"dsl_fma_{name}")
        a, b, c = (torch.randn(n, device="cuda", dtype=tdt) for _ in range(3))
        ms = median_ms(lambda: c.addcmul_(a, b))
        gbps_torch = 4 * n * a.element_size() / ms / 1e6
        rec(f"elementwise {name}", "tessel fma.tsl", n, "GB/s", t["gbps"], ms=t["median_ms"])
        rec(f"elementwise {name}", "torch addcmul_", n, "GB/s", gbps_torch, ms=ms)
        ratios.append(dict(kernel=f"fma.tsl {name}", size=n, anchor="torch addcmul_", tessel_ms=t["median_ms"], anchor_ms=ms, speedup=ms / t["median_ms"]))
        del a, b, c

# Ceilings of the machine, measured in this run.
n = 1 << 30
src = torch.empty(n, dtype=torch.uint8, device="cuda")
dst = torch.empty_like(src)
ms = median_ms(lambda: dst.copy_(src))
rec("ceilings", "device copy", n, "GB/s", 2 * n / ms / 1e6, ms=ms)
del src, dst
for m in ([1024, 4096] if QUICK else [1024, 2048, 4096, 8192]):
    x = torch.randn(m, m, device="cuda", dtype=torch.bfloat16)
    y = torch.randn(m, m, device="cuda", dtype=torch.bfloat16)
    ms = median_ms(lambda: x @ y)
    rec("matmul bf16", "cuBLAS (torch)", m, "TFLOP/s", 2 * m**3 / ms / 1e9, ms=ms)
    d = tessel_bench("matmul", {"M": m, "N": m, "K": m}, package="dsl_matmul")
    rec("matmul bf16", "tessel matmul.tsl (scheduled)", m, "TFLOP/s", 2 * m**3 / d["median_ms"] / 1e9, ms=d["median_ms"])
    ratios.append(dict(kernel="matmul.tsl", size=m, anchor="cuBLAS", tessel_ms=d["median_ms"], anchor_ms=ms, speedup=ms / d["median_ms"]))
    del x, y

# Attention anchors (ANCHORS.md shapes: B·N = 16384, H·D = 2048, bf16). tessel's own attention
# kernels join these groups as they land; until then the anchors are recorded alone.
from torch.nn.attention import sdpa_kernel, SDPBackend
import torch.nn.functional as F

for D in ([128] if QUICK else [64, 128]):
    for N in ([1024, 4096] if QUICK else [1024, 4096, 16384]):
        B, H = max(1, 16384 // N), 2048 // D
        q, k, v = (torch.randn(B, H, N, D, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        for causal in (False, True):
            flops = 4 * B * H * N * N * D / (2 if causal else 1)
            for name, be in (("PyTorch flash", SDPBackend.FLASH_ATTENTION), ("cuDNN", SDPBackend.CUDNN_ATTENTION)):
                try:
                    with sdpa_kernel([be]):
                        ms = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
                    rec(f"attention fwd D={D} {'causal' if causal else 'full'}", name, N, "TFLOP/s", flops / ms / 1e9, ms=ms, B=B, H=H)
                except Exception as e:  # a backend missing on this machine is reported, not fatal
                    print(f"anchor {name} D={D} N={N}: {e}")
            if D == 64 and not causal:
                t = tessel_bench("flash_attention_fwd", {"B": B, "HQ": H, "HKV": H, "NQ": N, "NK": N}, package="dsl_flash_attention_fwd")
                rec(f"attention fwd D={D} full", "tessel flash_attention.tsl", N, "TFLOP/s", flops / t["median_ms"] / 1e9, ms=t["median_ms"], B=B, H=H)
                fl = [r for r in records if r["name"] == "PyTorch flash" and r["size"] == N and r["group"] == f"attention fwd D={D} full"]
                if fl:
                    ratios.append(dict(kernel="flash.tsl fwd", size=N, anchor="PyTorch flash", tessel_ms=t["median_ms"], anchor_ms=fl[-1]["ms"], speedup=fl[-1]["ms"] / t["median_ms"]))
        del q, k, v

# fla's chunk_gla with constant per-head gates: Lightning Attention's function (wheels carried in
# .whl, installed by the caller into PYTHONPATH; skipped with a message when absent).
try:
    from fla.ops.gla import chunk_gla
    for N in ([4096] if QUICK else [1024, 4096, 16384, 65536]):
        B, H, D = max(1, 65536 // N), 16, 128
        q, k, v = (torch.randn(B, N, H, D, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        slope = torch.tensor([2 ** (-8 * (h + 1) / H) for h in range(H)], device="cuda")
        g = (-slope).view(1, 1, H, 1).expand(B, N, H, D).float().contiguous()
        ms = median_ms(lambda: chunk_gla(q, k, v, g, scale=1.0))
        rec("lightning fwd D=128", "fla chunk_gla", N, "ms", ms, B=B, H=H)
        del q, k, v, g
except Exception as e:
    print(f"fla anchors skipped: {e}")

commit = open(".gpu/COMMIT").read().strip() if os.path.exists(".gpu/COMMIT") else "unknown"
date = datetime.date.today().isoformat()
result = dict(device=torch.cuda.get_device_name(), date=date, commit=commit, torch=torch.__version__,
              arch=ARCH, records=records, ratios=ratios)
out_dir = os.environ.get("OUT") or "bench/results"
os.makedirs(out_dir, exist_ok=True)
path = os.path.join(out_dir, f"{date}-{commit}.json")
with open(path, "w") as f:
    json.dump(result, f, indent=1)

print(f"{'kernel':<14} {'size':>10} {'tessel ms':>10} {'anchor ms':>10} {'speedup':>8}  anchor")
for r in ratios:
    print(f"{r['kernel']:<14} {r['size']:>10} {r['tessel_ms']:>10.4f} {r['anchor_ms']:>10.4f} {r['speedup']:>8.2f}  {r['anchor']}")
for r in records:
    if r["group"] in ("ceilings", "matmul bf16"):
        print(f"{r['name']:<30} {r['size']:>10} {r['value']:>10.1f} {r['metric']}")
print("wrote", path)
