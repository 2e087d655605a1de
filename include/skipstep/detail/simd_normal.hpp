/// @file
/// Explicit-SIMD kernels of the normal generator (Philox4x32-10 + the Box–Muller of normal_transform.hpp) for x86-64
/// AVX2 (8 blocks per iteration) and AVX-512F (16 blocks per iteration), chosen at run time.
///
/// Bits: every kernel evaluates exactly the operations of the scalar reference (detail::box_muller, detail::
/// philox4x32_10) lane by lane: the same IEEE single-precision add/sub/mul/div in the same order, the same integer
/// bit manipulations, no FMA (the target attributes below do not enable FMA, and the region is compiled with
/// fp-contract off for builds that enable FMA globally). Philox is integer arithmetic and therefore exact. Two
/// replacements are exact by construction: AVX-512 `vcvtudq2ps` (a correctly rounded u32 -> float conversion) for the
/// reference's hi*65536 + lo sum (also correctly rounded), and blends for the reference's bitwise selects. The unit
/// tests (tests/unit/test_kernels.cpp) compare every path with the scalar reference bit for bit.
///
/// Portability: the kernels are `inline` functions with `__attribute__((target(...)))`, used only after
/// `__builtin_cpu_supports` says the CPU (and OS) supports the ISA; they are compiled on GCC and clang for x86-64 and
/// absent elsewhere, where the portable loops of normal_transform.hpp are used. No global constructor, no
/// -march flag needed: a user's default x86-64 build gets the fast path on capable CPUs. Define
/// SKIPSTEP_NO_RUNTIME_DISPATCH to compile only the portable path.
#pragma once

#include <cstddef>
#include <cstdint>

#include "philox.hpp"

#if !defined(SKIPSTEP_NO_RUNTIME_DISPATCH) && (defined(__x86_64__) || defined(_M_X64)) && \
    (defined(__GNUC__) || defined(__clang__)) && !defined(__INTEL_COMPILER)
#define SKIPSTEP_X86_DISPATCH 1
#include <immintrin.h>
#else
#define SKIPSTEP_X86_DISPATCH 0
#endif

#if SKIPSTEP_X86_DISPATCH

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
// GCC 12's AVX-512 intrinsics pass _mm512_undefined_*() (a self-initialized variable) as the unused merge source and
// then warn about it when inlined (GCC PR 105593, fixed in 13): a false positive, silenced for this header.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#define SKIPSTEP_SIMD_STRICT_FP
#else
#define SKIPSTEP_SIMD_STRICT_FP _Pragma("clang fp contract(off)")
#endif

#define SKIPSTEP_TARGET_AVX2 __attribute__((target("avx2")))
#define SKIPSTEP_TARGET_AVX512 __attribute__((target("avx512f")))
#define SKIPSTEP_ALWAYS_INLINE inline __attribute__((always_inline))
// The entry points are never inlined: GCC applies a function's fp-contract setting where the code is finally
// compiled, so an entry point inlined into a caller built with FMA and -ffp-contract=fast (e.g. -march=native) could
// fuse a*b + c and change bits. Out of line, the kernels always run under this header's fp-contract=off.
#define SKIPSTEP_NOINLINE inline __attribute__((noinline))

namespace skipstep::detail {

/// Instruction sets the kernels can use, best last.
enum class simd_level : int { portable = 0, avx2 = 1, avx512 = 2 };

/// The best level this CPU supports, detected once (thread-safe static; one instance across translation units).
inline simd_level detected_simd_level() noexcept {
  static const simd_level level = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return simd_level::avx512;
    if (__builtin_cpu_supports("avx2")) return simd_level::avx2;
    return simd_level::portable;
  }();
  return level;
}

