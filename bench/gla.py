"""Gated linear attention: tessel (dsl-examples/gla.tsl through its `gla` operator package) beside
flash-linear-attention's `chunk_gla` (forward, forward+backward) and `fused_recurrent_gla`
(decoding, one token against a state), at issue 18's shapes: H = 16, D = E = 128, B·N = 65536,
N = 1k … 64k, bf16 q, k, v, f32 log-space gates; timed in one process on one GPU; writes a results
JSON (device, date, commit) under bench/results (or $OUT) and a plot when matplotlib is there.

Run on the GPU machine from the repository root, after `scripts/gpu-bundle` here:
    python3 bench/gla.py [--quick] [--ns 1024,4096] [--no-decode] [--no-anchors] [--package PATH]
fla is taken from .gpu/pylib when it is not installed (scripts/gpu-bundle unpacks its wheel there).

tessel's times come from one `tessel bench --cases` run (CUDA events, warm-up, median over
rotating input sets larger than L2); a phase's time is the sum of its kernels, as the operator
launches them (tessel_runtime::gla): forward = gla_fwd_state + gla_fwd_o; backward = gla_fwd_state
(the chunk states again) + gla_bwd_dstate + gla_bwd_dqk + gla_bwd_dv. `tessel bench` draws its
inputs uniform in [-1, 1), gates included; the kernels' work does not depend on the values. fla is
timed by triton.testing.do_bench (median) on log-sigmoid gates; its forward+backward is one
autograd step (forward, then backward from dO and no final-state gradient), as tessel's
forward + backward. FLOPs (ALGORITHMS.md §7, chunk C = 64, for the TFLOP/s column only; the
ratios are of times): forward Z·(2N·C(D+E) + 4N·D·E), backward Z·(2N·C(3D+2E) + 10N·D·E).
"""
import datetime, json, os, signal, subprocess, sys, tempfile

sys.path.insert(0, os.path.abspath(".gpu/pylib"))

QUICK = "--quick" in sys.argv
D = E = 128
H = 16
TOKENS = 65536
CHUNK = 64
NS = [1024, 4096, 65536] if QUICK else [1024, 2048, 4096, 8192, 16384, 32768, 65536]
if "--ns" in sys.argv:
    NS = [int(n) for n in sys.argv[sys.argv.index("--ns") + 1].split(",")]
