"""FLASH mixed-chunk attention with GAU's gate: tessel (dsl-examples/flash_gau.tsl through its
`flash_gau` operator package) beside the same math in plain PyTorch (bench/flash_gau_torch.py,
eager, and torch.compile'd with --compile) and beside cuDNN softmax attention of the same width
(SDPA, one head of 128 for q, k and v), forward and forward+backward, causal and not, S = E = 128,
B·N = 65536, N = 1k … 16k, bf16; one process on one GPU; a results JSON under bench/results (or
$OUT) and a plot when matplotlib is there; the table last.

Run on the GPU machine from the repository root, after `scripts/gpu-bundle` here:
    python3 bench/flash_gau.py [--quick] [--ns 1024,4096] [--compile] [--no-anchors] [--package PATH]

tessel's times come from one `tessel bench --cases` run (CUDA events, median); a phase is the sum
of the kernels the operator launches (tessel_runtime::flash_gau): forward = flash_chunk_state +
flash_state_scan + flash_gau_fwd; backward = the forward's two state passes + flash_bwd_chunk_state +
flash_state_scan + flash_gau_bwd_kv +
flash_gau_bwd_q + flash_gau_bwd_z + flash_gau_bwd_params. The anchors are timed by
triton.testing.do_bench (median); forward+backward is one autograd step (w.r.t. z, γ, β, v, u for
FLASH; q, k, v for SDPA).
"""
import datetime, json, os, signal, subprocess, sys, tempfile

