"""tessel's GLA beside flash-linear-attention's `chunk_gla` on the same inputs, element by element:
the forward (output, final state) and the gradients (dq, dk, dv, dg, dh0).

Run on the GPU machine after the GLA GPU tests dumped their cases:
    TESSEL_DUMP_DIR=/tmp/gla .gpu/tests/gpu_gla --test-threads=1 gla_forward_matches gla_backward_matches
    python3 bench/fla_gla_check.py /tmp/gla
Every case is in fla's layout (q, k, g: (B, N, H, D); v, o: (B, N, H, E); states (B, H, D, E) f32)
and holds the values tessel saw (q, k, v, dO rounded to bf16; g, h0, dht f32). It runs
`chunk_gla(q, k, v, g, scale=D^-1/2, initial_state=h0, output_final_state=True)` on them, and for
the backward cases backpropagates dO and dht through it (autograd w.r.t. q, k, v, g, h0). For each
quantity it prints the err_ratio (‖x − y‖₂ / ‖y‖₂, fla's own test metric, ALGORITHMS.md §9) of
tessel and of fla against the test's float64 reference, and of tessel against fla. It fails when
tessel vs fla is over 5e-3 *and* tessel is further from float64 than fla is (the same-dtype rule
of §9: two bf16 implementations may differ by their rounding, but tessel must not be the worse
one by more than 2×). fla is taken from .gpu/pylib when it is not installed.
"""
import json, os, sys

sys.path.insert(0, os.path.abspath(".gpu/pylib"))
TOL = 5e-3


def err_ratio(got, want):
    """‖got − want‖₂ / ‖want‖₂ in float64."""
    got, want = got.double(), want.double()
    return ((got - want).norm() / want.norm().clamp_min(1e-30)).item()


def verdict(name, e_tessel, e_fla, e_tf):
    """A failure message, or None: tessel vs fla within TOL, or tessel no worse than 2× fla
    against the float64 reference."""
    if e_tf < TOL or e_tessel <= 2 * max(e_fla, 1e-7):
        return None
    return f"{name}: tessel vs fla {e_tf:.2e}; vs float64 tessel {e_tessel:.2e}, fla {e_fla:.2e}"


def row(label, errs):
    return f"{label:<28} " + "  ".join(f"{n}: {a:.1e} {b:.1e} {c:.1e}" for n, (a, b, c) in errs.items())


def main():
    import numpy as np
    import torch
    from fla.ops.gla import chunk_gla

    root = sys.argv[1]

    def load(prefix, i, name):
        return torch.from_numpy(np.load(os.path.join(root, f"{prefix}{i}_{name}.npy"))).cuda()

    failed = []
    print("per quantity: tessel vs float64, fla vs float64, tessel vs fla (err_ratio)")
    fwd = os.path.join(root, "cases.json")
    for c in (json.load(open(fwd)) if os.path.exists(fwd) else []):
        i = c["case"]
        q, k, v, g, h0, o, ht, ref_o, ref_ht = (load("case", i, n) for n in ("q", "k", "v", "g", "h0", "o", "ht", "ref_o", "ref_ht"))
        q, k, v = (x.to(torch.bfloat16) for x in (q, k, v))
        fo, fht = chunk_gla(q, k, v, g.float(), scale=c["d"] ** -0.5, initial_state=h0.float(), output_final_state=True)
        errs = {"o": (err_ratio(o, ref_o), err_ratio(fo.float(), ref_o), err_ratio(o, fo.float())),
                "ht": (err_ratio(ht, ref_ht), err_ratio(fht.float(), ref_ht), err_ratio(ht, fht.float()))}
        print(row(f"fwd B={c['b']} N={c['n']} D={c['d']} E={c['e']}", errs), flush=True)
        failed += [m for n, e in errs.items() if (m := verdict(f"fwd case {i} {n}", *e))]
    bwd = os.path.join(root, "bwd_cases.json")
    for c in (json.load(open(bwd)) if os.path.exists(bwd) else []):
        i = c["case"]
        x = {n: load("bwd", i, n) for n in ("q", "k", "v", "g", "h0", "do", "dht")}
        q, k, v = (x[n].to(torch.bfloat16).requires_grad_(True) for n in ("q", "k", "v"))
        g, h0 = (x[n].float().requires_grad_(True) for n in ("g", "h0"))
        fo, fht = chunk_gla(q, k, v, g, scale=c["d"] ** -0.5, initial_state=h0, output_final_state=True)
        torch.autograd.backward([fo, fht], [x["do"].to(torch.bfloat16), x["dht"].float()])
        fla_grads = dict(dq=q.grad, dk=k.grad, dv=v.grad, dg=g.grad, dh0=h0.grad)
        errs = {}
        for n, fg in fla_grads.items():
            got, ref = load("bwd", i, n), load("bwd", i, f"ref_{n}")
            errs[n] = (err_ratio(got, ref), err_ratio(fg.float(), ref), err_ratio(got, fg.float()))
        print(row(f"bwd B={c['b']} N={c['n']} D={c['d']} E={c['e']}", errs), flush=True)
        failed += [m for n, e in errs.items() if (m := verdict(f"bwd case {i} {n}", *e))]
    if failed:
        print("\n".join(failed))
        sys.exit(1)
    print("fla_gla_check: ok")


if __name__ == "__main__":
    main()
