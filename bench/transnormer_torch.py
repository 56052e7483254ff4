"""TransNormerLLM in PyTorch, written from ALGORITHMS.md §2–3 (not from tessel's kernels): the anchor
tessel's model is checked and timed against. Loads the same model directory (config.json +
safetensors, one file or sharded) that `tessel model init --random-weights` writes or a release has.

    python3 bench/transnormer_torch.py MODEL_DIR --tokens 1,2,3 --max-new-tokens 32
        greedy tokens (one line each, like `tessel generate`) and the first step's logits
        (--dump-logits FILE.json: {"tokens": [...], "logits": [...]} of the last prompt position)
    python3 bench/transnormer_torch.py MODEL_DIR --bench [--compile] [--quick]
        prefill tokens/s (prompts 2k, 8k, 32k) and decode tokens/s (batch 1, 16, 64 × context 1k…64k),
        eager (and torch.compile with --compile), as JSON on stdout.

bf16 weights and activations, f32 accumulation and residual stream, as tessel runs it. Prefill uses the
block form of Lightning Attention (256-token blocks, intra-block masked product + inter-block state);
decode the robust recurrence S ← λS + kᵀv, o = qS (Alg. 4).
"""
import json, math, os, struct, sys, time

import torch

DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[a:b]), dtype=DTYPES[info["dtype"]])
        out[name] = t.reshape(info["shape"])
    return out


def load_dir(d):
    cfg = json.load(open(os.path.join(d, "config.json")))
    index = os.path.join(d, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else ["model.safetensors"]
    w = {}
    for f in files:
        w.update(read_safetensors(os.path.join(d, f)))
    return cfg, w


def alibi_slopes(h):
    def p2(n):
        return [2 ** (-8 * i / n) for i in range(1, n + 1)]
    if h & (h - 1) == 0:
        return p2(h)
    lo = 1 << (h.bit_length() - 1)
    return p2(lo) + p2(2 * lo)[0::2][: h - lo]


def srms(x):
    x = x.float()
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)


class Model:
    def __init__(self, cfg, w, device):
        self.L, self.D = cfg.get("decoder_layers", 24), cfg.get("decoder_embed_dim", 1024)
        self.H, self.hid = cfg.get("decoder_attention_heads", 8), cfg.get("hidden_dim", 1024)
        self.hd = self.hid // self.H
        self.V = cfg.get("vocab_size", 64000)
        lrpe = cfg.get("linear_use_lrpe_list", []) or [0] * self.L
        self.lrpe = [bool(x) for x in lrpe]
        self.scale = 1.0 if cfg.get("no_scale_embedding", False) else math.sqrt(self.D)
        bf = lambda n: w[n].to(device, torch.bfloat16)
        self.embed, self.head = bf("model.embed_tokens.weight"), bf("lm_head.weight")
        self.layers = []
        for l in range(self.L):
            p = f"model.layers.{l}."
            th = w.get(p + "token_mixer.lrpe.theta")
            self.layers.append(dict(
                qkvu=bf(p + "token_mixer.qkvu_proj.weight"), out=bf(p + "token_mixer.out_proj.weight"),
                l1=bf(p + "channel_mixer.l1.weight"), l2=bf(p + "channel_mixer.l2.weight"),
                l3=bf(p + "channel_mixer.l3.weight"),
                theta=None if th is None else th.float().reshape(self.H, 1, self.hd).to(device)))
        base = torch.tensor(alibi_slopes(self.H), dtype=torch.float64)
        self.slopes = []
        for l in range(self.L):
            f = 1 + 1e-5 if self.L == 1 else 1 - l / (self.L - 1) + 1e-5
            self.slopes.append((base * f).float().to(device))

    def qkvu(self, lw, x, pos):
        """x (B, N, D) f32 residual → q, k (B, H, N, Dk), v (B, H, N, hd), u (B, N, hid); pos (B, N)."""
        B, N, _ = x.shape
        h = srms(x).to(torch.bfloat16)
        q, k, v, u = (h @ lw["qkvu"].T).chunk(4, dim=-1)
        sh = lambda t: t.reshape(B, N, self.H, self.hd).transpose(1, 2)
        q, k, v = sh(torch.nn.functional.silu(q.float())), sh(torch.nn.functional.silu(k.float())), sh(v)
        if lw["theta"] is not None:
            ang = lw["theta"][None] * pos[:, None, :, None].float()  # (B, H, N, hd)
            c, s = torch.cos(ang), torch.sin(ang)
            q, k = torch.cat([q * c, q * s], -1), torch.cat([k * c, k * s], -1)
        return q.to(torch.bfloat16), k.to(torch.bfloat16), v, u

    def mix_out(self, lw, x, o, u):
        B, H, N, _ = o.shape
        o = o.transpose(1, 2).reshape(B, N, self.hid)
        y = (srms(o) * u.float()).to(torch.bfloat16)
        x = x + (y @ lw["out"].T).float()
        h = srms(x).to(torch.bfloat16)
        g = ((h @ lw["l1"].T).float() * (h @ lw["l2"].T).float()).to(torch.bfloat16)
        return x + (g @ lw["l3"].T).float()

    def lightning(self, q, k, v, s, blk=256):
        """Block form of o_t = Σ_{s≤t} λ^{t−s} (q_t·k_s) v_s; returns o and the final state."""
        B, H, N, Dk = q.shape
        E = v.shape[-1]
        lam = s.view(1, H, 1, 1)
        state = torch.zeros(B, H, Dk, E, device=q.device, dtype=torch.float32)
        out = torch.empty(B, H, N, E, device=q.device, dtype=torch.bfloat16)
        for t0 in range(0, N, blk):
            qb, kb, vb = q[:, :, t0:t0 + blk].float(), k[:, :, t0:t0 + blk].float(), v[:, :, t0:t0 + blk].float()
            m = qb.shape[2]
            i = torch.arange(m, device=q.device, dtype=torch.float32)
            diff = i[:, None] - i[None, :]
            mask = torch.where(diff >= 0, torch.exp(-lam * diff.clamp(min=0)), torch.zeros((), device=q.device))
            o = ((qb @ kb.transpose(-1, -2)) * mask) @ vb
            o = o + (qb * torch.exp(-lam * (i[:, None] + 1))) @ state
            out[:, :, t0:t0 + m] = o.to(torch.bfloat16)
            state = torch.exp(-lam * m) * state + (kb * torch.exp(-lam * (m - 1 - i[:, None]))).transpose(-1, -2) @ vb
        return out, state

    @torch.no_grad()
    def prefill(self, tokens):
        """tokens (B, N) → last-position logits (B, V) f32 and per-layer states."""
        B, N = tokens.shape
        x = self.embed[tokens].float() * self.scale
        pos = torch.arange(N, device=tokens.device)[None].expand(B, N)
        states = []
        for l, lw in enumerate(self.layers):
            q, k, v, u = self.qkvu(lw, x, pos)
            o, st = self.lightning(q, k, v, self.slopes[l])
            states.append(st)
            x = self.mix_out(lw, x, o, u)
        return (srms(x[:, -1]).to(torch.bfloat16) @ self.head.T).float(), states

    @torch.no_grad()
    def step(self, token, pos, states):
        """One token per sequence: token (B,), pos (B,) → logits (B, V); states advanced in place."""
        x = self.embed[token][:, None].float() * self.scale
        for l, lw in enumerate(self.layers):
            q, k, v, u = self.qkvu(lw, x, pos[:, None])
            lam = torch.exp(-self.slopes[l]).view(1, -1, 1, 1)
            st = states[l]
            st.mul_(lam).add_(k[:, :, 0, :, None].float() * v[:, :, 0, None, :].float())
            o = (q[:, :, 0, None, :].float() @ st).to(torch.bfloat16)  # (B, H, 1, E)
            x = self.mix_out(lw, x, o, u)
        return (srms(x[:, 0]).to(torch.bfloat16) @ self.head.T).float()


