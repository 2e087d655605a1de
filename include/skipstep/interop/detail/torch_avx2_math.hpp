/// @file
/// torch's float32 Box–Muller block on x86-64 (`normal_fill_16_AVX2`, aten/src/ATen/native/cpu/
/// DistributionTemplates.h) with the Cephes-style `log256_ps` / `sincos256_ps` of aten/src/ATen/native/cpu/
/// avx_mathfun.h, evaluated in portable scalar code with the rounding torch's GCC build gives them.
///
/// Which operations are fused: torch 1.13 as Debian builds it (GCC 12, `-mavx2 -mfma`, fp-contract=fast)
/// fuses the multiply-add pairs of the log and cosine/sine polynomials into FMAs. The sequence below (one
/// rounding per `fused_multiply_add`, one per every other operation) is the one that reproduces all values of
/// tests/data/torch_rng (its README, section 4, lists it and shows each fusion is required). Every product
/// that is *not* fused here is exact (`z * 0.5`, `e * q2`) or feeds a fused operation's addend, so a compiler
/// contracting this code on its own cannot change a bit; the region is nevertheless compiled with contraction
/// off.
///
/// `fused_multiply_add` is std::fma where the target has hardware FMA (`__FMA__`, e.g. -march=native), and an
/// exact emulation otherwise (double product, TwoSum, round-to-odd, one final rounding to float: correctly
/// rounded because double carries more than 2·24 + 2 bits; Boldo & Melquiond, IEEE TC 57(4), 2008), so a
/// baseline x86-64 build neither calls libm's fma nor changes bits.
#pragma once

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#define SKIPSTEP_TORCH_STRICT_FP
#elif defined(__clang__)
#define SKIPSTEP_TORCH_STRICT_FP _Pragma("clang fp contract(off)")
#else
#define SKIPSTEP_TORCH_STRICT_FP
#endif