// Constants of the float Box–Muller (normal_transform.hpp, box_muller_traits<float>), repeated as plain values so the
// kernels below need nothing from that header (which includes this one).
namespace simd_consts {
inline constexpr std::uint32_t near_one = 3037000500u;
inline constexpr std::uint32_t one_bits = 0x3F800000u;
inline constexpr std::uint32_t sqrt_half_bits = 0x3F3504F3u;
inline constexpr float two_pow_m32 = 0x1p-32f;
inline constexpr float turn_per_unit = 0x1.921FB6p-30f;
inline constexpr float ln2_hi = 0.693359375f;
inline constexpr float ln2_lo = -2.12194440e-4f;
}  // namespace simd_consts

// ------------------------------------------------------------------------------------------------------------------
// AVX-512F: 16 Philox blocks (64 normals) per iteration.
// ------------------------------------------------------------------------------------------------------------------
namespace simd_avx512 {

inline constexpr std::size_t lanes = 16;

/// hi and lo 32-bit halves of m * x for the 16 lanes of x (two vpmuludq on even / odd lanes, two masked shuffles).
SKIPSTEP_TARGET_AVX512 SKIPSTEP_ALWAYS_INLINE void mulhilo(__m512i x, __m512i m, __m512i& hi, __m512i& lo) noexcept {
  const __m512i even = _mm512_mul_epu32(x, m);                         // lanes 0,2,..: 64-bit products
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(x, 32), m);  // lanes 1,3,..
  // hi: even lanes take dword 1 of `even` (swap within qword), odd lanes take dword 1 of `odd` as is.
  hi = _mm512_mask_shuffle_epi32(odd, static_cast<__mmask16>(0x5555), even, _MM_PERM_CDAB);
  // lo: even lanes take dword 0 of `even` as is, odd lanes take dword 0 of `odd` (swapped up).
  lo = _mm512_mask_shuffle_epi32(even, static_cast<__mmask16>(0xAAAA), odd, _MM_PERM_CDAB);
}

/// Philox4x32-10 of the 16 counters (c0 + lane, c1, c2, c3); words of lane i in w0[i], w1[i], w2[i], w3[i].
SKIPSTEP_TARGET_AVX512 SKIPSTEP_ALWAYS_INLINE void philox16(const philox_round_keys& ks, std::uint32_t c0,
                                                            std::uint32_t c1, std::uint32_t c2, std::uint32_t c3,
                                                            __m512i& w0, __m512i& w1, __m512i& w2,
                                                            __m512i& w3) noexcept {
  const __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  __m512i x0 = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(c0)), iota);
  __m512i x1 = _mm512_set1_epi32(static_cast<int>(c1));
  __m512i x2 = _mm512_set1_epi32(static_cast<int>(c2));
  __m512i x3 = _mm512_set1_epi32(static_cast<int>(c3));
  const __m512i m0 = _mm512_set1_epi32(static_cast<int>(philox_m0));
  const __m512i m1 = _mm512_set1_epi32(static_cast<int>(philox_m1));
  for (int r = 0; r < philox_rounds; ++r) {
    __m512i hi0, lo0, hi1, lo1;
    mulhilo(x0, m0, hi0, lo0);
    mulhilo(x2, m1, hi1, lo1);
    const __m512i k0 = _mm512_set1_epi32(static_cast<int>(ks.k0[static_cast<std::size_t>(r)]));
    const __m512i k1 = _mm512_set1_epi32(static_cast<int>(ks.k1[static_cast<std::size_t>(r)]));
    x0 = _mm512_ternarylogic_epi32(hi1, x1, k0, 0x96);  // hi1 ^ x1 ^ k0
    x2 = _mm512_ternarylogic_epi32(hi0, x3, k1, 0x96);  // hi0 ^ x3 ^ k1
    x1 = lo1;
    x3 = lo0;
  }
  w0 = x0;
  w1 = x1;
  w2 = x2;
  w3 = x3;
}

