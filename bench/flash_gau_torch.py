"""FLASH mixed-chunk attention with GAU's gate in plain PyTorch: the same math as
dsl-examples/flash_gau.tsl (ALGORITHMS.md §5, docs/kernels/flash_gau.md), for bench/flash_gau.py.

One head: Z (B, N, S) gives four heads by per-dimension scale and offset, head_h = Z ⊙ γ_h + β_h
(γ, β f32 (4, S): quad query, quad key, lin query, lin key). For the chunk of G tokens holding t:
    quad_t = Σ_{s in the chunk (s ≤ t if causal)} relu(Q_quad,t · K_quad,s / G)² v_s
    lin_t  = Q_lin,t · Σ_{all s} K_lin,sᵀ v_s / N                 (non-causal)
    lin_t  = Q_lin,t · Σ_{s in earlier chunks} K_lin,sᵀ v_s / G   (causal)
    o_t    = u_t ⊙ (quad_t + lin_t)
N is padded to a multiple of G with z = v = 0 (a padded key multiplies a zero value row). Heads are
formed in f32 and rounded to the input dtype for the matrix products (as the kernel's operands);
the linear states are accumulated in f32.
"""
import torch


def flash_gau(z, gamma, beta, v, u, causal, G=256):
    B, N, S = z.shape
    E = v.shape[-1]
    pad = (-N) % G
    if pad:
        z = torch.nn.functional.pad(z, (0, 0, 0, pad))
        v = torch.nn.functional.pad(v, (0, 0, 0, pad))
    C = z.shape[1] // G
    heads = (z.float().unsqueeze(2) * gamma + beta).to(z.dtype)  # (B, Np, 4, S)
    qq, kq, ql, kl = (heads[:, :, i].reshape(B, C, G, S) for i in range(4))
    vc = v.reshape(B, C, G, E)
    w = torch.relu(torch.matmul(qq, kq.transpose(-1, -2)).float() / G) ** 2  # (B, C, G, G)
    if causal:
        w = w * torch.ones(G, G, device=z.device, dtype=torch.bool).tril()
    quad = torch.matmul(w.to(z.dtype), vc).float()
    if causal:
        kv = torch.matmul(kl.transpose(-1, -2), vc).float()  # (B, C, S, E) per chunk
        prefix = torch.cumsum(kv, dim=1) - kv  # exclusive: the chunks before
        lin = torch.matmul(ql.float(), prefix) / G
    else:
        kv = torch.matmul(kl.reshape(B, C * G, S).transpose(-1, -2), v).float()  # (B, S, E)
        lin = torch.matmul(ql.reshape(B, C * G, S).float(), kv).reshape(B, C, G, E) / N
    y = (quad + lin).reshape(B, C * G, E)[:, :N]
    return (u.float() * y).to(u.dtype)


def flash_gau_f64(z, gamma, beta, v, u, causal, G=256):
    """The dense definition in float64, token by token within chunks (for a CPU self-check)."""
    z, gamma, beta, v, u = (x.double() for x in (z, gamma, beta, v, u))
    B, N, S = z.shape
    heads = z.unsqueeze(2) * gamma + beta
    qq, kq, ql, kl = (heads[:, :, i] for i in range(4))
    o = torch.zeros_like(u)
    for t in range(N):
        c0 = t // G * G
        hi = t + 1 if causal else min(c0 + G, N)
        w = torch.relu(torch.einsum("bs,bns->bn", qq[:, t], kq[:, c0:hi]) / G) ** 2
        quad = torch.einsum("bn,bne->be", w, v[:, c0:hi])
        if causal:
            lin = torch.einsum("bs,bns,bne->be", ql[:, t], kl[:, :c0], v[:, :c0]) / G
        else:
            lin = torch.einsum("bs,bns,bne->be", ql[:, t], kl, v) / N
        o[:, t] = u[:, t] * (quad + lin)
    return o


if __name__ == "__main__":
    # CPU self-check: the chunked form against the dense definition, f32, ragged N, both masks.
    torch.manual_seed(0)
    for N, causal in [(1, True), (300, True), (300, False), (700, True), (512, False)]:
        z, v, u = torch.randn(2, N, 32), torch.randn(2, N, 16), torch.randn(2, N, 16)
        gamma, beta = torch.randn(4, 32) * 0.1, torch.randn(4, 32) * 0.1
        got = flash_gau(z, gamma, beta, v, u, causal)
        want = flash_gau_f64(z, gamma, beta, v, u, causal)
        err = ((got.double() - want).abs().max() / want.abs().max()).item()
        print(f"N={N} causal={causal}: max error / max {err:.1e}")
        assert err < 1e-5, err
    print("flash_gau_torch: ok")