def timed(fn, reps):
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / reps


def bench(m, quick, compiled):
    dev = "cuda"
    res = {"device": torch.cuda.get_device_name(), "mode": "torch.compile" if compiled else "eager",
           "prefill": [], "decode": []}
    step = torch.compile(m.step) if compiled else m.step
    for n in ([2048] if quick else [2048, 8192, 32768]):
        toks = torch.randint(0, m.V, (1, n), device=dev)
        t = timed(lambda: m.prefill(toks), 2)
        res["prefill"].append({"n": n, "tokens_per_s": n / t})
    for b in ([1, 16] if quick else [1, 16, 64]):
        for ctx in ([1024] if quick else [1024, 4096, 16384, 65536]):
            # The state after ctx tokens: its contents do not change the cost of a step.
            states = [torch.randn(b, m.H, (2 if m.lrpe[l] else 1) * m.hd, m.hd, device=dev) * 0.01 for l in range(m.L)]
            tok = torch.randint(0, m.V, (b,), device=dev)
            pos = torch.full((b,), ctx, device=dev)
            t = timed(lambda: step(tok, pos, states), 20)
            res["decode"].append({"batch": b, "context": ctx, "tokens_per_s": b / t, "us_per_step": t * 1e6})
    return res


def main():
    d = sys.argv[1]
    arg = lambda k, dflt=None: sys.argv[sys.argv.index(k) + 1] if k in sys.argv else dflt
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    cfg, w = load_dir(d)
    m = Model(cfg, w, dev)
    if "--bench" in sys.argv:
        runs = [bench(m, "--quick" in sys.argv, False)]
        if "--compile" in sys.argv:
            try:
                runs.append(bench(m, "--quick" in sys.argv, True))
            except Exception as e:  # torch.compile is optional: say why it did not run
                runs.append({"mode": "torch.compile", "error": str(e)[:500]})
        print(json.dumps(runs, indent=1))
        return
    prompt = [int(t) for t in arg("--tokens").split(",")]
    toks = torch.tensor([prompt], device=dev)
    logits, states = m.prefill(toks)
    if arg("--dump-logits"):
        json.dump({"tokens": prompt, "logits": logits[0].tolist()}, open(arg("--dump-logits"), "w"))
    nxt = logits.argmax(-1)
    pos = torch.tensor([len(prompt)], device=dev)
    for _ in range(int(arg("--max-new-tokens", "32"))):
        print(int(nxt[0]), flush=True)
        logits = m.step(nxt, pos, states)
        nxt, pos = logits.argmax(-1), pos + 1


if __name__ == "__main__":
    main()