/// Box–Muller (detail::box_muller<float>) of the 16 word pairs (a, b): z0 = r cos, z1 = r sin. Call it only from a
/// function compiled with fp-contract off (as normal_blocks_f32 is): AVX-512F has FMA, and GCC contracts in the
/// function the code is inlined into.
SKIPSTEP_TARGET_AVX512 SKIPSTEP_ALWAYS_INLINE void box_muller16(__m512i a, __m512i b, __m512& z0,
                                                                __m512& z1) noexcept {
  SKIPSTEP_SIMD_STRICT_FP
  namespace k = simd_consts;
  const __m512 half = _mm512_set1_ps(0.5f), p32 = _mm512_set1_ps(k::two_pow_m32), one = _mm512_set1_ps(1.0f);
  // radius
  const __m512 u = _mm512_mul_ps(_mm512_add_ps(_mm512_cvtepu32_ps(a), half), p32);
  const __m512i nota = _mm512_andnot_si512(a, _mm512_set1_epi32(0x7FFFFFFF));
  const __m512 v = _mm512_mul_ps(_mm512_add_ps(_mm512_cvtepi32_ps(nota), half), p32);
  const __m512i ix = _mm512_castps_si512(u);
  const __m512i tmp = _mm512_add_epi32(ix, _mm512_set1_epi32(static_cast<int>(k::one_bits - k::sqrt_half_bits)));
  const __m512i kb = _mm512_srli_epi32(tmp, 23);
  const __m512 m = _mm512_castsi512_ps(_mm512_add_epi32(_mm512_sub_epi32(ix, _mm512_slli_epi32(kb, 23)),
                                                        _mm512_set1_epi32(static_cast<int>(k::one_bits))));
  const __mmask16 near = _mm512_cmpge_epu32_mask(a, _mm512_set1_epi32(static_cast<int>(k::near_one)));
  const __m512 negv = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(v), _mm512_set1_epi32(INT32_MIN)));
  const __m512 num = _mm512_mask_blend_ps(near, _mm512_sub_ps(m, one), negv);
  const __m512 den = _mm512_mask_blend_ps(near, _mm512_add_ps(m, one), _mm512_sub_ps(_mm512_set1_ps(2.0f), v));
  const __m512 kf = _mm512_sub_ps(_mm512_cvtepi32_ps(kb), _mm512_set1_ps(127.0f));
  const __m512 s = _mm512_div_ps(num, den);
  const __m512 z = _mm512_mul_ps(s, s);
  __m512 t = _mm512_add_ps(_mm512_set1_ps(2.0f / 7.0f), _mm512_mul_ps(z, _mm512_set1_ps(2.0f / 9.0f)));
  t = _mm512_add_ps(_mm512_set1_ps(2.0f / 5.0f), _mm512_mul_ps(z, t));
  t = _mm512_add_ps(_mm512_set1_ps(2.0f / 3.0f), _mm512_mul_ps(z, t));
  t = _mm512_mul_ps(z, t);
  const __m512 ln_m = _mm512_add_ps(_mm512_mul_ps(s, _mm512_set1_ps(2.0f)), _mm512_mul_ps(s, t));
  const __m512 ln_u = _mm512_add_ps(_mm512_mul_ps(kf, _mm512_set1_ps(k::ln2_hi)),
                                    _mm512_add_ps(_mm512_mul_ps(kf, _mm512_set1_ps(k::ln2_lo)), ln_m));
  const __m512 w = _mm512_mul_ps(_mm512_set1_ps(-2.0f), ln_u);
  const __m512 hw = _mm512_mul_ps(half, w);
  __m512 y = _mm512_castsi512_ps(
      _mm512_sub_epi32(_mm512_set1_epi32(0x5F375A86), _mm512_srli_epi32(_mm512_castps_si512(w), 1)));
  const __m512 c15 = _mm512_set1_ps(1.5f);
  for (int it = 0; it < 3; ++it) y = _mm512_mul_ps(y, _mm512_sub_ps(c15, _mm512_mul_ps(_mm512_mul_ps(hw, y), y)));
  const __m512 r = _mm512_mul_ps(w, y);
  // angle
  const __m512i q = _mm512_srli_epi32(_mm512_add_epi32(b, _mm512_set1_epi32(0x20000000)), 30);
  const __m512i d = _mm512_sub_epi32(b, _mm512_slli_epi32(q, 30));
  const __m512 phi = _mm512_mul_ps(_mm512_cvtepi32_ps(d), _mm512_set1_ps(k::turn_per_unit));
  const __m512 zz = _mm512_mul_ps(phi, phi);
  __m512 sp = _mm512_add_ps(_mm512_set1_ps(-1.0f / 5040.0f), _mm512_mul_ps(zz, _mm512_set1_ps(1.0f / 362880.0f)));
  sp = _mm512_add_ps(_mm512_set1_ps(1.0f / 120.0f), _mm512_mul_ps(zz, sp));
  sp = _mm512_add_ps(_mm512_set1_ps(-1.0f / 6.0f), _mm512_mul_ps(zz, sp));
  sp = _mm512_add_ps(phi, _mm512_mul_ps(_mm512_mul_ps(phi, zz), sp));
  __m512 cp = _mm512_add_ps(_mm512_set1_ps(1.0f / 40320.0f), _mm512_mul_ps(zz, _mm512_set1_ps(-1.0f / 3628800.0f)));
  cp = _mm512_add_ps(_mm512_set1_ps(-1.0f / 720.0f), _mm512_mul_ps(zz, cp));
  cp = _mm512_add_ps(_mm512_set1_ps(1.0f / 24.0f), _mm512_mul_ps(zz, cp));
  cp = _mm512_add_ps(_mm512_set1_ps(-0.5f), _mm512_mul_ps(zz, cp));
  cp = _mm512_add_ps(one, _mm512_mul_ps(zz, cp));
  const __mmask16 swap = _mm512_test_epi32_mask(q, _mm512_set1_epi32(1));
  const __m512 cq = _mm512_mask_blend_ps(swap, cp, sp);
  const __m512 sq = _mm512_mask_blend_ps(swap, sp, cp);
  const __m512i two = _mm512_set1_epi32(2);
  const __m512i ri = _mm512_castps_si512(r);
  const __m512i rc = _mm512_xor_si512(ri, _mm512_slli_epi32(_mm512_and_si512(_mm512_add_epi32(q, _mm512_set1_epi32(1)),
                                                                             two), 30));
  const __m512i rs = _mm512_xor_si512(ri, _mm512_slli_epi32(_mm512_and_si512(q, two), 30));
  z0 = _mm512_mul_ps(_mm512_castsi512_ps(rc), cq);
  z1 = _mm512_mul_ps(_mm512_castsi512_ps(rs), sq);
}

