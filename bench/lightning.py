"""Lightning Attention: tessel (lightning_attention.tsl through its package) beside
flash-linear-attention (`chunk_simple_gla` with `g_gamma` = −slope, and `chunk_gla` with constant
per-head gates: the same function) and causal cuDNN flash attention, forward and forward+backward, at the shapes of issue 7
(D = E = 128, H = 16, B·N = 65536, N from 1k to 64k, bf16), timed in one process on one GPU;
writes a results JSON.

Run on the GPU machine from the repository root, after `make gpu-bundle` here:
    python3 bench/lightning.py [--quick] [--package PATH] [--ns 1024,4096] [--fla simple_gla,gla]
                               [--no-decode] [--no-anchors] [--sweep-segments]
fla is taken from .gpu/pylib when it is not installed (scripts/gpu-bundle unpacks its wheel there).
tessel's times come from one `tessel bench --cases` run (CUDA events, median); a phase's time is the
sum of its kernels. The anchors are timed by triton.testing.do_bench; their forward+backward is one
autograd step. FLOPs (for the TFLOP/s column; the ratios are of times): per token and head, intra
2·BLK·D/2 + 2·BLK·E/2 (causal half of a 64-block), inter 2·D·E, state 2·D·E; backward 2× forward.
"""
import datetime, json, os, signal, subprocess, sys, tempfile

sys.path.insert(0, os.path.abspath(".gpu/pylib"))
import torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend
from triton.testing import do_bench

QUICK = "--quick" in sys.argv
ARCH = "sm_90a" if torch.cuda.get_device_capability() == (9, 0) else "sm_80"
PACKAGE = sys.argv[sys.argv.index("--package") + 1] if "--package" in sys.argv else f".gpu/kernels/lightning_attention.{ARCH}.tpkg"
TAG = sys.argv[sys.argv.index("--tag") + 1] if "--tag" in sys.argv else "tessel lightning_attention.tsl"
ANCHORS = "--no-anchors" not in sys.argv
NS = [1024, 8192, 65536] if QUICK else [1024, 2048, 4096, 8192, 16384, 32768, 65536]
if "--ns" in sys.argv:
    NS = [int(n) for n in sys.argv[sys.argv.index("--ns") + 1].split(",")]
D = E = 128
H = 16
TOKENS = 65536
BLK = 64


