#!/usr/bin/env python3
"""Writes the hand-made seeds of tests/fuzz/corpus. Each seed spells out, byte by byte, the decisions
fuzz_sampler.cpp reads in order (reader::flag/byte/range/unit); bytes past the end read as 0.
Run from anywhere: python3 tests/fuzz/make_corpus.py  (rewrites tests/fuzz/corpus/seed_*).
The corpus's regress_* files are fuzzer reproducers of the (fixed) library bugs that the last test cases of
tests/unit/test_errors_more.cpp pin down; replaying the corpus keeps them fixed."""
import os
import struct


class Enc:
    def __init__(self):
        self.b = bytearray()

    def byte(self, v):
        self.b.append(v & 0xFF)
        return self

    def flag(self, on):
        return self.byte(1 if on else 0)

    def range(self, lo, hi, v):
        span = hi - lo
        if span == 0:
            return self
        nbytes = (span.bit_length() + 7) // 8
        self.b += (v - lo).to_bytes(nbytes, "big")
        return self

    def unit(self, u):  # reader::unit = bits(4) / (2^32 - 1)
        self.b += int(round(u * 4294967295)).to_bytes(4, "big")
        return self

    def raw_double(self, d):  # reader::any, case 0: raw bit pattern
        self.byte(0)
        self.b += struct.pack(">d", d)
        return self

    def special(self, index):  # reader::any, case 1: specials[index]
        return self.byte(1).byte(index)


def schedule(e, float_schedule, big_t, kind, extra=lambda e: None, rescale=False):
    e.flag(float_schedule)
    if big_t <= 64:
        e.flag(False).range(1, 64, big_t)
    else:
        e.flag(True).range(0, 1100, big_t)
    e.byte(kind)
    extra(e)
    e.byte(0 if rescale else 1)


def timesteps(e, big_t, n, factory, extra=lambda e: None, final_a0=False):
    e.byte(1)  # keep the schedule's T
    e.flag(True).range(1, max(1, min(big_t, 24)), n)
    e.byte(factory)
    extra(e)
    e.flag(final_a0)


def options(e, prediction, processing, proc_extra=lambda e: None, reeps=False, diffusers=False, num_samples=1,
            check_finite=False):
    e.byte(prediction).byte(processing)
    proc_extra(e)
    e.flag(reeps).flag(diffusers).range(0, 4, num_samples).flag(check_finite)


def sigma_pool(e, values):
    for v in values + [0.0] * (8 - len(values)):
        e.flag(False).unit(v / 0.5)
    e.range(1, 8, max(1, len(values)))


def tensor(e, n, x_scale, m_scale, pool, tanh_gain=None, poison=None, steps_cap=8, callback=False, writing=True,
           noise=True, seed=1234):
    e.range(0, 64, n).byte(x_scale).byte(m_scale)
    for i in range(n):
        e.unit((i * 0.618) % 1.0)
    e.range(1, 64, len(pool))
    for v in pool:
        e.unit(v)
    if tanh_gain is None:
        e.flag(False)
    else:
        e.flag(True).unit(tanh_gain)
    if poison is None:
        e.byte(1).range(0, 16, 0).range(0, 63, 0).byte(0)
    else:
        step, elem, kind = poison
        e.byte(0).range(0, 16, step).range(0, 63, elem).byte(kind)
    e.range(1, 16, steps_cap).flag(callback).flag(writing).byte(1 if noise else 0)
    e.byte(1)  # first_step: the default choice
    e.b += seed.to_bytes(8, "big")


seeds = {}

# 1. DDPM's linear T=1000, leading N=10, epsilon, DDIM eta=0, 16 doubles, a bounded tanh predictor.
e = Enc()
schedule(e, False, 1000, 0, lambda e: e.flag(True))
e.flag(False)  # double tensors
timesteps(e, 1000, 10, 0, lambda e: e.flag(True).range(0, 2, 1))
options(e, 0, 0)
sigma_pool(e, [])
e.byte(0).byte(5)  # ddim, eta{0}
tensor(e, 16, 1, 1, [0.2, 0.8, 0.5], tanh_gain=0.5)
seeds["seed_ddim_linear_eps"] = e

# 2. Scaled-linear rescaled to zero terminal SNR, trailing N=20, v-prediction, dynamic thresholding, DDIM eta=1,
#    float tensors, a callback, 4 samples.
e = Enc()
schedule(e, False, 1000, 1, lambda e: e.flag(True), rescale=True)
e.flag(True)  # float tensors
timesteps(e, 1000, 20, 1)
options(e, 1, 2, lambda e: e.flag(False).unit(0.9).unit(0.5), num_samples=4)
sigma_pool(e, [])
e.byte(0).byte(0).flag(True).special(2)  # ddim, eta{1.0}
tensor(e, 64, 2, 1, [0.1, 0.9, 0.4, 0.6], tanh_gain=0.3, callback=True, steps_cap=12)
seeds["seed_zero_snr_v_threshold"] = e

