"""TransNormerLLM end to end: tessel (`tessel generate` on a `compile-model` package) beside the PyTorch
implementation (bench/transnormer_torch.py, eager and torch.compile), on random weights at the 385M and
1B shapes, in one run on one GPU; writes bench/results/<date>-<commit>-transnormer.json.

Here (the build machine):
    for c in 385m 1b; do ./target/release/tessel compile-model $c --arch sm_90a -o .gpu/kernels/transnormer_$c.sm_90a.tpkg; done
On the GPU machine, from the repository root:
    python3 bench/transnormer.py [--quick] [--no-torch] [--compile]
It writes the model directories itself (`tessel model init --random-weights`, seed 1) under /tmp,
and a results file `tessel plot` draws (one panel per model × phase × batch).

tessel's numbers are what `tessel generate` prints: prefill tokens/s (one batch-1 prompt of 2k, 8k,
32k tokens) and decode tokens/s (batch 1, 16, 64 after a prompt of 1k … 64k tokens; every step is
the captured decode graph replayed, plus the 4·B-byte read of the chosen tokens that streaming
needs). The weight-read limit of a batch-1 step is the bf16 weight bytes over the copy bandwidth
measured here (a 2 GiB device-to-device copy through torch: read + write bytes over its median time;
4.8 TB/s, the H200's nominal, where torch is missing).
"""
import datetime, json, os, re, subprocess, sys

QUICK = "--quick" in sys.argv
TESSEL = ".gpu/bin/tessel" if os.path.exists(".gpu/bin/tessel") else "./target/release/tessel"
KERNELS = os.environ.get("TESSEL_KERNEL_DIR", ".gpu/kernels")
ARCH = "sm_90a"
PREFILL = [2048] if QUICK else [2048, 8192, 32768]
BATCHES = [1, 16] if QUICK else [1, 16, 64]
CONTEXTS = [1024, 8192] if QUICK else [1024, 4096, 16384, 65536]


def copy_bandwidth():
    """Bytes/s of a device-to-device copy (each byte read once and written once)."""
    try:
        import torch
        from triton.testing import do_bench
    except ImportError:
        return 4.8e12
    a = torch.empty(1 << 30, dtype=torch.int16, device="cuda")
    b = torch.empty_like(a)
    ms = do_bench(lambda: b.copy_(a), warmup=5, rep=50, return_mode="median")
    del a, b
    torch.cuda.empty_cache()
    return 2 * (2 << 30) / (ms * 1e-3)


HBM = copy_bandwidth()
print(f"copy bandwidth: {HBM / 1e12:.2f} TB/s", flush=True)


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


def weight_bytes(d):
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.endswith(".safetensors"))


def tessel_run(d, pkg, ctx, batch, new):
    _, err = sh([TESSEL, "generate", d, "--package", pkg, "--random-prompt", str(ctx), "--batch", str(batch),
                 "--max-new-tokens", str(new), "--seed", "1"])
    pre = re.search(r"prefill: .*?\(([\d.]+) tokens/s\)", err)
    dec = re.search(r"decode: .*?: ([\d.]+) tokens/s \(([\d.]+) µs/step\)", err)
    return {"prefill_tokens_per_s": float(pre.group(1)) if pre else None,
            "decode_tokens_per_s": float(dec.group(1)) if dec else None,
            "us_per_step": float(dec.group(2)) if dec else None, "log": err.strip().splitlines()[-4:]}


def records(cfg, r):
    """The rows `tessel plot` draws: one panel per (model, phase, batch), tokens/s against size."""
    rec = lambda group, name, size, value: {"group": group, "name": name, "size": size,
                                             "metric": "tokens/s", "value": value}
    out = [rec(f"{cfg} prefill (batch 1)", "tessel", p["n"], p["tokens_per_s"])
           for p in r["tessel"]["prefill"] if p["tokens_per_s"]]
    out += [rec(f"{cfg} decode batch {d['batch']}", "tessel", d["context"], d["decode_tokens_per_s"])
            for d in r["tessel"]["decode"] if d["decode_tokens_per_s"]]
    for run in r.get("torch", []):
        name = f"torch {run['mode']}"
        out += [rec(f"{cfg} prefill (batch 1)", name, p["n"], p["tokens_per_s"]) for p in run.get("prefill", [])]
        out += [rec(f"{cfg} decode batch {d['batch']}", name, d["context"], d["tokens_per_s"])
                for d in run.get("decode", [])]
    return out


def main():
    commit = sh(["git", "rev-parse", "--short", "HEAD"])[0].strip()
    try:
        device = sh(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"])[0].strip().splitlines()[0]
    except Exception:
        device = "unknown"
    out = {"date": datetime.date.today().isoformat(), "commit": commit, "device": device, "copy_bandwidth_bytes_per_s": HBM,
           "models": {}, "records": []}
    for cfg in ["385m", "1b"]:
        d = model_dir(cfg)
        pkg = os.path.join(KERNELS, f"transnormer_{cfg}.{ARCH}.tpkg")
        limit_us = weight_bytes(d) / HBM * 1e6
        r = {"weight_read_limit_us": limit_us, "tessel": {"prefill": [], "decode": []}}
        for n in PREFILL:
            t = tessel_run(d, pkg, n, 1, 1)
            r["tessel"]["prefill"].append({"n": n, "tokens_per_s": t["prefill_tokens_per_s"]})
            print(f"{cfg} tessel prefill {n}: {t['prefill_tokens_per_s']:.0f} tokens/s", flush=True)
        for b in BATCHES:
            hidden = json.load(open(os.path.join(d, "config.json")))["hidden_dim"]
            for ctx in CONTEXTS:
                if b * ctx * 4 * hidden > 2**31 - 1:
                    # The prefill that builds the context would hold a qkvu of 2^31 elements or
                    # more, past the kernels' 32-bit indexing (tessel refuses it); the decode
                    # step itself never reads the context, so its cost is the same.
                    print(f"{cfg} tessel decode b={b} ctx={ctx}: skipped (prefill of {b * ctx} tokens)")
                    continue
                t = tessel_run(d, pkg, ctx, b, 65)
                t.update(batch=b, context=ctx)
                r["tessel"]["decode"].append(t)
                print(f"{cfg} tessel decode b={b} ctx={ctx}: {t['decode_tokens_per_s']:.0f} tokens/s, "
                      f"{t['us_per_step']:.0f} µs/step ({t['us_per_step'] / limit_us:.2f}× the weight read)", flush=True)
        if "--no-torch" not in sys.argv:
            args = [sys.executable, "bench/transnormer_torch.py", d, "--bench"] + (["--quick"] if QUICK else [])
            args += ["--compile"] if "--compile" in sys.argv else []
            r["torch"] = json.loads(sh(args)[0])
            for run in r["torch"]:
                for row in run.get("decode", []):
                    print(f"{cfg} torch {run['mode']} decode b={row['batch']} ctx={row['context']}: "
                          f"{row['tokens_per_s']:.0f} tokens/s", flush=True)
                for row in run.get("prefill", []):
                    print(f"{cfg} torch {run['mode']} prefill {row['n']}: {row['tokens_per_s']:.0f} tokens/s", flush=True)
        out["models"][cfg] = r
        out["records"] += records(cfg, r)
    path = f"bench/results/{out['date']}-{commit}-transnormer.json"
    json.dump(out, open(path, "w"), indent=1)
    print("wrote", path, f"(plot: {TESSEL} plot {path} -o {path[:-5]}.svg)")


if __name__ == "__main__":
    main()