/// The 64 normals of blocks c0 .. c0 + 15 into out[0 .. 64) in element order (block-major, 4 per block).
SKIPSTEP_TARGET_AVX512 SKIPSTEP_ALWAYS_INLINE void normals64(const philox_round_keys& ks, std::uint32_t c0,
                                                             std::uint32_t c1, std::uint32_t c2, std::uint32_t c3,
                                                             float* out) noexcept {
  __m512i w0, w1, w2, w3;
  philox16(ks, c0, c1, c2, c3, w0, w1, w2, w3);
  __m512 a, b, c, d;  // element 4i + 0, 1, 2, 3 of block i in lane i
  box_muller16(w0, w1, a, b);
  box_muller16(w2, w3, c, d);
  // Interleave: (a, b) -> a0 b0 a1 b1 .., (c, d) -> c0 d0 c1 d1 .., then pairs of pairs -> a0 b0 c0 d0 a1 ..
  const __m512i lo2 = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i hi2 = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
  const __m512 ab_lo = _mm512_permutex2var_ps(a, lo2, b), ab_hi = _mm512_permutex2var_ps(a, hi2, b);
  const __m512 cd_lo = _mm512_permutex2var_ps(c, lo2, d), cd_hi = _mm512_permutex2var_ps(c, hi2, d);
  const __m512i lo4 = _mm512_set_epi32(23, 22, 7, 6, 21, 20, 5, 4, 19, 18, 3, 2, 17, 16, 1, 0);
  const __m512i hi4 = _mm512_set_epi32(31, 30, 15, 14, 29, 28, 13, 12, 27, 26, 11, 10, 25, 24, 9, 8);
  _mm512_storeu_ps(out + 0, _mm512_permutex2var_ps(ab_lo, lo4, cd_lo));
  _mm512_storeu_ps(out + 16, _mm512_permutex2var_ps(ab_lo, hi4, cd_lo));
  _mm512_storeu_ps(out + 32, _mm512_permutex2var_ps(ab_hi, lo4, cd_hi));
  _mm512_storeu_ps(out + 48, _mm512_permutex2var_ps(ab_hi, hi4, cd_hi));
}

