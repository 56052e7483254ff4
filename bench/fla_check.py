"""tessel's Lightning Attention forward beside flash-linear-attention on the same inputs.

Run on the GPU machine after the lightning GPU test dumped its cases:
    TESSEL_DUMP_DIR=/tmp/la .gpu/tests/gpu_lightning_attention --test-threads=1 lightning_attention_matches_float64
    python3 bench/fla_check.py /tmp/la
For every case (N ∈ {1, 63, 64, 1000, 8192, 65536}, (D, E) ∈ {(64, 64), (128, 128), (64, 128)},
LRPE-d and zero decay) it runs fla's `chunk_gla` with the constant per-head gates g = −slope (the
same function: ALGORITHMS.md §3) and `chunk_simple_gla` with g_gamma = −slope, on the dumped bf16
inputs, and prints the error of tessel and of fla against the test's float64 reference and of tessel
against fla, each relative to the reference's largest element. It fails if tessel is further than
bf16's 1e-2 from either. fla is taken from .gpu/pylib when it is not installed.
"""
import json, os, sys

sys.path.insert(0, os.path.abspath(".gpu/pylib"))
import numpy as np
import torch

root = sys.argv[1]
cases = json.load(open(os.path.join(root, "cases.json")))
# --dims 64x128: only the cases of those (D, E) (a device call too short for every case).
if "--dims" in sys.argv:
    want = [tuple(map(int, x.split("x"))) for x in sys.argv[sys.argv.index("--dims") + 1].split(",")]
    cases = [c for c in cases if (c["d"], c["e"]) in want]


def load(i, name):
    return torch.from_numpy(np.load(os.path.join(root, f"case{i}_{name}.npy"))).cuda()


def err(got, want):
    return ((got.double() - want.double()).abs().max() / want.double().abs().max().clamp_min(1e-30)).item()


# fla autotunes every kernel over up to 72 configurations on first use (chunk_gla took > 120 s a
# shape on the H200). A configuration changes speed, not the function, so this check keeps two
# of each kernel's (4 warps, fewest stages first): the comparison needs only one that runs.
import triton
import fla.ops.utils.cache as fla_cache


def _few(configs):
    configs = list(configs)
    four = [c for c in configs if c.num_warps == 4] or configs
    least = min(c.num_stages for c in four)
    return [c for c in four if c.num_stages == least][:2]


def _throttled(autotune):
    return lambda configs, *args, **kwargs: autotune(_few(configs), *args, **kwargs)


fla_cache.fla_cache_autotune = _throttled(fla_cache.fla_cache_autotune)
triton.autotune = _throttled(triton.autotune)
from fla.ops.gla import chunk_gla
from fla.ops.simple_gla import chunk_simple_gla

ops = {
    "chunk_gla": lambda q, k, v, s: chunk_gla(q, k, v, g=(-s).view(1, 1, -1, 1).expand(q.shape[0], q.shape[1], -1, q.shape[3]).contiguous(), scale=1.0)[0],
    "chunk_simple_gla": lambda q, k, v, s: chunk_simple_gla(q, k, v, g_gamma=-s, scale=1.0)[0],
}
print(f"{'B':>2} {'H':>2} {'N':>6} {'D':>4} {'E':>4} {'decay':<10} {'tessel':>9} " + " ".join(f"{n + ' ' + w:>26}" for n in ops for w in ("vs f64", "vs tessel")))
worst, failed = 0.0, []
for c in cases:
    i = c["case"]
    q, k, v, o, ref = (load(i, n) for n in ("q", "k", "v", "o", "ref"))
    slopes = load(i, "slopes").float()
    # fla's layout is (B, N, H, dim); the dumped values are bf16-exact.
    fq, fk, fv = (x.transpose(1, 2).contiguous().to(torch.bfloat16) for x in (q, k, v))
    t_err = err(o, ref)
    row = [f"{c['b']:>2} {c['h']:>2} {c['n']:>6} {c['d']:>4} {c['e']:>4} {c['decay']:<10} {t_err:>9.2e}"]
    for name, op in ops.items():
        try:
            fo = op(fq, fk, fv, slopes).transpose(1, 2).float()
            f_err = err(fo, ref)
            # tessel against fla, relative to the float64 reference's scale.
            tf = ((o.double() - fo.double()).abs().max() / ref.double().abs().max().clamp_min(1e-30)).item()
            row.append(f"{f_err:>12.2e} {tf:>13.2e}")
            worst = max(worst, tf)
            if tf >= 1e-2:
                failed.append(f"case {i} {name}: tessel vs fla {tf:.3e}")
        except Exception as e:
            row.append(f"{type(e).__name__:>26}"[:26])
    if t_err >= 1e-2:
        failed.append(f"case {i}: tessel vs float64 {t_err:.3e}")
    print(" ".join(row), flush=True)
print(f"worst tessel–fla difference: {worst:.2e}")
if failed:
    print("\n".join(failed))
    sys.exit(1)