SHAPES = [(N, TOKENS // N) for N in NS]
DECODE_BATCHES = [1, 64]
SCALE = D ** -0.5


def arg(name, default):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def flops(B, N):
    z = B * H
    fwd = z * (2 * N * CHUNK * (D + E) + 4 * N * D * E)
    bwd = z * (2 * N * CHUNK * (3 * D + 2 * E) + 10 * N * D * E)
    return fwd, bwd


def phases(B, N):
    """The kernels the operator launches for one call, as `tessel bench --cases` lines."""
    nc = -(-N // CHUNK)
    shape = f"B={B},N={N},H={H},NC={nc}"
    v = f"[D={D},E={E}]"
    s = f"scale={SCALE}"
    fwd = [f"gla_fwd_state{v} {shape}", f"gla_fwd_o{v} {shape} {s}"]
    bwd = [f"gla_fwd_state{v} {shape}", f"gla_bwd_dstate{v} {shape} {s}", f"gla_bwd_dqk{v} {shape} {s}",
           f"gla_bwd_dv{v} {shape} {s}"]
    return fwd, bwd


def decode_lines():
    return [f"gla_decode[D={D},E={E}] B={b},H={H} scale={SCALE}" for b in DECODE_BATCHES]


def case_lines(decode=True):
    """Every case line, and where each call's kernels sit in it: [(N, B, at, n_fwd, n_bwd)]."""
    lines, spans = [], []
    for N, B in SHAPES:
        fwd, bwd = phases(B, N)
        spans.append((N, B, len(lines), len(fwd), len(bwd)))
        lines += fwd + bwd
    return lines + (decode_lines() if decode else []), spans


def tessel_times(timed, lines, spans):
    """Per N: forward and backward ms (sums of their kernels) and each kernel's ms."""
    ms = {}
    for N, B, at, nf, nb in spans:
        t = [timed[at + i]["median_ms"] for i in range(nf + nb)]
        parts = {f"{'fwd' if i < nf else 'bwd'}:{lines[at + i].split()[0].split('[')[0]}": t[i] for i in range(nf + nb)}
        ms[N] = dict(fwd=sum(t[:nf]), bwd=sum(t[nf:]), parts=parts)
    return ms


def table(ratios):
    out = [f"{'phase':<10} {'N':>6} {'tessel ms':>10} {'fla ms':>10} {'speedup':>8}  anchor"]
    for r in ratios:
        out.append(f"{r['kernel']:<10} {r['size']:>6} {r['tessel_ms']:>10.3f} {r['anchor_ms']:>10.3f} {r['speedup']:>8.2f}  {r['anchor']}")
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
        ax.set_xlabel("N (tokens per sequence; B·N = 65536)" if "decode" not in grp else "batch")
        ax.set_ylabel("ms")
        ax.set_title(grp)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    return path


def main():
    import torch
    import torch.nn.functional as F
    from triton.testing import do_bench

    arch = "sm_90a" if torch.cuda.get_device_capability() == (9, 0) else "sm_80"
    package = arg("--package", f".gpu/kernels/gla.{arch}.tpkg")
    tessel = ".gpu/bin/tessel" if os.path.exists(".gpu/bin/tessel") else "./target/release/tessel"
    decode = "--no-decode" not in sys.argv
    lines, spans = case_lines(decode)
    with tempfile.NamedTemporaryFile("w", suffix=".cases", delete=False) as f:
        f.write("\n".join(lines) + "\n")
    out = subprocess.run([tessel, "bench", package, "--cases", f.name, "--json", "--iters", "30", "--warmup", "3"],
                         check=True, capture_output=True, text=True).stdout
    timed = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    assert len(timed) == len(lines), out
    print(f"tessel: {len(timed)} kernels timed", flush=True)
    ms = tessel_times(timed, lines, spans)
    dec_ms = {b: timed[len(lines) - len(DECODE_BATCHES) + i]["median_ms"] for i, b in enumerate(DECODE_BATCHES)} if decode else {}

    limit_s = 180

    class Slow(Exception):
        pass

    def on_alarm(*_):
        raise Slow(f"not done in {limit_s} s (first-call autotuning?)")

    signal.signal(signal.SIGALRM, on_alarm)

    def median_ms(fn):
        signal.alarm(limit_s)
        try:
            return do_bench(fn, warmup=5, rep=40, return_mode="median")
        finally:
            signal.alarm(0)

    fla = {}
    if "--no-anchors" not in sys.argv:
        try:
            from fla.ops.gla import chunk_gla, fused_recurrent_gla
            fla = dict(chunk=chunk_gla, recurrent=fused_recurrent_gla)
        except Exception as e:
            print("fla unavailable:", e)

    records, ratios = [], []
    for N, B in SHAPES:
        t = ms[N]
        f_fl, b_fl = flops(B, N)
        records.append(dict(group="GLA fwd", name="tessel gla.tsl", size=N, ms=t["fwd"], tflops=f_fl / t["fwd"] / 1e9, B=B, H=H))
        records.append(dict(group="GLA fwd+bwd", name="tessel gla.tsl", size=N, ms=t["fwd"] + t["bwd"],
                            tflops=(f_fl + b_fl) / (t["fwd"] + t["bwd"]) / 1e9, B=B, H=H, parts=t["parts"]))
        if "chunk" not in fla:
            continue
        q, k, v, do = (torch.randn(B, N, H, x, device="cuda", dtype=torch.bfloat16) for x in (D, D, E, E))
        g = F.logsigmoid(torch.randn(B, N, H, D, device="cuda", dtype=torch.float32)) / 16
        try:
            f_ms = median_ms(lambda: fla["chunk"](q, k, v, g, scale=SCALE, output_final_state=True))
            qg, kg, vg, gg = (x.clone().requires_grad_(True) for x in (q, k, v, g))

            def step():
                o, _ = fla["chunk"](qg, kg, vg, gg, scale=SCALE, output_final_state=True)
                o.backward(do)
            s_ms = median_ms(step)
        except Exception as e:
            print(f"fla chunk_gla N={N}: {type(e).__name__}: {e}"[:400])
            continue
        finally:
            del q, k, v, do
        for grp, tm, am in (("GLA fwd", t["fwd"], f_ms), ("GLA fwd+bwd", t["fwd"] + t["bwd"], s_ms)):
            records.append(dict(group=grp, name="fla chunk_gla", size=N, ms=am, B=B, H=H))
            ratios.append(dict(kernel=grp.split()[1], size=N, anchor="fla chunk_gla", tessel_ms=tm, anchor_ms=am, speedup=am / tm))
        print(f"N={N:>6} B={B:>3} fwd tessel {t['fwd']:.3f} fla {f_ms:.3f} ms ({f_ms / t['fwd']:.2f}x)  "
              f"fwd+bwd tessel {t['fwd'] + t['bwd']:.3f} fla {s_ms:.3f} ms ({s_ms / (t['fwd'] + t['bwd']):.2f}x)", flush=True)

    for b, t_ms in dec_ms.items():
        records.append(dict(group="GLA decode step", name="tessel gla_decode", size=b, ms=t_ms, us_per_step=1e3 * t_ms))
        if "recurrent" not in fla:
            continue
        q, k, gk = (torch.randn(b, 1, H, D, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        gk = F.logsigmoid(gk.float()) / 16
        v = torch.randn(b, 1, H, E, device="cuda", dtype=torch.bfloat16)
        state = torch.randn(b, H, D, E, device="cuda", dtype=torch.float32)
        try:
            a_ms = median_ms(lambda: fla["recurrent"](q, k, v, gk=gk, scale=SCALE, initial_state=state, output_final_state=True))
        except Exception as e:
            print(f"fla fused_recurrent_gla B={b}: {type(e).__name__}: {e}"[:400])
            continue
        records.append(dict(group="GLA decode step", name="fla fused_recurrent_gla", size=b, ms=a_ms, us_per_step=1e3 * a_ms))
        ratios.append(dict(kernel="decode", size=b, anchor="fla fused_recurrent_gla (batch)", tessel_ms=t_ms, anchor_ms=a_ms,
                           speedup=a_ms / t_ms))

    commit = open(".gpu/COMMIT").read().strip() if os.path.exists(".gpu/COMMIT") else "unknown"
    date = datetime.date.today().isoformat()
    out_dir = os.environ.get("OUT") or "bench/results"
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.join(out_dir, f"{date}-{commit}-gla")
    result = dict(device=torch.cuda.get_device_name(), date=date, commit=commit, torch=torch.__version__, arch=arch,
                  package=package, shapes=dict(H=H, D=D, E=E, tokens=TOKENS), records=records, ratios=ratios)
    json.dump(result, open(stem + ".json", "w"), indent=1)
    plotted = plot(records, stem + ".png")
    for r in records:
        if r["name"].startswith("tessel") and "parts" in r:
            print(f"tessel N={r['size']:>6} " + " ".join(f"{k}={v:.3f}" for k, v in r["parts"].items()))
    print("wrote", stem + ".json", *(["and", plotted] if plotted else []))
    print(table(ratios))


if __name__ == "__main__":
    main()
