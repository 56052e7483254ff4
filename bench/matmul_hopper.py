"""matmul.tsl against cuBLAS in one process on one GPU: every matmul package the bundle holds
(dsl_matmul = the default tiles; the _bn128/_bk32/_bk16 variants `tessel demo` builds), square
bf16 sizes, same-call ratios. Writes bench/results/<date>-<commit>-matmul-hopper.json.

    python3 bench/matmul_hopper.py [--sizes 4096,8192]
"""
import datetime, glob, json, os, subprocess, sys

import torch
from triton.testing import do_bench

TESSEL = ".gpu/bin/tessel"
sizes = [4096, 8192]
if "--sizes" in sys.argv:
    sizes = [int(s) for s in sys.argv[sys.argv.index("--sizes") + 1].split(",")]
packages = sorted(glob.glob(".gpu/kernels/dsl_matmul*.sm_90a.tpkg"))
rows = []
for m in sizes:
    x = torch.randn(m, m, device="cuda", dtype=torch.bfloat16)
    y = torch.randn(m, m, device="cuda", dtype=torch.bfloat16)
    cublas = do_bench(lambda: x @ y, warmup=25, rep=100, return_mode="median")
    for pkg in packages:
        out = subprocess.run([TESSEL, "bench", pkg, "--kernel", "matmul", "--shape", f"M={m},N={m},K={m}", "--json"],
                             capture_output=True, text=True)
        if out.returncode != 0:
            rows.append(dict(package=os.path.basename(pkg), size=m, error=out.stderr[-300:]))
            continue
        t = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(dict(package=os.path.basename(pkg), size=m, tessel_ms=t["median_ms"], cublas_ms=cublas,
                         tessel_tflops=2 * m**3 / t["median_ms"] / 1e9, cublas_tflops=2 * m**3 / cublas / 1e9,
                         ratio=cublas / t["median_ms"]))
print(f"{'package':<34} {'size':>5} {'tessel TF/s':>11} {'cuBLAS TF/s':>11} {'ratio':>6}")
for r in rows:
    if "error" in r:
        print(f"{r['package']:<34} {r['size']:>5} error: {r['error']}")
    else:
        print(f"{r['package']:<34} {r['size']:>5} {r['tessel_tflops']:>11.0f} {r['cublas_tflops']:>11.0f} {r['ratio']:>6.2f}")
commit = open(".gpu/COMMIT").read().strip() if os.path.exists(".gpu/COMMIT") else "unknown"
date = datetime.date.today().isoformat()
os.makedirs("bench/results", exist_ok=True)
path = os.environ.get("OUT", "bench/results") + f"/{date}-{commit}-matmul-hopper.json"
with open(path, "w") as f:
    json.dump(dict(device=torch.cuda.get_device_name(), date=date, commit=commit, rows=rows), f, indent=1)
print("wrote", path)