/// The 4 * count normals of blocks block_first .. block_first + count - 1 (mod 2^32) into out.
SKIPSTEP_TARGET_AVX512 SKIPSTEP_NOINLINE void normal_blocks_f32(const philox_round_keys& ks, std::uint32_t block_first,
                                                     std::uint32_t c1, std::uint32_t c2, std::uint32_t c3,
                                                     std::size_t count, float* out) noexcept {
  std::size_t i = 0;
  for (; i + lanes <= count; i += lanes)
    normals64(ks, block_first + static_cast<std::uint32_t>(i), c1, c2, c3, out + 4 * i);
  if (i < count) {
    alignas(64) float tmp[4 * lanes];
    normals64(ks, block_first + static_cast<std::uint32_t>(i), c1, c2, c3, tmp);
    for (std::size_t e = 0; e < 4 * (count - i); ++e) out[4 * i + e] = tmp[e];
  }
}

}  // namespace simd_avx512

// ------------------------------------------------------------------------------------------------------------------
// AVX2: 8 Philox blocks (32 normals) per iteration.
// ------------------------------------------------------------------------------------------------------------------
namespace simd_avx2 {

inline constexpr std::size_t lanes = 8;

SKIPSTEP_TARGET_AVX2 SKIPSTEP_ALWAYS_INLINE void mulhilo(__m256i x, __m256i m, __m256i& hi, __m256i& lo) noexcept {
  const __m256i even = _mm256_mul_epu32(x, m);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(x, 32), m);
  hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
  lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
}

SKIPSTEP_TARGET_AVX2 SKIPSTEP_ALWAYS_INLINE void philox8(const philox_round_keys& ks, std::uint32_t c0,
                                                         std::uint32_t c1, std::uint32_t c2, std::uint32_t c3,
                                                         __m256i& w0, __m256i& w1, __m256i& w2,
                                                         __m256i& w3) noexcept {
  __m256i x0 = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(c0)), _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0));
  __m256i x1 = _mm256_set1_epi32(static_cast<int>(c1));
  __m256i x2 = _mm256_set1_epi32(static_cast<int>(c2));
  __m256i x3 = _mm256_set1_epi32(static_cast<int>(c3));
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(philox_m0));
  const __m256i m1 = _mm256_set1_epi32(static_cast<int>(philox_m1));
  for (int r = 0; r < philox_rounds; ++r) {
    __m256i hi0, lo0, hi1, lo1;
    mulhilo(x0, m0, hi0, lo0);
    mulhilo(x2, m1, hi1, lo1);
    const __m256i k0 = _mm256_set1_epi32(static_cast<int>(ks.k0[static_cast<std::size_t>(r)]));
    const __m256i k1 = _mm256_set1_epi32(static_cast<int>(ks.k1[static_cast<std::size_t>(r)]));
    x0 = _mm256_xor_si256(_mm256_xor_si256(hi1, x1), k0);
    x2 = _mm256_xor_si256(_mm256_xor_si256(hi0, x3), k1);
    x1 = lo1;
    x3 = lo0;
  }
  w0 = x0;
  w1 = x1;
  w2 = x2;
  w3 = x3;
}