namespace skipstep::detail::torch_cpu {

/// avx_mathfun.h's `_PS256_CONST` values: double literals rounded to float, exactly as the header's float
/// arrays initialise them (p0..p8 = cephes_log_p0..8, q1/q2 = cephes_log_q1/q2, DP1..3 = minus_cephes_DP1..3,
/// sincof_p0..2, coscof_p0..2, cephes_FOPI = 4/π, cephes_SQRTHF = √½).
namespace cephes {
inline constexpr float sqrthf = static_cast<float>(0.707106781186547524);
inline constexpr float log_p0 = static_cast<float>(7.0376836292E-2);
inline constexpr float log_p1 = static_cast<float>(-1.1514610310E-1);
inline constexpr float log_p2 = static_cast<float>(1.1676998740E-1);
inline constexpr float log_p3 = static_cast<float>(-1.2420140846E-1);
inline constexpr float log_p4 = static_cast<float>(+1.4249322787E-1);
inline constexpr float log_p5 = static_cast<float>(-1.6668057665E-1);
inline constexpr float log_p6 = static_cast<float>(+2.0000714765E-1);
inline constexpr float log_p7 = static_cast<float>(-2.4999993993E-1);
inline constexpr float log_p8 = static_cast<float>(+3.3333331174E-1);
inline constexpr float log_q1 = static_cast<float>(-2.12194440e-4);
inline constexpr float log_q2 = static_cast<float>(0.693359375);
inline constexpr float minus_dp1 = static_cast<float>(-0.78515625);
inline constexpr float minus_dp2 = static_cast<float>(-2.4187564849853515625e-4);
inline constexpr float minus_dp3 = static_cast<float>(-3.77489497744594108e-8);
inline constexpr float sincof_p0 = static_cast<float>(-1.9515295891E-4);
inline constexpr float sincof_p1 = static_cast<float>(8.3321608736E-3);
inline constexpr float sincof_p2 = static_cast<float>(-1.6666654611E-1);
inline constexpr float coscof_p0 = static_cast<float>(2.443315711809948E-005);
inline constexpr float coscof_p1 = static_cast<float>(-1.388731625493765E-003);
inline constexpr float coscof_p2 = static_cast<float>(4.166664568298827E-002);
inline constexpr float fopi = static_cast<float>(1.27323954473516);
/// `_mm256_set1_ps(2.0f * c10::pi<double>)`: 2π as a double, then rounded to float (6.2831855f).
inline constexpr float two_pi = static_cast<float>(2.0f * 3.14159265358979323846);
inline constexpr std::uint32_t min_norm_pos_bits = 0x00800000u;  ///< FLT_MIN
inline constexpr std::uint32_t inv_mant_mask = ~0x7f800000u;
}  // namespace cephes

/// a·b + c with one rounding in float, emulated exactly without an FMA instruction: the double product a·b is
/// exact (24 + 24 bits < 53), TwoSum (Knuth) gives sum + err = a·b + c exactly, the sum is made round-to-odd,
/// then rounded to float once (correct because double has more than 2·24 + 2 bits; Boldo & Melquiond 2008).
[[nodiscard]] inline float fused_multiply_add_emulated(float a, float b, float c) noexcept {
  SKIPSTEP_TORCH_STRICT_FP
  const double product = static_cast<double>(a) * static_cast<double>(b);
  const double addend = static_cast<double>(c);
  const double sum = product + addend;
  const double addend_part = sum - product;
  const double err = (product - (sum - addend_part)) + (addend - addend_part);
  std::uint64_t bits = std::bit_cast<std::uint64_t>(sum);
  // Round to odd: an inexact sum with an even last bit moves one ulp towards the exact value (away from zero
  // when err has the sum's sign). sum is never 0 when err != 0 (a sum of two doubles that rounds to 0 is
  // exact).
  if (err != 0.0 && (bits & 1u) == 0)
    bits = ((err > 0.0) == (sum > 0.0)) ? bits + 1u : bits - 1u;
  return static_cast<float>(std::bit_cast<double>(bits));
}

/// a·b + c with one rounding in float (IEEE fusedMultiplyAdd): std::fma where the target has FMA instructions
/// (`__FMA__`), fused_multiply_add_emulated otherwise (same result, no libm call).
[[nodiscard]] inline float fused_multiply_add(float a, float b, float c) noexcept {
#if defined(__FMA__)
  return std::fma(a, b, c);
#else
  return fused_multiply_add_emulated(a, b, c);
#endif
}

/// `log256_ps` (avx_mathfun.h) for one lane, x > 0: exponent/mantissa split, mantissa folded into [√½, √2), a
/// degree-8 Cephes polynomial (Horner, fused), then e·ln2 added in two parts (q1 fused with y·z, q2 exact).
[[nodiscard]] inline float log256(float x) noexcept {
  SKIPSTEP_TORCH_STRICT_FP
  using namespace cephes;
  x = x > std::bit_cast<float>(min_norm_pos_bits) ? x
                                                  : std::bit_cast<float>(min_norm_pos_bits);  // _mm256_max_ps
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(x);
  float e = static_cast<float>(static_cast<std::int32_t>(bits >> 23) - 0x7f);
  e = e + 1.0f;
  x = std::bit_cast<float>((bits & inv_mant_mask) | std::bit_cast<std::uint32_t>(0.5f));
  if (x < sqrthf) {
    e = e - 1.0f;
    x = (x - 1.0f) + x;
  } else {
    x = (x - 1.0f) + 0.0f;  // the kernel adds the masked-out +0 (no effect on a non-zero x - 1)
  }
  const float z = x * x;
  float y = fused_multiply_add(log_p0, x, log_p1);
  y = fused_multiply_add(y, x, log_p2);
  y = fused_multiply_add(y, x, log_p3);
  y = fused_multiply_add(y, x, log_p4);
  y = fused_multiply_add(y, x, log_p5);
  y = fused_multiply_add(y, x, log_p6);
  y = fused_multiply_add(y, x, log_p7);
  y = fused_multiply_add(y, x, log_p8);
  y = y * x;
  y = fused_multiply_add(y, z, e * log_q1);
  y = y - z * 0.5f;
  x = x + y;
  return x + e * log_q2;
}

/// sin and cos of one lane.
struct sin_cos {
  float sin;
  float cos;
};

/// `sincos256_ps` (avx_mathfun.h) for one lane, x >= 0 (torch's θ = 2π·u2): octant j = (trunc(x·4/π) + 1) &
/// ~1, Cody–Waite reduction x - j·π/4 in three fused steps, the Cephes cosine and sine polynomials, then the
/// octant's swap and signs, selected with the kernel's masked adds.
[[nodiscard]] inline sin_cos sincos256(float x) noexcept {
  SKIPSTEP_TORCH_STRICT_FP
  using namespace cephes;
  const std::int32_t j = (static_cast<std::int32_t>(x * fopi) + 1) & ~1;  // _mm256_cvttps_epi32 truncates
  const float y = static_cast<float>(j);
  x = fused_multiply_add(y, minus_dp1, x);
  x = fused_multiply_add(y, minus_dp2, x);
  x = fused_multiply_add(y, minus_dp3, x);
  const float z = x * x;
  float c = fused_multiply_add(coscof_p0, z, coscof_p1);
  c = fused_multiply_add(c, z, coscof_p2);
  c = c * z;
  c = fused_multiply_add(c, z, -(z * 0.5f));
  c = c + 1.0f;
  float s = fused_multiply_add(sincof_p0, z, sincof_p1);
  s = fused_multiply_add(s, z, sincof_p2);
  s = s * z;
  s = fused_multiply_add(s, x, x);
  // poly_mask = (j & 2) == 0: sin takes the sine polynomial and cos the cosine one, else swapped. The kernel
  // selects with and/andnot and adds the two halves, one of which is +0.
  const bool sine_first = (j & 2) == 0;
  const float sin_part = sine_first ? s : 0.0f, cos_part = sine_first ? 0.0f : c;
  float sin_value = cos_part + sin_part;
  float cos_value = (c - cos_part) + (s - sin_part);
  const std::uint32_t sin_sign = (static_cast<std::uint32_t>(j) & 4u) << 29;
  const std::uint32_t cos_sign = (~static_cast<std::uint32_t>(j - 2) & 4u) << 29;
  sin_value = std::bit_cast<float>(std::bit_cast<std::uint32_t>(sin_value) ^ sin_sign);
  cos_value = std::bit_cast<float>(std::bit_cast<std::uint32_t>(cos_value) ^ cos_sign);
  return {sin_value, cos_value};
}

/// `normal_fill_16_AVX2` with mean 0 and std 1, in place on d[0..16) holding uniforms in [0, 1): for j < 8,
/// u1 = 1 - d[j], u2 = d[8 + j], r = √(-2·log256(u1)), θ = 2π·u2 (float 2π), d[j] = r·cos θ, d[8 + j] = r·sin
/// θ, each stored as fma(n, 1, 0) = n + 0 (which turns -0 into +0).
inline void normal_block16(float* d) noexcept {
  SKIPSTEP_TORCH_STRICT_FP
  for (std::size_t j = 0; j < 8; ++j) {
    const float u1 = 1.0f - d[j];
    const float u2 = d[j + 8];
    const float radius = std::sqrt(-2.0f * log256(u1));
    const float theta = cephes::two_pi * u2;
    const sin_cos sc = sincos256(theta);
    d[j] = radius * sc.cos + 0.0f;
    d[j + 8] = radius * sc.sin + 0.0f;
  }
}

}  // namespace skipstep::detail::torch_cpu

#undef SKIPSTEP_TORCH_STRICT_FP
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif
