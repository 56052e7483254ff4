"""Dilated attention: tessel (dilated_attention.tsl through its package, one launch per pattern,
no gather/scatter) beside the PyTorch baseline that does what torchscale does (bench/dilated_torch.py:
gather per pattern, cuDNN SDPA, scatter, LSE combine), forward and forward+backward, with peak
memory, timed in one process on one GPU; writes a results JSON (and a plot if matplotlib is there).

Run on the GPU machine from the repository root, after `make gpu-bundle` here and `.gpu/unpack`:
    python3 -u bench/dilated.py [--quick] [--ns 32768,65536] [--no-baseline] [--mode exact|torchscale]
Shapes (issue 17): B = 1, H = 16, D = 64, bf16, causal, patterns w = 2048…32768 with
r = 1, 2, 4, 6, 12, N = 32k … 1M. tessel's time is the sum of its kernels' medians from one
`tessel bench --cases` run (CUDA events); the r = 1 pattern runs first and writes O outright, so
no memset is needed. Its memory is the operator's buffers (q, k, v, o, L; for the backward also
dO, dq, dk, dv, δ); the baseline's is torch.cuda.max_memory_allocated over the same step,
inputs included. FLOPs: Σ_i 4·B·H·N·w_i'·D / r_i² (halved causal), backward 2.5× (ALGORITHMS.md §7).
"""
import datetime, json, os, subprocess, sys, tempfile

import torch

sys.path.insert(0, os.path.dirname(__file__))
from dilated_torch import dilated_attention  # noqa: E402

ARG = lambda name, default: sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default  # noqa: E731
QUICK = "--quick" in sys.argv
ARCH = "sm_90a" if torch.cuda.get_device_capability() == (9, 0) else "sm_80"
PACKAGE = ARG("--package", f".gpu/kernels/dilated_attention.{ARCH}.tpkg")
MODE = ARG("--mode", "exact")
BASELINE = "--no-baseline" not in sys.argv
B, H, D = 1, 16, 64
PATTERNS = [(2048, 1), (4096, 2), (8192, 4), (16384, 6), (32768, 12)]
NS = [32768, 65536] if QUICK else [32768, 65536, 131072, 262144, 524288, 1048576]
if "--ns" in sys.argv:
    NS = [int(n) for n in ARG("--ns", "").split(",")]
CAUSAL = True
SCALE = D ** -0.5


def flops(n):
    f = sum(4 * B * H * n * min(w, n) * D / r ** 2 for w, r in PATTERNS)
    return f / 2 if CAUSAL else f


def tessel_cases(n):
    """The launches of the operator (runtime/src/dilated.rs) for one call, in its order."""
    c = "true" if CAUSAL else "false"
    shape = f"B={B},H={H},N={n}"
    fwd, bwd = [], []
    if MODE == "exact":
        bwd.append(f"dilated_attention_bwd_preprocess[D={D}] {shape}")
    for i, (w, r) in enumerate(sorted(PATTERNS, key=lambda p: p[1] != 1)):
        first = "true" if i == 0 and r == 1 else "false"
        scalars = f"scale={SCALE},w={w},r={r},head_group=1"
        fwd.append(f"dilated_attention_fwd[D={D},CAUSAL={c},FIRST={first}] {shape} {scalars}")
        if MODE == "torchscale":
            bwd.append(f"dilated_attention_bwd_delta[D={D},CAUSAL={c}] {shape} {scalars}")
        bwd.append(f"dilated_attention_bwd_dkdv[D={D},CAUSAL={c},FIRST={first}] {shape} {scalars}")
        bwd.append(f"dilated_attention_bwd_dq[D={D},CAUSAL={c},FIRST={first}] {shape} {scalars}")
    return fwd, bwd


lines, spans = [], []
for n in NS:
    fwd, bwd = tessel_cases(n)
    spans.append((n, len(lines), len(fwd), len(bwd)))
    lines += fwd + bwd
with tempfile.NamedTemporaryFile("w", suffix=".cases", delete=False) as f:
    f.write("\n".join(lines) + "\n")
log = f.name + ".json"
with open(log, "w") as lf:
    r = subprocess.run([".gpu/bin/tessel", "bench", PACKAGE, "--cases", f.name, "--json", "--iters", "10", "--warmup", "2"],
                       stdout=lf, stderr=subprocess.STDOUT, text=True)
timed = [json.loads(l) for l in open(log).read().splitlines() if l.startswith("{")]
if r.returncode != 0 or len(timed) != len(lines):
    print(open(log).read()[-3000:])
    sys.exit(f"tessel bench failed ({len(timed)} of {len(lines)} timed)")
