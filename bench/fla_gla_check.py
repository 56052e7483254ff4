"""tessel's GLA forward beside flash-linear-attention's `chunk_gla` on the same inputs, element by
element.

Run on the GPU machine after the GLA GPU test dumped its cases:
    TESSEL_DUMP_DIR=/tmp/gla .gpu/tests/gpu_gla --test-threads=1 gla_forward_matches_the_float64_recurrence
    python3 bench/fla_gla_check.py /tmp/gla
Every case is already in fla's layout (q, k, g: (B, N, H, D); v, o: (B, N, H, E); states
(B, H, D, E) f32). It runs `chunk_gla(q, k, v, g, scale=D^-1/2, initial_state=h0,
output_final_state=True)` on the dumped bf16 q, k, v and f32 g, and prints the error of tessel
and of fla against the test's float64 recurrence, and of tessel against fla (each relative to the
reference's largest element), for the output and the final state. It fails if tessel is further
than bf16's 1e-2 from fla. fla is taken from .gpu/pylib when it is not installed.
"""
import json, os, sys

sys.path.insert(0, os.path.abspath(".gpu/pylib"))
import numpy as np
import torch

root = sys.argv[1]
cases = json.load(open(os.path.join(root, "cases.json")))


def load(i, name):
    return torch.from_numpy(np.load(os.path.join(root, f"case{i}_{name}.npy"))).cuda()


def err(got, want, ref):
    return ((got.double() - want.double()).abs().max() / ref.double().abs().max().clamp_min(1e-30)).item()


from fla.ops.gla import chunk_gla

print(f"{'B':>2} {'N':>5} {'H':>2} {'D':>4} {'E':>4}  {'O tessel':>9} {'O fla':>9} {'O t-f':>9}  {'S tessel':>9} {'S fla':>9} {'S t-f':>9}")
failed = []
for c in cases:
    i = c["case"]
    q, k, v, g, h0, o, ht, ref_o, ref_ht = (load(i, n) for n in ("q", "k", "v", "g", "h0", "o", "ht", "ref_o", "ref_ht"))
    q, k, v = (x.to(torch.bfloat16) for x in (q, k, v))
    fo, fht = chunk_gla(q, k, v, g.float(), scale=c["d"] ** -0.5, initial_state=h0.float(), output_final_state=True)
    e = [err(o, ref_o, ref_o), err(fo.float(), ref_o, ref_o), err(o, fo.float(), ref_o),
         err(ht, ref_ht, ref_ht), err(fht.float(), ref_ht, ref_ht), err(ht, fht.float(), ref_ht)]
    print(f"{c['b']:>2} {c['n']:>5} {c['h']:>2} {c['d']:>4} {c['e']:>4}  " + " ".join(f"{x:>9.2e}" for x in e[:3]) + "  " + " ".join(f"{x:>9.2e}" for x in e[3:]), flush=True)
    if e[2] >= 1e-2 or e[5] >= 1e-2:
        failed.append(f"case {i}: tessel vs fla O {e[2]:.3e}, state {e[5]:.3e}")
if failed:
    print("\n".join(failed))
    sys.exit(1)