sys.path.insert(0, os.path.abspath(".gpu/pylib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

QUICK = "--quick" in sys.argv
S = E = 128
G, BM = 256, 64
TOKENS = 65536
NS = [1024, 4096, 16384] if QUICK else [1024, 2048, 4096, 8192, 16384]
if "--ns" in sys.argv:
    NS = [int(n) for n in sys.argv[sys.argv.index("--ns") + 1].split(",")]
SHAPES = [(N, TOKENS // N) for N in NS]


def arg(name, default):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def phases(B, N, causal):
    shape = f"B={B},N={N},NG={-(-N // G)},NB={-(-N // BM)}"
    c = str(causal).lower()
    sym = lambda *names: ",".join(p for p in shape.split(",") if p.split("=")[0] in names)
    ng = sym('B', 'NG')
    st = [f"flash_chunk_state[E={E}] {sym('B', 'N', 'NG')}", f"flash_state_scan[E={E}] {ng} reverse=0"]
    fwd = st + [f"flash_gau_fwd[E={E},CAUSAL={c}] {sym('B', 'N', 'NG')}"]
    bwd = st + [f"flash_bwd_chunk_state[E={E}] {sym('B', 'N', 'NG')}", f"flash_state_scan[E={E}] {ng} reverse=1",
                f"flash_gau_bwd_kv[E={E},CAUSAL={c}] {sym('B', 'N', 'NG')}",
                f"flash_gau_bwd_q[E={E},CAUSAL={c}] {sym('B', 'N', 'NG')}", f"flash_gau_bwd_z {sym('B', 'N', 'NB')}",
                f"flash_gau_bwd_params {sym('B', 'NB')}"]
    return fwd, bwd


def case_lines():
    lines, spans = [], []
    for causal in (False, True):
        for N, B in SHAPES:
            fwd, bwd = phases(B, N, causal)
            spans.append((N, B, causal, len(lines), len(fwd), len(bwd)))
            lines += fwd + bwd
    return lines, spans


def table(ratios):
    out = [f"{'phase':<8} {'mask':<7} {'N':>6} {'tessel ms':>10} {'anchor ms':>10} {'speedup':>8}  anchor"]
    for r in ratios:
        out.append(f"{r['kernel']:<8} {r['mask']:<7} {r['size']:>6} {r['tessel_ms']:>10.3f} {r['anchor_ms']:>10.3f} {r['speedup']:>8.2f}  {r['anchor']}")
    return "\n".join(out)


def plot(records, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as e:
        print(f"no plot: matplotlib is not available here ({e})")
        return None
    groups = sorted({r["group"] for r in records})
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 4), squeeze=False)
    for ax, grp in zip(axes[0], groups):
        for name in sorted({r["name"] for r in records if r["group"] == grp}):
            pts = sorted((r["size"], r["ms"]) for r in records if r["group"] == grp and r["name"] == name)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("N (B·N = 65536)")
        ax.set_ylabel("ms")
        ax.set_title(grp)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    return path


def main():
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import sdpa_kernel, SDPBackend
    from triton.testing import do_bench
    from flash_gau_torch import flash_gau

    arch = "sm_90a" if torch.cuda.get_device_capability() == (9, 0) else "sm_80"
    package = arg("--package", f".gpu/kernels/flash_gau.{arch}.tpkg")
    tessel = ".gpu/bin/tessel" if os.path.exists(".gpu/bin/tessel") else "./target/release/tessel"
    lines, spans = case_lines()
    with tempfile.NamedTemporaryFile("w", suffix=".cases", delete=False) as f:
        f.write("\n".join(lines) + "\n")
    out = subprocess.run([tessel, "bench", package, "--cases", f.name, "--json", "--iters", "30", "--warmup", "3"],
                         check=True, capture_output=True, text=True).stdout
    timed = [json.loads(l)["median_ms"] for l in out.splitlines() if l.startswith("{")]
    assert len(timed) == len(lines), out
    print(f"tessel: {len(timed)} kernels timed", flush=True)

    limit_s = 180

    def on_alarm(*_):
        raise TimeoutError(f"not done in {limit_s} s")

    signal.signal(signal.SIGALRM, on_alarm)

    def median_ms(fn):
        signal.alarm(limit_s)
        try:
            return do_bench(fn, warmup=5, rep=40, return_mode="median")
        finally:
            signal.alarm(0)

    impls = {"PyTorch FLASH (eager)": flash_gau}
    if "--compile" in sys.argv:
        impls["PyTorch FLASH (torch.compile)"] = torch.compile(flash_gau)
    records, ratios = [], []
    for N, B, causal, at, nf, nb in spans:
        mask = "causal" if causal else "full"
        t_f, t_b = sum(timed[at:at + nf]), sum(timed[at + nf:at + nf + nb])
        records.append(dict(group=f"FLASH fwd {mask}", name="tessel flash_gau.tsl", size=N, ms=t_f, B=B))
        records.append(dict(group=f"FLASH fwd+bwd {mask}", name="tessel flash_gau.tsl", size=N, ms=t_f + t_b, B=B))
        if "--no-anchors" in sys.argv:
            continue
        anchors = {}
        z = torch.randn(B, N, S, device="cuda", dtype=torch.bfloat16)
        v, u, do = (torch.randn(B, N, E, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        gamma = (torch.randn(4, S, device="cuda") * 0.02 + 1.0)
        beta = torch.randn(4, S, device="cuda") * 0.02
        for name, fn in impls.items():
            try:
                f_ms = median_ms(lambda: fn(z, gamma, beta, v, u, causal))
                leaves = [x.clone().requires_grad_(True) for x in (z, gamma, beta, v, u)]

                def step():
                    fn(*leaves, causal).backward(do)
                anchors[name] = (f_ms, median_ms(step))
            except Exception as e:
                print(f"{name} N={N} {mask}: {type(e).__name__}: {e}"[:400])
        del z, v, u
        q, k, vv = (torch.randn(B, 1, N, S, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        do4 = torch.randn(B, 1, N, S, device="cuda", dtype=torch.bfloat16)
        try:
            with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
                f_ms = median_ms(lambda: F.scaled_dot_product_attention(q, k, vv, is_causal=causal))
                qg, kg, vg = (x.clone().requires_grad_(True) for x in (q, k, vv))

                def sdpa_step():
                    F.scaled_dot_product_attention(qg, kg, vg, is_causal=causal).backward(do4)
                anchors["cuDNN softmax attention (1 head of 128)"] = (f_ms, median_ms(sdpa_step))
        except Exception as e:
            print(f"cuDNN SDPA N={N} {mask}: {type(e).__name__}: {e}"[:400])
        del q, k, vv, do4
        for name, (f_ms, s_ms) in anchors.items():
            for grp, tm, am in (("fwd", t_f, f_ms), ("fwd+bwd", t_f + t_b, s_ms)):
                records.append(dict(group=f"FLASH {grp} {mask}", name=name, size=N, ms=am, B=B))
                ratios.append(dict(kernel=grp, mask=mask, size=N, anchor=name, tessel_ms=tm, anchor_ms=am, speedup=am / tm))
            print(f"N={N:>6} {mask:<6} {name:<40} fwd {f_ms:8.3f} ms ({f_ms / t_f:5.2f}x)  fwd+bwd {s_ms:8.3f} ms "
                  f"({s_ms / (t_f + t_b):5.2f}x)", flush=True)

    commit = open(".gpu/COMMIT").read().strip() if os.path.exists(".gpu/COMMIT") else "unknown"
    date = datetime.date.today().isoformat()
    out_dir = os.environ.get("OUT") or "bench/results"
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.join(out_dir, f"{date}-{commit}-flash_gau")
    json.dump(dict(device=torch.cuda.get_device_name(), date=date, commit=commit, torch=torch.__version__, arch=arch,
                   package=package, shapes=dict(S=S, E=E, G=G, tokens=TOKENS), records=records, ratios=ratios),
              open(stem + ".json", "w"), indent=1)
    plotted = plot(records, stem + ".png")
    print("wrote", stem + ".json", *(["and", plotted] if plotted else []))
    print(table(ratios))


if __name__ == "__main__":
    main()