SKIPSTEP_TARGET_AVX2 SKIPSTEP_ALWAYS_INLINE __m256 cvt_u32(__m256i a) noexcept {
  // hi * 65536 + lo with signed conversions, as box_muller_traits<float>::from_u32.
  const __m256 hi = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(a, 16)), _mm256_set1_ps(65536.0f));
  const __m256 lo = _mm256_cvtepi32_ps(_mm256_and_si256(a, _mm256_set1_epi32(0xFFFF)));
  return _mm256_add_ps(hi, lo);
}

SKIPSTEP_TARGET_AVX2 SKIPSTEP_ALWAYS_INLINE void box_muller8(__m256i a, __m256i b, __m256& z0, __m256& z1) noexcept {
  SKIPSTEP_SIMD_STRICT_FP
  namespace k = simd_consts;
  const __m256 half = _mm256_set1_ps(0.5f), p32 = _mm256_set1_ps(k::two_pow_m32), one = _mm256_set1_ps(1.0f);
  const __m256 u = _mm256_mul_ps(_mm256_add_ps(cvt_u32(a), half), p32);
  const __m256i nota = _mm256_andnot_si256(a, _mm256_set1_epi32(0x7FFFFFFF));
  const __m256 v = _mm256_mul_ps(_mm256_add_ps(_mm256_cvtepi32_ps(nota), half), p32);
  const __m256i ix = _mm256_castps_si256(u);
  const __m256i tmp = _mm256_add_epi32(ix, _mm256_set1_epi32(static_cast<int>(k::one_bits - k::sqrt_half_bits)));
  const __m256i kb = _mm256_srli_epi32(tmp, 23);
  const __m256 m = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_sub_epi32(ix, _mm256_slli_epi32(kb, 23)),
                                                        _mm256_set1_epi32(static_cast<int>(k::one_bits))));
  // a >= near_one (unsigned) as a signed compare of the sign-flipped words: a ^ 2^31 > (near_one - 1) ^ 2^31.
  const __m256i near = _mm256_cmpgt_epi32(
      _mm256_xor_si256(a, _mm256_set1_epi32(INT32_MIN)),
      _mm256_set1_epi32(static_cast<int>((k::near_one - 1u) ^ 0x80000000u)));
  const __m256 nearf = _mm256_castsi256_ps(near);
  const __m256 negv = _mm256_xor_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(INT32_MIN)));
  const __m256 num = _mm256_blendv_ps(_mm256_sub_ps(m, one), negv, nearf);
  const __m256 den = _mm256_blendv_ps(_mm256_add_ps(m, one), _mm256_sub_ps(_mm256_set1_ps(2.0f), v), nearf);
  const __m256 kf = _mm256_sub_ps(_mm256_cvtepi32_ps(kb), _mm256_set1_ps(127.0f));
  const __m256 s = _mm256_div_ps(num, den);
  const __m256 z = _mm256_mul_ps(s, s);
  __m256 t = _mm256_add_ps(_mm256_set1_ps(2.0f / 7.0f), _mm256_mul_ps(z, _mm256_set1_ps(2.0f / 9.0f)));
  t = _mm256_add_ps(_mm256_set1_ps(2.0f / 5.0f), _mm256_mul_ps(z, t));
  t = _mm256_add_ps(_mm256_set1_ps(2.0f / 3.0f), _mm256_mul_ps(z, t));
  t = _mm256_mul_ps(z, t);
  const __m256 ln_m = _mm256_add_ps(_mm256_mul_ps(s, _mm256_set1_ps(2.0f)), _mm256_mul_ps(s, t));
  const __m256 ln_u = _mm256_add_ps(_mm256_mul_ps(kf, _mm256_set1_ps(k::ln2_hi)),
                                    _mm256_add_ps(_mm256_mul_ps(kf, _mm256_set1_ps(k::ln2_lo)), ln_m));
  const __m256 w = _mm256_mul_ps(_mm256_set1_ps(-2.0f), ln_u);
  const __m256 hw = _mm256_mul_ps(half, w);
  __m256 y = _mm256_castsi256_ps(
      _mm256_sub_epi32(_mm256_set1_epi32(0x5F375A86), _mm256_srli_epi32(_mm256_castps_si256(w), 1)));
  const __m256 c15 = _mm256_set1_ps(1.5f);
  for (int it = 0; it < 3; ++it) y = _mm256_mul_ps(y, _mm256_sub_ps(c15, _mm256_mul_ps(_mm256_mul_ps(hw, y), y)));
  const __m256 r = _mm256_mul_ps(w, y);
  const __m256i q = _mm256_srli_epi32(_mm256_add_epi32(b, _mm256_set1_epi32(0x20000000)), 30);
  const __m256i d = _mm256_sub_epi32(b, _mm256_slli_epi32(q, 30));
  const __m256 phi = _mm256_mul_ps(_mm256_cvtepi32_ps(d), _mm256_set1_ps(k::turn_per_unit));
  const __m256 zz = _mm256_mul_ps(phi, phi);
  __m256 sp = _mm256_add_ps(_mm256_set1_ps(-1.0f / 5040.0f), _mm256_mul_ps(zz, _mm256_set1_ps(1.0f / 362880.0f)));
  sp = _mm256_add_ps(_mm256_set1_ps(1.0f / 120.0f), _mm256_mul_ps(zz, sp));
  sp = _mm256_add_ps(_mm256_set1_ps(-1.0f / 6.0f), _mm256_mul_ps(zz, sp));
  sp = _mm256_add_ps(phi, _mm256_mul_ps(_mm256_mul_ps(phi, zz), sp));
  __m256 cp = _mm256_add_ps(_mm256_set1_ps(1.0f / 40320.0f), _mm256_mul_ps(zz, _mm256_set1_ps(-1.0f / 3628800.0f)));
  cp = _mm256_add_ps(_mm256_set1_ps(-1.0f / 720.0f), _mm256_mul_ps(zz, cp));
  cp = _mm256_add_ps(_mm256_set1_ps(1.0f / 24.0f), _mm256_mul_ps(zz, cp));
  cp = _mm256_add_ps(_mm256_set1_ps(-0.5f), _mm256_mul_ps(zz, cp));
  cp = _mm256_add_ps(one, _mm256_mul_ps(zz, cp));
  const __m256 swap = _mm256_castsi256_ps(
      _mm256_cmpeq_epi32(_mm256_and_si256(q, _mm256_set1_epi32(1)), _mm256_set1_epi32(1)));
  const __m256 cq = _mm256_blendv_ps(cp, sp, swap);
  const __m256 sq = _mm256_blendv_ps(sp, cp, swap);
  const __m256i two = _mm256_set1_epi32(2);
  const __m256i ri = _mm256_castps_si256(r);
  const __m256i rc = _mm256_xor_si256(ri, _mm256_slli_epi32(_mm256_and_si256(_mm256_add_epi32(q, _mm256_set1_epi32(1)),
                                                                             two), 30));
  const __m256i rs = _mm256_xor_si256(ri, _mm256_slli_epi32(_mm256_and_si256(q, two), 30));
  z0 = _mm256_mul_ps(_mm256_castsi256_ps(rc), cq);
  z1 = _mm256_mul_ps(_mm256_castsi256_ps(rs), sq);
}