# 3. Cosine T=1000, linspace N=24, sample prediction, clip, DDPM fixed_large, 2 samples, returning predictor.
e = Enc()
schedule(e, False, 1000, 2, lambda e: e.flag(True))
e.flag(False)
timesteps(e, 1000, 24, 2)
options(e, 2, 1, lambda e: e.flag(False).unit(0.25), num_samples=2)
sigma_pool(e, [])
e.byte(1).byte(2)  # ddpm, fixed_large
tensor(e, 32, 1, 0, [0.3, 0.7], writing=False, steps_cap=16)
seeds["seed_cosine_sample_ddpm_clip"] = e

# 4. Explicit betas with a final beta of 1, a custom timestep list, a user sigma policy (lambda), float everything.
e = Enc()
e.flag(True).flag(False).range(1, 64, 1).byte(3)
betas = [0.01, 0.05, 0.1, 0.2, 0.3, 0.5]
e.range(0, 48, len(betas)).flag(False)
for b in betas:
    e.unit((b - 1e-6) / 0.999).flag(False)  # 1e-6 + unit*0.999 (the flag picks the 0.999 range)
e.flag(True)  # last beta = 1
e.byte(1)  # no rescale
e.flag(True)  # float tensors
e.byte(1).flag(False).range(0, 7, 4).byte(5)  # custom list, N drawn below
e.range(0, 24, 4).byte(1)
for t in [5, 3, 2, 0]:
    e.range(0, 8, t + 1)
e.flag(False)
options(e, 1, 0)
sigma_pool(e, [0.0, 0.2, 0.05])
e.byte(0).byte(3)  # ddim, lambda returning a double
tensor(e, 8, 1, 1, [0.5])
seeds["seed_betas_custom_lambda"] = e

# 5. DDIM inversion with check_finite and a NaN at step 2, element 3.
e = Enc()
schedule(e, False, 1000, 0, lambda e: e.flag(True))
e.flag(False)
timesteps(e, 1000, 10, 2)
options(e, 0, 0, check_finite=True)
sigma_pool(e, [])
e.byte(2)  # inverse
tensor(e, 16, 1, 1, [0.5, 0.25], poison=(2, 3, 0), steps_cap=10)
seeds["seed_inversion_check_finite_nan"] = e

# 6. A sigma policy (sigma_choice lambda) whose sigma^2 exceeds 1 - abar_s: a domain_error at construction.
e = Enc()
schedule(e, False, 1000, 0, lambda e: e.flag(True))
e.flag(False)
timesteps(e, 1000, 5, 3)
options(e, 0, 0)
e.flag(True).special(4)  # pool[0] = 2.0
for _ in range(7):
    e.flag(False).unit(0.0)
e.range(1, 8, 1)
e.byte(0).byte(4)
tensor(e, 4, 1, 1, [0.5])
seeds["seed_sigma_too_large"] = e

# 7. Generated betas, 4000 steps ending near 1 (abar down to ~1e-300): epsilon prediction on float tensors, the
#    overflow region the guarantee excludes.
e = Enc()
e.flag(False).flag(True).range(0, 1100, 1000).byte(4)
e.range(0, 4096, 4000).flag(False).unit(0.0001).flag(False).unit(0.4)
e.byte(1)
e.flag(True)
timesteps(e, 4000, 20, 1)
options(e, 0, 0)
sigma_pool(e, [])
e.byte(0).byte(5)
tensor(e, 16, 3, 2, [0.5, 0.9])
seeds["seed_tiny_abar_float"] = e

# 8. An explicit abar table, DDPM fixed_small_log, diffusers convention, check_finite, 3 samples of 4.
e = Enc()
e.flag(False).flag(False).range(1, 64, 1).byte(5)
e.range(0, 48, 12).flag(False)
for _ in range(12):
    e.unit(0.8)
e.byte(1)
e.flag(False)
timesteps(e, 12, 6, 4)
options(e, 0, 1, lambda e: e.flag(False).unit(0.5), diffusers=True, num_samples=3, check_finite=True)
sigma_pool(e, [])
e.byte(1).byte(1)
tensor(e, 12, 1, 1, [0.9, 0.1, 0.5], tanh_gain=0.9, callback=True)
seeds["seed_abar_table_ddpm_diffusers"] = e

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
os.makedirs(out, exist_ok=True)
for name, enc in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(bytes(enc.b))
print(f"wrote {len(seeds)} seeds to {out}")
