/// @file
/// torch's float32 Box–Muller blocks with AVX2 + FMA intrinsics, chosen at run time on CPUs that have both:
/// the instruction sequence of `normal_fill_16_AVX2` / `log256_ps` / `sincos256_ps`
/// (aten/src/ATen/native/cpu/ DistributionTemplates.h, avx_mathfun.h) with the FMAs torch's GCC build
/// contains, written out explicitly
/// (`_mm256_fmadd_ps` exactly where torch_avx2_math.hpp's portable reference fuses, plain mul/add elsewhere,
/// the region compiled with contraction off). The portable reference is the specification:
/// tests/unit/test_torch_rng compares the two on many blocks, and both against torch's stored values.
///
/// Like detail/simd_normal.hpp: `__attribute__((target("avx2,fma")))` functions, used only after
/// `__builtin_cpu_supports` says so; GCC and clang on x86-64 only; SKIPSTEP_NO_RUNTIME_DISPATCH compiles only
/// the portable path.
#pragma once

#include <cstddef>
#include <cstdint>

#include "skipstep/interop/detail/torch_avx2_math.hpp"

#if !defined(SKIPSTEP_NO_RUNTIME_DISPATCH) && (defined(__x86_64__) || defined(_M_X64)) && \
    (defined(__GNUC__) || defined(__clang__)) && !defined(__INTEL_COMPILER)
#define SKIPSTEP_TORCH_X86_DISPATCH 1
#include <immintrin.h>
#else
#define SKIPSTEP_TORCH_X86_DISPATCH 0
#endif

#if SKIPSTEP_TORCH_X86_DISPATCH

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#define SKIPSTEP_TORCH_SIMD_STRICT_FP
#else
#define SKIPSTEP_TORCH_SIMD_STRICT_FP _Pragma("clang fp contract(off)")
#endif
#define SKIPSTEP_TORCH_TARGET inline __attribute__((target("avx2,fma"), always_inline))
// Out of line so that the kernel always runs under this header's fp-contract setting (see simd_normal.hpp).
#define SKIPSTEP_TORCH_ENTRY inline __attribute__((target("avx2,fma"), noinline))

namespace skipstep::detail::torch_cpu {

/// True when the CPU (and OS) support AVX2 and FMA (detected once).
inline bool cpu_has_avx2_fma() noexcept {
  static const bool supported = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return supported;
}

/// log256_ps on 8 lanes (see torch_avx2_math.hpp: log256).
SKIPSTEP_TORCH_TARGET __m256 log256_avx2(__m256 x) noexcept {
  SKIPSTEP_TORCH_SIMD_STRICT_FP
  using namespace cephes;
  const __m256 one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f);
  x = _mm256_max_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(min_norm_pos_bits))));
  __m256i imm0 = _mm256_srli_epi32(_mm256_castps_si256(x), 23);
  x = _mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(inv_mant_mask))));
  x = _mm256_or_ps(x, half);
  imm0 = _mm256_sub_epi32(imm0, _mm256_set1_epi32(0x7f));
  __m256 e = _mm256_add_ps(_mm256_cvtepi32_ps(imm0), one);
  const __m256 mask = _mm256_cmp_ps(x, _mm256_set1_ps(sqrthf), _CMP_LT_OS);
  const __m256 tmp = _mm256_and_ps(x, mask);
  x = _mm256_sub_ps(x, one);
  e = _mm256_sub_ps(e, _mm256_and_ps(one, mask));
  x = _mm256_add_ps(x, tmp);
  const __m256 z = _mm256_mul_ps(x, x);
  __m256 y = _mm256_fmadd_ps(_mm256_set1_ps(log_p0), x, _mm256_set1_ps(log_p1));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(log_p2));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(log_p3));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(log_p4));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(log_p5));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(log_p6));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(log_p7));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(log_p8));
  y = _mm256_mul_ps(y, x);
  y = _mm256_fmadd_ps(y, z, _mm256_mul_ps(e, _mm256_set1_ps(log_q1)));
  y = _mm256_sub_ps(y, _mm256_mul_ps(z, half));
  x = _mm256_add_ps(x, y);
  return _mm256_add_ps(x, _mm256_mul_ps(e, _mm256_set1_ps(log_q2)));
}