SKIPSTEP_TARGET_AVX2 SKIPSTEP_ALWAYS_INLINE void normals32(const philox_round_keys& ks, std::uint32_t c0,
                                                           std::uint32_t c1, std::uint32_t c2, std::uint32_t c3,
                                                           float* out) noexcept {
  __m256i w0, w1, w2, w3;
  philox8(ks, c0, c1, c2, c3, w0, w1, w2, w3);
  __m256 a, b, c, d;
  box_muller8(w0, w1, a, b);
  box_muller8(w2, w3, c, d);
  // 4x4 transposes within 128-bit halves, then the halves put in block order.
  const __m256 t0 = _mm256_unpacklo_ps(a, b), t1 = _mm256_unpacklo_ps(c, d);  // a0 b0 a1 b1 | c0 d0 c1 d1 (per half)
  const __m256 t2 = _mm256_unpackhi_ps(a, b), t3 = _mm256_unpackhi_ps(c, d);  // a2 b2 a3 b3 | c2 d2 c3 d3
  const __m256 r0 = _mm256_shuffle_ps(t0, t1, 0x44);  // a0 b0 c0 d0 (blocks 0 | 4)
  const __m256 r1 = _mm256_shuffle_ps(t0, t1, 0xEE);  // a1 b1 c1 d1 (blocks 1 | 5)
  const __m256 r2 = _mm256_shuffle_ps(t2, t3, 0x44);  // blocks 2 | 6
  const __m256 r3 = _mm256_shuffle_ps(t2, t3, 0xEE);  // blocks 3 | 7
  _mm256_storeu_ps(out + 0, _mm256_permute2f128_ps(r0, r1, 0x20));
  _mm256_storeu_ps(out + 8, _mm256_permute2f128_ps(r2, r3, 0x20));
  _mm256_storeu_ps(out + 16, _mm256_permute2f128_ps(r0, r1, 0x31));
  _mm256_storeu_ps(out + 24, _mm256_permute2f128_ps(r2, r3, 0x31));
}

