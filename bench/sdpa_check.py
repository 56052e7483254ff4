"""tessel's FlashAttention beside PyTorch's scaled_dot_product_attention on the same inputs.

Run on the GPU machine after the flash attention GPU test dumped its cases:
    TESSEL_DUMP_DIR=/tmp/fa .gpu/tests/gpu_flash_attention --test-threads=1
    python3 bench/sdpa_check.py /tmp/fa
For every case it computes O, dQ, dK, dV three ways: tessel (the dumped outputs), SDPA in bf16
(PyTorch's own kernels), and an explicit float64 softmax attention with autograd; it prints the
error of tessel and of SDPA against float64 and of tessel against SDPA (each relative to the
float64 tensor's largest element), and fails if tessel is off by more than bf16's 1e-2 from either.
Causal masks are bottom-right aligned (as in tessel and flash-attn); rows that see no key are 0.
"""
import json, os, sys

import numpy as np
import torch
import torch.nn.functional as F

root = sys.argv[1]
cases = json.load(open(os.path.join(root, "cases.json")))


def load(i, name):
    return torch.from_numpy(np.load(os.path.join(root, f"case{i}_{name}.npy"))).cuda()


def attention(q, k, v, causal, math):
    """O for (B, H, N, D) inputs; k, v already repeated to q's heads."""
    nq, nk = q.shape[2], k.shape[2]
    mask = None
    if causal:
        i = torch.arange(nq, device=q.device)[:, None]
        j = torch.arange(nk, device=q.device)[None, :]
        mask = j <= i + (nk - nq)
    scale = q.shape[-1] ** -0.5
    if math:
        s = (q @ k.transpose(-1, -2)) * scale
        if mask is not None:
            s = s.masked_fill(~mask, float("-inf"))
        p = torch.softmax(s, dim=-1).nan_to_num(0.0)
        return p @ v
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    if nq == nk:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale).nan_to_num(0.0)


def grads(q, k, v, do, causal, dtype, math):
    g = q.shape[1] // k.shape[1]
    # Causal with Nq > Nk: the first Nq − Nk queries see no key. SDPA returns NaN there (and its
    # backward spreads it into dK, dV), so those rows are left out of its call: their O and dQ
    # are 0 and they contribute nothing to dK, dV.
    r0 = max(0, q.shape[2] - k.shape[2]) if causal else 0
    full_q = q
    q, k, v = (t.to(dtype).detach().requires_grad_(True) for t in (q[:, :, r0:], k, v))
    o = attention(q, k.repeat_interleave(g, 1), v.repeat_interleave(g, 1), causal, math)
    o.backward(do[:, :, r0:].to(dtype))
    pad = lambda t: torch.cat([torch.zeros_like(full_q[:, :, :r0]).to(t.dtype), t], dim=2)
    return [t.double() for t in (pad(o.detach()), pad(q.grad), k.grad, v.grad)]


def err(a, b, ref):
    """max |a − b| / max |ref|; absolute where ref is zero everywhere (dQ, dK when N_k = 1)."""
    scale = ref.abs().max().item()
    return ((a - b).abs().max() / (scale if scale > 0 else 1.0)).item()


rows, worst = [], 0.0
print(f"{'case':>4} {'B':>2} {'Hq':>3} {'Hkv':>3} {'Nq':>5} {'Nk':>5} {'D':>4} {'mask':<6}"
      f" {'tensor':<3} {'tessel':>9} {'sdpa':>9} {'t-vs-s':>9}")
for c in cases:
    i = c["case"]
    q, k, v, do = (load(i, n) for n in ("q", "k", "v", "do"))
    ref = grads(q, k, v, do, c["causal"], torch.float64, math=True)
    sdpa = grads(q, k, v, do, c["causal"], torch.bfloat16, math=False)
    ours = [load(i, n).double() for n in ("o", "dq", "dk", "dv")]
    mask = "causal" if c["causal"] else "full"
    for name, t, s, r in zip(("O", "dQ", "dK", "dV"), ours, sdpa, ref):
        et, es, ets = err(t, r, r), err(s, r, r), err(t, s, r)
        worst = max(worst, et, ets)
        rows.append(dict(c, tensor=name, tessel_vs_f64=et, sdpa_vs_f64=es, tessel_vs_sdpa=ets))
        print(f"{i:>4} {c['b']:>2} {c['hq']:>3} {c['hkv']:>3} {c['nq']:>5} {c['nk']:>5} {c['d']:>4} {mask:<6}"
              f" {name:<3} {et:>9.2e} {es:>9.2e} {ets:>9.2e}")
out = os.environ.get("OUT", root)
json.dump(dict(device=torch.cuda.get_device_name(), rows=rows), open(os.path.join(out, "sdpa_check.json"), "w"), indent=1)
print(f"worst tessel error (vs float64 or SDPA): {worst:.2e}")
sys.exit(0 if worst < 1e-2 else 1)
