#!/usr/bin/python3
"""The Python side of test_libtorch_parity: one DDIM cell sampled by a plain PyTorch loop.

Cell: T = 1000 linear betas 1e-4..0.02, uniform skip S = 20 (t_i = i*50, descending), eta = 0.5, final step onto
alpha_bar = 1, B = 16 samples of 1x28x28, x_T and the per-step noise z_i drawn here with torch.randn
(Generator seed 1234). The update is skipstep's fused form written in the same order,
    x <- a*x + b*eps + s*z,   a = sqrt(ab_prev) * (1/sqrt(ab_t)),  b = sqrt(ab_prev) * (-sqrt(1-ab_t)/sqrt(ab_t))
                                                                      + sqrt(max(0, 1 - ab_prev - sigma^2)),
    sigma = eta * sqrt((1-ab_prev)/(1-ab_t) * (1 - ab_t/ab_prev)),  s = sigma,
with every coefficient computed in double (Python floats, same operation order as skipstep) and rounded once to
float32, and the update in float32 (x*a + eps*b, then + z*s; no FMA). Writes to OUT: x_T.f32, noise.f32
(S x B x 784), timesteps.i64, model.txt (the model path) and reference.f32 (the final samples), raw little-endian.
"""
import math, os, sys
import numpy as np
import torch

T, S, B, ETA, SEED = 1000, 20, 16, 0.5, 1234


def main():
    model_path, out = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    os.makedirs(out, exist_ok=True)
    betas = np.linspace(1e-4, 0.02, T)            # numpy's linspace, as skipstep::detail::numpy_linspace
    ab = np.cumprod(1.0 - betas)                   # sequential product in double, as noise_schedule::from_betas
    ts = [i * (T // S) for i in range(S)][::-1]
    g = torch.Generator().manual_seed(SEED)
    x_T = torch.randn(B, 1, 28, 28, generator=g)
    z = torch.randn(S, B, 1, 28, 28, generator=g)
    model = torch.jit.load(model_path)
    model.eval()
    x = x_T.clone()
    with torch.inference_mode():
        for i, t in enumerate(ts):
            a_t = float(ab[t])
            a_p = float(ab[ts[i + 1]]) if i + 1 < S else 1.0
            eps = model(x, torch.full((B,), t, dtype=torch.long))
            sa, sb = math.sqrt(a_t), math.sqrt(1.0 - a_t)
            x0_from_sample, x0_from_model = 1.0 / sa, -sb / sa
            beta_t = 1.0 - a_t
            if beta_t == 0.0 or a_t == a_p:
                sigma = 0.0
            else:
                var = ((1.0 - a_p) / beta_t) * (1.0 - a_t / a_p)
                sigma = math.sqrt(var) if var > 0.0 else 0.0
            sigma = 0.0 if ETA == 0.0 else ETA * sigma
            w0 = math.sqrt(a_p)
            we = math.sqrt(max(0.0, 1.0 - a_p - sigma * sigma))
            a = w0 * x0_from_sample + we * 0.0 + 0.0
            b = w0 * x0_from_model + we * 1.0
            a32 = torch.tensor(a, dtype=torch.float32)
            b32 = torch.tensor(b, dtype=torch.float32)
            x = x * a32 + eps * b32
            if sigma != 0.0:
                x = x + z[i] * torch.tensor(sigma, dtype=torch.float32)
    x_T.numpy().tofile(os.path.join(out, "x_T.f32"))
    z.numpy().tofile(os.path.join(out, "noise.f32"))
    np.asarray(ts, dtype=np.int64).tofile(os.path.join(out, "timesteps.i64"))
    x.numpy().tofile(os.path.join(out, "reference.f32"))
    with open(os.path.join(out, "model.txt"), "w") as f:
        f.write(os.path.abspath(model_path))
    print(f"parity_reference: S = {S}, eta = {ETA}, B = {B}, torch {torch.__version__}, wrote {out}")


if __name__ == "__main__":
    main()
