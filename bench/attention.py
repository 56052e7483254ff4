"""FlashAttention: tessel (flash_attention.tsl through its package) beside PyTorch's flash backend
and cuDNN, forward and forward+backward, at the shapes of ANCHORS.md (B·N = 16384, H·D = 2048,
bf16, N from 512 to 16384), timed in one process on one GPU; writes a results JSON.

Run on the GPU machine from the repository root, after `make gpu-bundle` here:
    python3 bench/attention.py [--quick] [--package PATH]
tessel's times come from one `tessel bench --cases` run (CUDA events, median); its backward is
the sum of its three kernels (Δ pre-pass, dK/dV, dQ). The anchors are timed by
triton.testing.do_bench; their forward+backward is one autograd step (forward, then backward).
FLOPs: forward 4·B·H·N²·D (halved when causal), backward 2.5× the forward.
"""
import datetime, json, os, subprocess, sys, tempfile

import torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend
from triton.testing import do_bench

QUICK = "--quick" in sys.argv
ARCH = "sm_90a" if torch.cuda.get_device_capability() == (9, 0) else "sm_80"
PACKAGE = sys.argv[sys.argv.index("--package") + 1] if "--package" in sys.argv else f".gpu/kernels/flash_attention.{ARCH}.tpkg"
TAG = sys.argv[sys.argv.index("--tag") + 1] if "--tag" in sys.argv else "tessel flash_attention.tsl"
ANCHORS = "--no-anchors" not in sys.argv
NS = [1024, 4096] if QUICK else [512, 1024, 2048, 4096, 8192, 16384]
if "--ns" in sys.argv:
    NS = [int(n) for n in sys.argv[sys.argv.index("--ns") + 1].split(",")]
DS = [128] if QUICK else [64, 128]

shapes = [(D, causal, N, max(1, 16384 // N), 2048 // D) for D in DS for causal in (False, True) for N in NS]

# tessel: every kernel of every shape in one process (one package load).
lines = []
for D, causal, N, B, H in shapes:
    c = "true" if causal else "false"
    shape = f"B={B},HQ={H},HKV={H},NQ={N},NK={N}"
    scale = f"scale={D ** -0.5}"
    lines += [f"flash_attention_fwd[D={D},CAUSAL={c}] {shape} {scale}",
              f"flash_attention_bwd_preprocess[D={D}] {shape}",
              f"flash_attention_bwd_dkdv[D={D},CAUSAL={c}] {shape} {scale}",
              f"flash_attention_bwd_dq[D={D},CAUSAL={c}] {shape} {scale}"]
with tempfile.NamedTemporaryFile("w", suffix=".cases", delete=False) as f:
    f.write("\n".join(lines) + "\n")
log = f.name + ".json"
# Progress goes to the log as it is timed (a run cut short still shows how far it got).
with open(log, "w") as lf:
    subprocess.run([".gpu/bin/tessel", "bench", PACKAGE, "--cases", f.name, "--json", "--iters", "50", "--warmup", "5"],
                   check=True, stdout=lf, text=True)
out = open(log).read()
timed = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
print(f"tessel: {len(timed)} kernels timed", flush=True)
assert len(timed) == len(lines), out
ms = {}
for i, (D, causal, N, B, H) in enumerate(shapes):
    fwd, pre, dkdv, dq = (timed[4 * i + j]["median_ms"] for j in range(4))
    ms[(D, causal, N)] = dict(fwd=fwd, bwd=pre + dkdv + dq, pre=pre, dkdv=dkdv, dq=dq)


def median_ms(fn):
    return do_bench(fn, warmup=10, rep=50, return_mode="median")


records, ratios = [], []
for D, causal, N, B, H in shapes:
    fwd_flops = 4 * B * H * N * N * D / (2 if causal else 1)
    step_flops = 3.5 * fwd_flops
    mask = "causal" if causal else "full"
    t = ms[(D, causal, N)]
    records.append(dict(group=f"attention fwd D={D} {mask}", name=TAG, size=N, metric="TFLOP/s", value=fwd_flops / t["fwd"] / 1e9, ms=t["fwd"], B=B, H=H))
    records.append(dict(group=f"attention fwd+bwd D={D} {mask}", name=TAG, size=N, metric="TFLOP/s", value=step_flops / (t["fwd"] + t["bwd"]) / 1e9,
                        ms=t["fwd"] + t["bwd"], B=B, H=H, parts=t))
    if not ANCHORS:
        continue
    q, k, v, do = (torch.randn(B, H, N, D, device="cuda", dtype=torch.bfloat16) for _ in range(4))
    for name, be in (("PyTorch flash", SDPBackend.FLASH_ATTENTION), ("cuDNN", SDPBackend.CUDNN_ATTENTION)):
        try:
            with sdpa_kernel([be]):
                f_ms = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
                qg, kg, vg = (x.clone().requires_grad_(True) for x in (q, k, v))
                def step():
                    o = F.scaled_dot_product_attention(qg, kg, vg, is_causal=causal)
                    o.backward(do)
                s_ms = median_ms(step)
        except Exception as e:  # a backend missing on this machine is reported, not fatal
            print(f"anchor {name} D={D} N={N} {mask}: {e}")
            continue
        records.append(dict(group=f"attention fwd D={D} {mask}", name=name, size=N, metric="TFLOP/s", value=fwd_flops / f_ms / 1e9, ms=f_ms, B=B, H=H))
        records.append(dict(group=f"attention fwd+bwd D={D} {mask}", name=name, size=N, metric="TFLOP/s", value=step_flops / s_ms / 1e9, ms=s_ms, B=B, H=H))
        ratios.append(dict(kernel=f"flash fwd D={D} {mask}", size=N, anchor=name, tessel_ms=t["fwd"], anchor_ms=f_ms, speedup=f_ms / t["fwd"]))
        ratios.append(dict(kernel=f"flash fwd+bwd D={D} {mask}", size=N, anchor=name, tessel_ms=t["fwd"] + t["bwd"], anchor_ms=s_ms,
                           speedup=s_ms / (t["fwd"] + t["bwd"])))
    del q, k, v, do

commit = open(".gpu/COMMIT").read().strip() if os.path.exists(".gpu/COMMIT") else "unknown"
date = datetime.date.today().isoformat()
result = dict(device=torch.cuda.get_device_name(), date=date, commit=commit, torch=torch.__version__, arch=ARCH,
              package=PACKAGE, records=records, ratios=ratios)
out_dir = os.environ.get("OUT") or "bench/results"
os.makedirs(out_dir, exist_ok=True)
path = os.path.join(out_dir, f"{date}-{commit}-attention{'-' + TAG.replace(' ', '_') if '--tag' in sys.argv else ''}.json")
json.dump(result, open(path, "w"), indent=1)
print(f"{'kernel':<26} {'N':>6} {'tessel ms':>10} {'anchor ms':>10} {'speedup':>8}  anchor")
for r in ratios:
    print(f"{r['kernel']:<26} {r['size']:>6} {r['tessel_ms']:>10.3f} {r['anchor_ms']:>10.3f} {r['speedup']:>8.2f}  {r['anchor']}")
for r in records:
    if r["name"] == TAG:
        parts = " ".join(f"{k}={v:.3f}" for k, v in r.get("parts", {}).items())
        print(f"{TAG[:24]:<24} {r['group']:<32} {r['size']:>6} {r['value']:>8.1f} TFLOP/s {parts}")
print("wrote", path)