elem = B * H * D * 2
tessel = {}
for n, at, nf, nb in spans:
    t = [x["median_ms"] for x in timed[at:at + nf + nb]]
    fwd_ms, bwd_ms = sum(t[:nf]), sum(t[nf:])
    fwd_mem = 4 * n * elem + B * H * n * 4
    step_mem = fwd_mem + 4 * n * elem + B * H * n * 4
    tessel[n] = dict(fwd_ms=fwd_ms, step_ms=fwd_ms + bwd_ms, fwd_mem=fwd_mem, step_mem=step_mem)
    print(f"tessel N={n}: fwd {fwd_ms:.2f} ms, fwd+bwd {fwd_ms + bwd_ms:.2f} ms", flush=True)


def baseline(n):
    """(fwd ms, step ms, fwd peak bytes, step peak bytes) of the PyTorch baseline, None on OOM."""
    from triton.testing import do_bench
    out = {}
    try:
        torch.cuda.empty_cache()
        q, k, v, do = (torch.randn(B, H, n, D, device="cuda", dtype=torch.bfloat16) for _ in range(4))
        torch.cuda.reset_peak_memory_stats()
        with torch.no_grad():
            out["fwd_ms"] = do_bench(lambda: dilated_attention(q, k, v, PATTERNS, CAUSAL), warmup=2, rep=10, return_mode="median")
        out["fwd_mem"] = torch.cuda.max_memory_allocated() - do.numel() * 2
        qg, kg, vg = (x.clone().requires_grad_(True) for x in (q, k, v))

        def step():
            o = dilated_attention(qg, kg, vg, PATTERNS, CAUSAL)
            o.backward(do)
            qg.grad = kg.grad = vg.grad = None
        torch.cuda.reset_peak_memory_stats()
        out["step_ms"] = do_bench(step, warmup=2, rep=10, return_mode="median")
        out["step_mem"] = torch.cuda.max_memory_allocated()
    except torch.cuda.OutOfMemoryError:
        out["oom"] = True
    torch.cuda.empty_cache()
    return out


records, rows = [], []
commit = open(".gpu/COMMIT").read().strip() if os.path.exists(".gpu/COMMIT") else "unknown"
for n in NS:
    t = tessel[n]
    base = baseline(n) if BASELINE else {}
    rec = dict(N=n, B=B, H=H, D=D, patterns=PATTERNS, causal=CAUSAL, mode=MODE, tessel=t, baseline=base,
               fwd_tflops=flops(n) / t["fwd_ms"] / 1e9, step_tflops=3.5 * flops(n) / t["step_ms"] / 1e9)
    if "fwd_ms" in base:
        rec["fwd_ratio"] = base["fwd_ms"] / t["fwd_ms"]
    if "step_ms" in base:
        rec["step_ratio"] = base["step_ms"] / t["step_ms"]
    records.append(rec)
    gib = 1 << 30
    fr = f"{rec['fwd_ratio']:.2f}x" if "fwd_ratio" in rec else ("OOM" if base.get("oom") else "-")
    sr = f"{rec['step_ratio']:.2f}x" if "step_ratio" in rec else ("OOM" if base.get("oom") else "-")
    rows.append(f"{n:>8} {t['fwd_ms']:>9.2f} {base.get('fwd_ms', float('nan')):>9.2f} {fr:>7} "
                f"{t['step_ms']:>9.2f} {base.get('step_ms', float('nan')):>9.2f} {sr:>7} "
                f"{t['step_mem'] / gib:>7.1f} {base.get('step_mem', float('nan')) / gib:>7.1f}")
    print(rows[-1], flush=True)

date = datetime.date.today().isoformat()
os.makedirs("bench/results", exist_ok=True)
path = f"bench/results/{date}-{commit}-dilated.json"
json.dump(dict(device=torch.cuda.get_device_name(), date=date, commit=commit, records=records), open(path, "w"), indent=1)
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(NS, [tessel[n]["step_ms"] for n in NS], "o-", label="tessel fwd+bwd")
    ax.plot([r["N"] for r in records if "step_ms" in r["baseline"]],
            [r["baseline"]["step_ms"] for r in records if "step_ms" in r["baseline"]], "s-", label="torchscale-style fwd+bwd")
    ax.set_xscale("log", base=2); ax.set_yscale("log"); ax.set_xlabel("N"); ax.set_ylabel("ms"); ax.legend()
    fig.savefig(path.replace(".json", ".png"), dpi=120, bbox_inches="tight")
except ImportError:
    print("matplotlib not installed: no plot")
print(f"wrote {path}")
print("       N  fwd ms   base ms   ratio  step ms   base ms   ratio  tsl GiB  base GiB")
print("\n".join(rows))