def segments(B, N):
    """The runtime's choice of sequence segments (tessel_runtime::lightning::segments_for): B·H·S·2
    programs (two state tiles at E = 128) filling at most one wave of 132 SMs × 2 resident
    programs, segments of at least 4 blocks."""
    slots, tiles = 132 * 2, E // 64
    blocks = -(-N // BLK)
    return max(1, min(slots // (B * H * tiles), blocks // 4))


def phases(B, N):
    S = segments(B, N)
    shape = f"B={B},H={H},N={N},S={S}"
    v = f"[D={D},E={E}]"
    fwd = [f"lightning_attention_segment_state{v} {shape}", f"lightning_attention_fwd{v} {shape}"]
    bwd = [f"lightning_attention_segment_state{v} {shape}", f"lightning_attention_segment_dstate{v} {shape}",
           f"lightning_attention_bwd_dq{v} {shape}", f"lightning_attention_bwd_dk{v} {shape}", f"lightning_attention_bwd_dv{v} {shape}"]
    return fwd, bwd


shapes = [(N, TOKENS // N) for N in NS]

# --sweep-segments: the forward (segment states + fwd) and the backward's kernels at segment counts
# around the runtime's (¼× to 8×, and those filling whole waves of 2 programs × 132 SMs with two
# state tiles a head), tessel only: data for segments_for (the wave tail at long N). Prints a table
# (x = programs of the forward / 264) and exits.
if "--sweep-segments" in sys.argv:
    sweep = []
    for N, B in shapes:
        blocks = -(-N // BLK)
        base = segments(B, N)
        cands = {max(1, base // 4), max(1, base // 2), base, 2 * base, 4 * base, 8 * base}
        cands |= {-(-k * 264 // (B * H * 2)) for k in (1, 2, 3, 4, 6, 8)}
        for S in sorted(c for c in cands if c <= blocks):
            shape = f"B={B},H={H},N={N},S={S}"
            v = f"[D={D},E={E}]"
            sweep.append((N, round(B * H * S * 2 / 264, 2), S, [f"lightning_attention_segment_state{v} {shape}", f"lightning_attention_fwd{v} {shape}",
                                                                  f"lightning_attention_segment_dstate{v} {shape}", f"lightning_attention_bwd_dq{v} {shape}",
                                                                  f"lightning_attention_bwd_dk{v} {shape}", f"lightning_attention_bwd_dv{v} {shape}"]))
    with tempfile.NamedTemporaryFile("w", suffix=".cases", delete=False) as f:
        f.write("\n".join(l for *_, ls in sweep for l in ls) + "\n")
    out = subprocess.run([".gpu/bin/tessel", "bench", PACKAGE, "--cases", f.name, "--json", "--iters", "30", "--warmup", "3"],
                         check=True, capture_output=True, text=True).stdout
    timed = [json.loads(l)["median_ms"] for l in out.splitlines() if l.startswith("{")]
    print(f"{'N':>6} {'waves':>6} {'S':>5} {'seg':>7} {'fwd':>7} {'fwd sum':>8} {'dseg':>7} {'dq':>7} {'dk':>7} {'dv':>7} {'f+b sum':>8}   (ms)")
    for j, (N, x, S, _) in enumerate(sweep):
        t = timed[6 * j: 6 * j + 6]
        print(f"{N:>6} {x:>6} {S:>5} {t[0]:>7.3f} {t[1]:>7.3f} {t[0] + t[1]:>8.3f} {t[2]:>7.3f} {t[3]:>7.3f} {t[4]:>7.3f} {t[5]:>7.3f} {sum(t) + t[0]:>8.3f}")
    sys.exit(0)
lines, spans = [], []
for N, B in shapes:
    fwd, bwd = phases(B, N)
    spans.append((len(lines), len(fwd), len(bwd)))
    lines += fwd + bwd
with tempfile.NamedTemporaryFile("w", suffix=".cases", delete=False) as f:
    f.write("\n".join(lines) + "\n")
log = f.name + ".json"
with open(log, "w") as lf:
    subprocess.run([".gpu/bin/tessel", "bench", PACKAGE, "--cases", f.name, "--json", "--iters", "30", "--warmup", "3"],
                   check=True, stdout=lf, text=True)
timed = [json.loads(l) for l in open(log).read().splitlines() if l.startswith("{")]
assert len(timed) == len(lines), open(log).read()
print(f"tessel: {len(timed)} kernels timed", flush=True)
ms = {}
for (N, B), (at, nf, nb) in zip(shapes, spans):
    parts = {lines[at + i].split()[0]: timed[at + i]["median_ms"] for i in range(nf + nb)}
    ms[N] = dict(fwd=sum(timed[at + i]["median_ms"] for i in range(nf)),
                 bwd=sum(timed[at + nf + i]["median_ms"] for i in range(nb)), parts=parts)


class Slow(Exception):
    pass


def on_alarm(*_):
    raise Slow(f"not done in {LIMIT_S} s (first-call autotuning?)")


LIMIT_S = 120
signal.signal(signal.SIGALRM, on_alarm)


def median_ms(fn):
    """do_bench's median; an anchor that cannot finish (autotuning a new shape) in LIMIT_S
    seconds is reported and skipped rather than taking the whole device call with it."""
    signal.alarm(LIMIT_S)
    try:
        return do_bench(fn, warmup=5, rep=40, return_mode="median")
    finally:
        signal.alarm(0)


def fla_ops():
    try:
        from fla.ops.simple_gla import chunk_simple_gla
        from fla.ops.gla import chunk_gla
        ops = {"fla chunk_simple_gla": chunk_simple_gla, "fla chunk_gla": chunk_gla}
        # --fla simple_gla,gla picks which (chunk_gla autotunes for minutes on a new shape).
        if "--fla" in sys.argv:
            keep = sys.argv[sys.argv.index("--fla") + 1].split(",")
            ops = {k: v for k, v in ops.items() if k.split("chunk_")[1] in keep}
        return ops
    except Exception as e:
        print("fla unavailable:", e)
        return {}


# Decoding: tokens/s along one generation (tessel bench-decode), beside softmax attention's decode
# step at the same context (SDPA, one query against a KV cache of L tokens; what a Transformer pays).
DECODE = "--no-decode" not in sys.argv
decode = []
if DECODE:
    contexts = [1024, 4096, 16384, 65536, 262144, 1048576]
    out = subprocess.run([".gpu/bin/tessel", "bench-decode", PACKAGE, "--batch", "1,64", "--heads", str(H), "--d", str(D), "--e", str(E),
                          "--context", ",".join(map(str, contexts)), "--json"], check=True, capture_output=True, text=True).stdout
    decode = [dict(json.loads(l), name=TAG) for l in out.splitlines() if l.startswith("{")]
    for b in (1, 64):
        for L in contexts:
            if b * H * L * D * 2 * 2 > 40e9:  # KV cache over 40 GB: not run
                continue
            q = torch.randn(b, H, 1, D, device="cuda", dtype=torch.bfloat16)
            kc, vc = (torch.randn(b, H, L, D, device="cuda", dtype=torch.bfloat16) for _ in range(2))
            try:
                with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]):
                    t_ms = median_ms(lambda: F.scaled_dot_product_attention(q, kc, vc))
                decode.append(dict(name="SDPA decode (KV cache)", batch=b, context=L, us_per_step=1e3 * t_ms, tokens_per_s=b / (t_ms * 1e-3)))
            except Exception as e:
                print(f"SDPA decode B={b} L={L}: {e}"[:300])
            del q, kc, vc
    for r in decode:
        print(f"decode {r['name'][:26]:<26} B={r['batch']:>3} context={r['context']:>8} {r['us_per_step']:>9.2f} us/step", flush=True)

def write_results():
    commit = open(".gpu/COMMIT").read().strip() if os.path.exists(".gpu/COMMIT") else "unknown"
    date = datetime.date.today().isoformat()
    result = dict(device=torch.cuda.get_device_name(), date=date, commit=commit, torch=torch.__version__, arch=ARCH,
                  package=PACKAGE, records=records, ratios=ratios, decode=decode)
    out_dir = os.environ.get("OUT") or "bench/results"
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{date}-{commit}-lightning{'-' + TAG.replace(' ', '_') if '--tag' in sys.argv else ''}.json")
    json.dump(result, open(path, "w"), indent=1)
    return path


FLA = fla_ops() if ANCHORS else {}
slopes = torch.rand(H, device="cuda") * 0.5 + 0.01
records, ratios = [], []
for N, B in shapes:
    flops = 2 * B * N * H * (BLK * D / 2 + BLK * E / 2 + 2 * D * E)
    t = ms[N]
    records.append(dict(group="lightning fwd", name=TAG, size=N, metric="TFLOP/s", value=flops / t["fwd"] / 1e9, ms=t["fwd"], B=B, H=H))
    records.append(dict(group="lightning fwd+bwd", name=TAG, size=N, metric="TFLOP/s", value=3 * flops / (t["fwd"] + t["bwd"]) / 1e9,
                        ms=t["fwd"] + t["bwd"], B=B, H=H, parts=t["parts"]))
    if not ANCHORS:
        continue
    anchors = {}
    q, k, v, do = (torch.randn(B, H, N, D, device="cuda", dtype=torch.bfloat16) for _ in range(4))
    try:
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            f_ms = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
            qg, kg, vg = (x.clone().requires_grad_(True) for x in (q, k, v))
            def step():
                F.scaled_dot_product_attention(qg, kg, vg, is_causal=True).backward(do)
            anchors["cuDNN causal softmax attention"] = (f_ms, median_ms(step))
    except Exception as e:
        print(f"anchor cuDNN N={N}: {e}"[:400])
    del q, k, v, do
    # fla: [B, T, H, K] layout, log-gates per step (constant per head), no scale.
    q, k, v, do = (torch.randn(B, N, H, D, device="cuda", dtype=torch.bfloat16) for _ in range(4))
    g = (-slopes).view(1, 1, H).expand(B, N, H).contiguous()
    gk = g.unsqueeze(-1).expand(B, N, H, D).contiguous()
    calls = {"fla chunk_simple_gla": lambda q, k, v: FLA["fla chunk_simple_gla"](q, k, v, g_gamma=-slopes, scale=1.0),
             "fla chunk_gla": lambda q, k, v: FLA["fla chunk_gla"](q, k, v, g=gk, scale=1.0)}
    for name in FLA:
        op = calls[name]
        try:
            f_ms = median_ms(lambda: op(q, k, v))
            qg, kg, vg = (x.clone().requires_grad_(True) for x in (q, k, v))
            def step():
                o, _ = op(qg, kg, vg)
                o.backward(do)
            anchors[name] = (f_ms, median_ms(step))
        except Exception as e:
            print(f"anchor {name} N={N}: {type(e).__name__}: {e}"[:400])
    del q, k, v, do
    for name, (f_ms, s_ms) in anchors.items():
        records.append(dict(group="lightning fwd", name=name, size=N, metric="ms", value=f_ms, ms=f_ms, B=B, H=H))
        records.append(dict(group="lightning fwd+bwd", name=name, size=N, metric="ms", value=s_ms, ms=s_ms, B=B, H=H))
        ratios.append(dict(kernel="lightning fwd", size=N, anchor=name, tessel_ms=t["fwd"], anchor_ms=f_ms, speedup=f_ms / t["fwd"]))
        ratios.append(dict(kernel="lightning fwd+bwd", size=N, anchor=name, tessel_ms=t["fwd"] + t["bwd"], anchor_ms=s_ms,
                           speedup=s_ms / (t["fwd"] + t["bwd"])))
        print(f"N={N:>6} {name:<32} fwd {f_ms:8.3f} ms ({f_ms / t['fwd']:5.2f}x)  fwd+bwd {s_ms:8.3f} ms ({s_ms / (t['fwd'] + t['bwd']):5.2f}x)",
              flush=True)
    write_results()

print(f"{'kernel':<18} {'N':>6} {'tessel ms':>10} {'anchor ms':>10} {'speedup':>8}  anchor")
for r in ratios:
    print(f"{r['kernel']:<18} {r['size']:>6} {r['tessel_ms']:>10.3f} {r['anchor_ms']:>10.3f} {r['speedup']:>8.2f}  {r['anchor']}")
for r in records:
    if r["name"] == TAG:
        parts = " ".join(f"{k.split('[')[0].replace('lightning_attention_', '')}={v:.3f}" for k, v in r.get("parts", {}).items())
        print(f"{r['group']:<18} {r['size']:>6} {r['ms']:>8.3f} ms {r['value']:>7.1f} TFLOP/s {parts}")
for r in decode:
    print(f"decode {r['name'][:26]:<26} B={r['batch']:>3} context={r['context']:>8} {r['us_per_step']:>9.2f} us/step {r['tokens_per_s']:>12.0f} tokens/s")
print("wrote", write_results())
