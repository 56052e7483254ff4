"""TransNormerLLM tensor parallel: decode and prefill tokens/s at TP = 1 and TP = 2 for the 1B and 7B
shapes (random weights), the all-reduce time per decode step, and the scaling efficiency
(TP = 2 throughput over twice TP = 1's); writes bench/results/<date>-<commit>-tensor_parallel.json.

Here (the build machine; scripts/gpu-bundle does this):
    for c in 1b 7b; do ./target/release/tessel compile-model $c --tensor-parallel 2 --arch sm_90a \
        -o .gpu/kernels/transnormer_$c.tp2.sm_90a.tpkg; done
On a machine with two GPUs (nvidia-h200-x2), from the repository root:
    python3 bench/tensor_parallel.py [--quick] [--models 1b,7b]
Every figure is what `tessel generate` prints (one process drives both GPUs; NCCL_NVLS_ENABLE=0 is
set by the runtime unless the environment sets it): prefill tokens/s of one prompt, decode tokens/s
of the steps after the first (the captured pieces replayed between the all-reduces), and at TP = 2
`decode all-reduce: X µs/step` (device time of the step's 2·L all-reduces on rank 0's stream,
waiting for the other rank included).
"""
import datetime, json, os, re, subprocess, sys

QUICK = "--quick" in sys.argv
TESSEL = ".gpu/bin/tessel" if os.path.exists(".gpu/bin/tessel") else "./target/release/tessel"
KERNELS = os.environ.get("TESSEL_KERNEL_DIR", ".gpu/kernels")
ARCH = "sm_90a"
MODELS = ["1b", "7b"]
for i, a in enumerate(sys.argv):
    if a == "--models":
        MODELS = sys.argv[i + 1].split(",")
PREFILL = [2048] if QUICK else [2048, 8192]
BATCHES = [1, 16] if QUICK else [1, 16, 64]
CONTEXT = 1024
STEPS = 64 if QUICK else 128


def sh(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}:\n{r.stderr[-2000:]}")
    return r.stdout, r.stderr


def model_dir(cfg):
    d = f"/tmp/tnl-bench-{cfg}"
    if not os.path.exists(os.path.join(d, "config.json")):
        sh([TESSEL, "model", "init", "--config", cfg, "--random-weights", d, "--seed", "1"])
    return d


def run(d, pkg, tp, ctx, batch, new):
    _, err = sh([TESSEL, "generate", d, "--package", pkg, "--tensor-parallel", str(tp), "--random-prompt",
                 str(ctx), "--batch", str(batch), "--max-new-tokens", str(new), "--seed", "1"])
    num = lambda pat: (lambda m: float(m.group(1)) if m else None)(re.search(pat, err))
    return {"prefill_tokens_per_s": num(r"prefill: .*?\(([\d.]+) tokens/s\)"),
            "decode_tokens_per_s": num(r"decode: .*?: ([\d.]+) tokens/s"),
            "us_per_step": num(r"decode: .*?\(([\d.]+) µs/step\)"),
            "decode_allreduce_us_per_step": num(r"decode all-reduce: ([\d.]+) µs/step"),
            "prefill_allreduce_ms": num(r"prefill all-reduce: ([\d.]+) ms"),
            "log": err.strip().splitlines()[-6:]}


def main():
    commit = sh(["git", "rev-parse", "--short", "HEAD"])[0].strip()
    rows = []
    for cfg in MODELS:
        d = model_dir(cfg)
        pkg = os.path.join(KERNELS, f"transnormer_{cfg}.tp2.{ARCH}.tpkg")
        for n in PREFILL:
            r = {tp: run(d, pkg, tp, n, 1, 1) for tp in (1, 2)}
            p1, p2 = r[1]["prefill_tokens_per_s"], r[2]["prefill_tokens_per_s"]
            rows.append({"model": cfg, "phase": "prefill", "tokens": n, "batch": 1, "tp1": r[1], "tp2": r[2],
                         "scaling_efficiency": p2 / (2 * p1) if p1 and p2 else None})
            print(f"{cfg} prefill {n}: TP=1 {p1} tokens/s, TP=2 {p2} tokens/s "
                  f"(all-reduce {r[2]['prefill_allreduce_ms']} ms), efficiency {rows[-1]['scaling_efficiency']}",
                  flush=True)
        for b in BATCHES:
            r = {tp: run(d, pkg, tp, CONTEXT, b, STEPS + 2) for tp in (1, 2)}
            d1, d2 = r[1]["decode_tokens_per_s"], r[2]["decode_tokens_per_s"]
            rows.append({"model": cfg, "phase": "decode", "context": CONTEXT, "batch": b, "tp1": r[1], "tp2": r[2],
                         "scaling_efficiency": d2 / (2 * d1) if d1 and d2 else None})
            print(f"{cfg} decode batch {b} after {CONTEXT}: TP=1 {d1} tokens/s ({r[1]['us_per_step']} µs/step), "
                  f"TP=2 {d2} tokens/s ({r[2]['us_per_step']} µs/step, all-reduce "
                  f"{r[2]['decode_allreduce_us_per_step']} µs/step), efficiency {rows[-1]['scaling_efficiency']}",
                  flush=True)
    os.makedirs("bench/results", exist_ok=True)
    out = f"bench/results/{datetime.date.today()}-{commit}-tensor_parallel.json"
    with open(out, "w") as f:
        json.dump({"commit": commit, "rows": rows}, f, indent=1)
    print("wrote", out)


if __name__ == "__main__":
    main()