SKIPSTEP_TARGET_AVX2 SKIPSTEP_NOINLINE void normal_blocks_f32(const philox_round_keys& ks, std::uint32_t block_first,
                                                   std::uint32_t c1, std::uint32_t c2, std::uint32_t c3,
                                                   std::size_t count, float* out) noexcept {
  std::size_t i = 0;
  for (; i + lanes <= count; i += lanes)
    normals32(ks, block_first + static_cast<std::uint32_t>(i), c1, c2, c3, out + 4 * i);
  if (i < count) {
    alignas(32) float tmp[4 * lanes];
    normals32(ks, block_first + static_cast<std::uint32_t>(i), c1, c2, c3, tmp);
    for (std::size_t e = 0; e < 4 * (count - i); ++e) out[4 * i + e] = tmp[e];
  }
}

}  // namespace simd_avx2

/// Float normals of `count` whole blocks with the best kernel for this CPU; false if only the portable path applies
/// (then the caller runs it).
inline bool normal_blocks_f32_dispatch(const philox_round_keys& ks, std::uint32_t block_first, std::uint32_t c1,
                                       std::uint32_t c2, std::uint32_t c3, std::size_t count, float* out) noexcept {
  switch (detected_simd_level()) {
    case simd_level::avx512:
      simd_avx512::normal_blocks_f32(ks, block_first, c1, c2, c3, count, out);
      return true;
    case simd_level::avx2:
      simd_avx2::normal_blocks_f32(ks, block_first, c1, c2, c3, count, out);
      return true;
    default:
      return false;
  }
}

}  // namespace skipstep::detail

#undef SKIPSTEP_TARGET_AVX2
#undef SKIPSTEP_TARGET_AVX512
#undef SKIPSTEP_ALWAYS_INLINE
#undef SKIPSTEP_NOINLINE
#undef SKIPSTEP_SIMD_STRICT_FP
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif

#else  // !SKIPSTEP_X86_DISPATCH

namespace skipstep::detail {
enum class simd_level : int { portable = 0, avx2 = 1, avx512 = 2 };
inline simd_level detected_simd_level() noexcept { return simd_level::portable; }
inline bool normal_blocks_f32_dispatch(const philox_round_keys&, std::uint32_t, std::uint32_t, std::uint32_t,
                                       std::uint32_t, std::size_t, float*) noexcept {
  return false;
}
}  // namespace skipstep::detail

#endif
