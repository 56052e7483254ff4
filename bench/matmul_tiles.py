"""Tile-size sweep of dsl-examples/matmul.tsl against cuBLAS, in one process on one GPU.

Run on the GPU machine after `scripts/matmul-variants` here (packages in .gpu/kernels/matmul/):
    python3 bench/matmul_tiles.py
Each package is one schedule (block tile, warps, stages); cuBLAS (torch) is timed at each size
in the same run, and the ratios are written to $OUT (or bench/results/) as
<date>-<commit>-matmul-tiles.json.
"""
import datetime, glob, json, os, subprocess

import torch
from triton.testing import do_bench

TESSEL = ".gpu/bin/tessel"
records = []
sizes = [4096, 8192]
cublas = {}
for m in sizes:
    x = torch.randn(m, m, device="cuda", dtype=torch.bfloat16)
    y = torch.randn(m, m, device="cuda", dtype=torch.bfloat16)
    cublas[m] = do_bench(lambda: x @ y, warmup=25, rep=200, return_mode="median")
    del x, y
for pkg in sorted(glob.glob(".gpu/kernels/matmul/*.tpkg")):
    variant = os.path.basename(pkg)[: -len(".tpkg")]
    for m in sizes:
        args = [TESSEL, "bench", pkg, "--kernel", "matmul", "--shape", f"M={m},N={m},K={m}", "--json"]
        out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
        t = json.loads(out.strip().splitlines()[-1])
        ms = t["median_ms"]
        records.append(dict(variant=variant, size=m, tessel_ms=ms, cublas_ms=cublas[m],
                            tessel_tflops=2 * m**3 / ms / 1e9, cublas_tflops=2 * m**3 / cublas[m] / 1e9,
                            ratio=cublas[m] / ms))
commit = open(".gpu/COMMIT").read().strip() if os.path.exists(".gpu/COMMIT") else "unknown"
date = datetime.date.today().isoformat()
out_dir = os.environ.get("OUT") or "bench/results"
os.makedirs(out_dir, exist_ok=True)
path = os.path.join(out_dir, f"{date}-{commit}-matmul-tiles.json")
with open(path, "w") as f:
    json.dump(dict(device=torch.cuda.get_device_name(), date=date, commit=commit, records=records), f, indent=1)
print(f"{'variant':<28} {'size':>6} {'tessel TF/s':>12} {'cuBLAS TF/s':>12} {'ratio':>6}")
for r in records:
    print(f"{r['variant']:<28} {r['size']:>6} {r['tessel_tflops']:>12.1f} {r['cublas_tflops']:>12.1f} {r['ratio']:>6.2f}")
print("wrote", path)