/// sincos256_ps on 8 lanes, x >= 0 (see torch_avx2_math.hpp: sincos256).
SKIPSTEP_TORCH_TARGET void sincos256_avx2(__m256 x, __m256& sin_out, __m256& cos_out) noexcept {
  SKIPSTEP_TORCH_SIMD_STRICT_FP
  using namespace cephes;
  __m256i j = _mm256_cvttps_epi32(_mm256_mul_ps(x, _mm256_set1_ps(fopi)));
  j = _mm256_and_si256(_mm256_add_epi32(j, _mm256_set1_epi32(1)), _mm256_set1_epi32(~1));
  const __m256 y = _mm256_cvtepi32_ps(j);
  const __m256 swap_sign_sin =
      _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(j, _mm256_set1_epi32(4)), 29));
  const __m256 poly_mask = _mm256_castsi256_ps(
      _mm256_cmpeq_epi32(_mm256_and_si256(j, _mm256_set1_epi32(2)), _mm256_setzero_si256()));
  x = _mm256_fmadd_ps(y, _mm256_set1_ps(minus_dp1), x);
  x = _mm256_fmadd_ps(y, _mm256_set1_ps(minus_dp2), x);
  x = _mm256_fmadd_ps(y, _mm256_set1_ps(minus_dp3), x);
  const __m256 sign_cos = _mm256_castsi256_ps(_mm256_slli_epi32(
      _mm256_andnot_si256(_mm256_sub_epi32(j, _mm256_set1_epi32(2)), _mm256_set1_epi32(4)), 29));
  const __m256 z = _mm256_mul_ps(x, x);
  __m256 c = _mm256_fmadd_ps(_mm256_set1_ps(coscof_p0), z, _mm256_set1_ps(coscof_p1));
  c = _mm256_fmadd_ps(c, z, _mm256_set1_ps(coscof_p2));
  c = _mm256_mul_ps(c, z);
  c = _mm256_fmsub_ps(c, z, _mm256_mul_ps(z, _mm256_set1_ps(0.5f)));
  c = _mm256_add_ps(c, _mm256_set1_ps(1.0f));
  __m256 s = _mm256_fmadd_ps(_mm256_set1_ps(sincof_p0), z, _mm256_set1_ps(sincof_p1));
  s = _mm256_fmadd_ps(s, z, _mm256_set1_ps(sincof_p2));
  s = _mm256_mul_ps(s, z);
  s = _mm256_fmadd_ps(s, x, x);
  const __m256 sin_part = _mm256_and_ps(poly_mask, s), cos_part = _mm256_andnot_ps(poly_mask, c);
  const __m256 sin_value = _mm256_add_ps(cos_part, sin_part);
  const __m256 cos_value = _mm256_add_ps(_mm256_sub_ps(c, cos_part), _mm256_sub_ps(s, sin_part));
  sin_out = _mm256_xor_ps(sin_value, swap_sign_sin);
  cos_out = _mm256_xor_ps(cos_value, sign_cos);
}

/// normal_block16 (torch_avx2_math.hpp) on `blocks` consecutive blocks of 16 floats, in place.
SKIPSTEP_TORCH_ENTRY void normal_blocks16_avx2(float* d, std::size_t blocks) noexcept {
  SKIPSTEP_TORCH_SIMD_STRICT_FP
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  const __m256 minus_two = _mm256_set1_ps(-2.0f), two_pi = _mm256_set1_ps(cephes::two_pi);
  for (std::size_t b = 0; b < blocks; ++b, d += 16) {
    const __m256 u1 = _mm256_sub_ps(one, _mm256_loadu_ps(d));
    const __m256 u2 = _mm256_loadu_ps(d + 8);
    const __m256 radius = _mm256_sqrt_ps(_mm256_mul_ps(minus_two, log256_avx2(u1)));
    const __m256 theta = _mm256_mul_ps(two_pi, u2);
    __m256 sin_theta, cos_theta;
    sincos256_avx2(theta, sin_theta, cos_theta);
    _mm256_storeu_ps(d, _mm256_fmadd_ps(_mm256_mul_ps(radius, cos_theta), one, zero));
    _mm256_storeu_ps(d + 8, _mm256_fmadd_ps(_mm256_mul_ps(radius, sin_theta), one, zero));
  }
}

}  // namespace skipstep::detail::torch_cpu

#undef SKIPSTEP_TORCH_TARGET
#undef SKIPSTEP_TORCH_ENTRY
#undef SKIPSTEP_TORCH_SIMD_STRICT_FP
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

#endif  // SKIPSTEP_TORCH_X86_DISPATCH

namespace skipstep::detail::torch_cpu {

/// Which implementation normal_blocks16 uses.
enum class block_kernel : int { portable = 0, avx2_fma = 1 };

/// The kernel normal_blocks16 picks on this machine: AVX2 + FMA when available, else the portable reference.
inline block_kernel best_block_kernel() noexcept {
#if SKIPSTEP_TORCH_X86_DISPATCH
  if (cpu_has_avx2_fma())
    return block_kernel::avx2_fma;
#endif
  return block_kernel::portable;
}

/// normal_block16 on `blocks` consecutive blocks of 16 floats at d, in place, with `kernel` (falls back to
/// the portable code when that kernel is not compiled in or not supported). Both give the same bits.
inline void normal_blocks16(float* d, std::size_t blocks,
                            block_kernel kernel = best_block_kernel()) noexcept {
#if SKIPSTEP_TORCH_X86_DISPATCH
  if (kernel == block_kernel::avx2_fma && cpu_has_avx2_fma()) {
    normal_blocks16_avx2(d, blocks);
    return;
  }
#else
  (void)kernel;
#endif
  for (std::size_t b = 0; b < blocks; ++b)
    normal_block16(d + 16 * b);
}

}  // namespace skipstep::detail::torch_cpu
