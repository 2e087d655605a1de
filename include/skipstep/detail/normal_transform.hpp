/// @file
/// Box–Muller transform of Philox words into standard normals, with the library's own polynomial log and sincos so
/// that the result is a pure function of the input bits: the same on every compiler, libm and vector width, and
/// bit-identical between the scalar reference (normal_at) and the blocked, vectorizable path (normal_blocks).
///
/// Box–Muller (Box & Muller 1958): for independent uniforms u in (0, 1] and t in [0, 1),
///   z0 = sqrt(-2 ln u) cos(2 pi t),  z1 = sqrt(-2 ln u) sin(2 pi t)
/// are independent N(0, 1). Here u = (a + 1/2) / 2^32 and t = b / 2^32 for two 32-bit Philox words a, b. So
/// |z| <= sqrt(-2 ln(2^-33)) = 6.764 (a tail truncation of probability 2^-33 = 1.2e-10 per pair) and the angle grid is 2^-32
/// of a turn. No rejection: every (a, b) gives two normals, which keeps counter-based addressing exact.
///
/// ln u: u = m 2^k with m in [sqrt(1/2), sqrt(2)) taken from the float bits, ln u = k ln 2 + 2 atanh(s) with
/// s = (m - 1)/(m + 1), |s| <= 0.1716, and atanh as its odd Taylor series (float: through s^9, truncation <= 7.3e-10;
/// double: through s^19, truncation <= 8e-18). For u >= sqrt(1/2) the code uses k = 0 and s = -v/(2 - v) with
/// v = 1 - u = (~a + 1/2)/2^32 computed exactly from the integer, so ln u stays relatively accurate as u -> 1 (this
/// matters for float, where u itself would round to 1).
/// sin, cos: the angle word is reduced exactly in integers to a quadrant q and phi in [-pi/4, pi/4]; Taylor polynomials
/// (float: sin through phi^9, cos through phi^10, truncation <= 1.8e-9; double: sin through phi^15, cos through phi^16,
/// truncation <= 4.6e-17) and a quadrant swap/sign flip.
/// sqrt: w * rsqrt(w), with rsqrt by a bit-trick seed and Newton steps (only +, *, integer ops: deterministic).
///
/// Measured accuracy against the same uniforms pushed through long double std::log/std::sqrt/std::cos/std::sin
/// (tests/unit/test_random.cpp, "normal transform accuracy", 100441 pairs incl. edge words): float max |error|
/// 1.03e-6 (|z| <= 6.764, i.e. a few float ulps; tested bound 2e-6), double max |error| 1.12e-15 (tested bound 5e-15).
///
/// Float vs double: both use the same words and formulas, float in float arithmetic; |z_float - z_double| is the
/// float rounding error above (measured max 5.6e-7 over 2e5 draws; tested bound 2e-6), so z_float is not always
/// the correctly rounded z_double.
///
/// Determinism needs IEEE arithmetic without contraction or reassociation. The functions below are compiled with
/// floating-point contraction off (GCC: `#pragma GCC optimize("fp-contract=off")`, clang: `#pragma clang fp
/// contract(off)`) so -march=native (FMA) builds give the same bits as baseline builds. Builds with -ffast-math
/// (reassociation) void the bit-identity guarantee.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "philox.hpp"
#include "simd_normal.hpp"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#define SKIPSTEP_DETAIL_STRICT_FP
#elif defined(__clang__)
#define SKIPSTEP_DETAIL_STRICT_FP _Pragma("clang fp contract(off)")
#else
#define SKIPSTEP_DETAIL_STRICT_FP
#endif

namespace skipstep::detail {

/// Number of Philox blocks (4 normals each) generated per batch by normal_blocks: 64 blocks = 256 normals, 1 KiB of
/// words on the stack.
inline constexpr std::size_t normal_batch_blocks = 64;

/// Threshold on the radius word a above which u = (a + 1/2)/2^32 >= sqrt(1/2) uses the exact v = 1 - u branch.
inline constexpr std::uint32_t box_muller_near_one = 3037000500u;  // ceil(sqrt(1/2) * 2^32)

template <class T>
struct box_muller_traits;

template <>
struct box_muller_traits<float> {
  using uint_t = std::uint32_t;
  static constexpr int mant_bits = 23;
  static constexpr uint_t one_bits = 0x3F800000u;
  static constexpr uint_t sqrt_half_bits = 0x3F3504F3u;  // float(sqrt(1/2))
  static constexpr float two_pow_m32 = 0x1p-32f;
  static constexpr float turn_per_unit = 0x1.921FB6p-30f;  // 2 pi / 2^32 (rounded to float)
  static constexpr float ln2_hi = 0.693359375f;            // 8 significant bits: k * ln2_hi exact for |k| < 2^15
  static constexpr float ln2_lo = -2.12194440e-4f;         // ln 2 - ln2_hi

  /// float(a), correctly rounded, with only signed 32-bit conversions (vectorizable on SSE2).
  static float from_u32(std::uint32_t a) noexcept {
    SKIPSTEP_DETAIL_STRICT_FP
    const float hi = static_cast<float>(static_cast<std::int32_t>(a >> 16)) * 65536.0f;  // exact
    const float lo = static_cast<float>(static_cast<std::int32_t>(a & 0xFFFFu));         // exact
    return hi + lo;
  }
  /// Unbiased exponent k as T from the biased exponent field kb (< 2^8).
  static float exponent(uint_t kb) noexcept { return static_cast<float>(static_cast<std::int32_t>(kb)) - 127.0f; }

  /// 1/sqrt(w) for w > 0 normal: bit-trick seed (Lomont's constant, rel. error <= 3.5e-2) and three Newton steps
  /// y <- y (3/2 - (w/2) y^2) (rel. error 1.8e-3, 4.6e-6, 3.2e-11 before rounding). Used instead of std::sqrt because
  /// GCC and clang do not vectorize std::sqrt unless the whole program is built with -fno-math-errno.
  static float rsqrt(float w) noexcept {
    SKIPSTEP_DETAIL_STRICT_FP
    const float hw = 0.5f * w;
    float y = std::bit_cast<float>(0x5F375A86u - (std::bit_cast<std::uint32_t>(w) >> 1));
    y = y * (1.5f - hw * y * y);
    y = y * (1.5f - hw * y * y);
    y = y * (1.5f - hw * y * y);
    return y;
  }
  /// 2 atanh(s) / s - 2 = 2 (z/3 + z^2/5 + z^3/7 + z^4/9), z = s^2 (Horner).
  static float atanh_tail(float z) noexcept {
    SKIPSTEP_DETAIL_STRICT_FP
    return z * (2.0f / 3.0f + z * (2.0f / 5.0f + z * (2.0f / 7.0f + z * (2.0f / 9.0f))));
  }
  /// sin(phi) = phi + phi z (S1 + z (S2 + ...)), cos(phi) = 1 + z (C1 + z (C2 + ...)), z = phi^2 (Taylor).
  static float sin_poly(float phi, float z) noexcept {
    SKIPSTEP_DETAIL_STRICT_FP
    return phi + phi * z * (-1.0f / 6.0f + z * (1.0f / 120.0f + z * (-1.0f / 5040.0f + z * (1.0f / 362880.0f))));
  }
  static float cos_poly(float z) noexcept {
    SKIPSTEP_DETAIL_STRICT_FP
    return 1.0f + z * (-0.5f + z * (1.0f / 24.0f + z * (-1.0f / 720.0f + z * (1.0f / 40320.0f +
                                                                               z * (-1.0f / 3628800.0f)))));
  }
};

template <>
struct box_muller_traits<double> {
  using uint_t = std::uint64_t;
  static constexpr int mant_bits = 52;
  static constexpr uint_t one_bits = 0x3FF0000000000000u;
  static constexpr uint_t sqrt_half_bits = 0x3FE6A09E667F3BCDu;  // double(sqrt(1/2))
  static constexpr double two_pow_m32 = 0x1p-32;
  static constexpr double turn_per_unit = 0x1.921FB54442D18p-30;  // 2 pi / 2^32
  static constexpr double ln2_hi = 6.93147180369123816490e-01;    // fdlibm split: k * ln2_hi exact for |k| < 2^11
  static constexpr double ln2_lo = 1.90821492927058770002e-10;

  /// double(a), exact, with only signed 32-bit conversions.
  static double from_u32(std::uint32_t a) noexcept {
    SKIPSTEP_DETAIL_STRICT_FP
    return static_cast<double>(static_cast<std::int32_t>(a >> 1)) * 2.0 +
           static_cast<double>(static_cast<std::int32_t>(a & 1u));
  }
  /// Exponent field kb (< 2^11) to double without a 64-bit integer conversion: 2^52 + kb has kb in its low bits.
  static double exponent(uint_t kb) noexcept {
    SKIPSTEP_DETAIL_STRICT_FP
    return std::bit_cast<double>(kb | 0x4330000000000000u) - (0x1p52 + 1023.0);
  }
  /// 1/sqrt(w): bit-trick seed (rel. error <= 3.5e-2) and four Newton steps (rel. error ~1.5e-21 before rounding).
  static double rsqrt(double w) noexcept {
    SKIPSTEP_DETAIL_STRICT_FP
    const double hw = 0.5 * w;
    double y = std::bit_cast<double>(0x5FE6EB50C7B537A9u - (std::bit_cast<std::uint64_t>(w) >> 1));
    y = y * (1.5 - hw * y * y);
    y = y * (1.5 - hw * y * y);
    y = y * (1.5 - hw * y * y);
    y = y * (1.5 - hw * y * y);
    return y;
  }
  static double atanh_tail(double z) noexcept {
    SKIPSTEP_DETAIL_STRICT_FP
    return z * (2.0 / 3 + z * (2.0 / 5 + z * (2.0 / 7 + z * (2.0 / 9 + z * (2.0 / 11 + z * (2.0 / 13 + z * (2.0 / 15 +
           z * (2.0 / 17 + z * (2.0 / 19)))))))));
  }
  static double sin_poly(double phi, double z) noexcept {
    SKIPSTEP_DETAIL_STRICT_FP
    return phi + phi * z * (-1.0 / 6 + z * (1.0 / 120 + z * (-1.0 / 5040 + z * (1.0 / 362880 + z * (-1.0 / 39916800 +
           z * (1.0 / 6227020800.0 + z * (-1.0 / 1307674368000.0)))))));
  }
  static double cos_poly(double z) noexcept {
    SKIPSTEP_DETAIL_STRICT_FP
    return 1.0 + z * (-0.5 + z * (1.0 / 24 + z * (-1.0 / 720 + z * (1.0 / 40320 + z * (-1.0 / 3628800 +
           z * (1.0 / 479001600.0 + z * (-1.0 / 87178291200.0 + z * (1.0 / 20922789888000.0))))))));
  }
};

/// Bitwise select: mask all ones -> x, mask zero -> y.
template <class T, class U>
inline T select(U mask, T x, T y) noexcept {
  return std::bit_cast<T>((std::bit_cast<U>(x) & mask) | (std::bit_cast<U>(y) & ~mask));
}

/// Box–Muller of the words (a, b): z0 = r cos(2 pi t), z1 = r sin(2 pi t), r = sqrt(-2 ln u), u = (a + 1/2)/2^32,
/// t = b/2^32. Branch-free (selects only), so loops calling it vectorize.
template <class T>
inline void box_muller(std::uint32_t a, std::uint32_t b, T& z0, T& z1) noexcept {
  SKIPSTEP_DETAIL_STRICT_FP
  using tr = box_muller_traits<T>;
  using uint_t = typename tr::uint_t;
  // --- radius: w = -2 ln u ---
  const T u = (tr::from_u32(a) + T(0.5)) * tr::two_pow_m32;             // in (0, 1]
  // 1 - u, used only when a >= near_one (then ~a < 2^31 and the mask is a no-op that keeps the conversion in range).
  const T v = (static_cast<T>(static_cast<std::int32_t>(~a & 0x7FFFFFFFu)) + T(0.5)) * tr::two_pow_m32;
  const uint_t ix = std::bit_cast<uint_t>(u);
  const uint_t tmp = ix + (tr::one_bits - tr::sqrt_half_bits);
  const uint_t kb = tmp >> tr::mant_bits;                               // biased k, u = m 2^k, m in [sqrt.5, sqrt2)
  const T m = std::bit_cast<T>(ix - (kb << tr::mant_bits) + tr::one_bits);
  // Selects and sign flips are integer bit operations (not ?:) so that GCC's if-conversion, which will not
  // speculate floating-point operations under the default -ftrapping-math, has nothing to convert.
  // near_one: u >= sqrt(1/2); then k = 0 already (u = m 2^0), and s is taken from v = 1 - u.
  const uint_t near_one = uint_t{0} - static_cast<uint_t>(a >= box_muller_near_one);  // all ones or zero
  const T num = select(near_one, -v, m - T(1));
  const T den = select(near_one, T(2) - v, m + T(1));
  const T k = tr::exponent(kb);
  const T s = num / den;
  const T ln_m = s * T(2) + s * tr::atanh_tail(s * s);
  const T ln_u = k * tr::ln2_hi + (k * tr::ln2_lo + ln_m);
  const T w = T(-2) * ln_u;  // > 0: u < 1 always (v >= 2^-33)
  const T r = w * tr::rsqrt(w);
  // --- angle: quadrant q and phi in [-pi/4, pi/4), reduced exactly in integers ---
  const std::uint32_t q = (b + 0x20000000u) >> 30;
  const auto d = static_cast<std::int32_t>(b - (q << 30));  // in [-2^29, 2^29)
  const T phi = static_cast<T>(d) * tr::turn_per_unit;
  const T zz = phi * phi;
  const T sp = tr::sin_poly(phi, zz);
  const T cp = tr::cos_poly(zz);
  const uint_t swap = uint_t{0} - static_cast<uint_t>(q & 1u);
  const T cq = select(swap, sp, cp);
  const T sq = select(swap, cp, sp);
  constexpr int sign_shift = static_cast<int>(sizeof(T)) * 8 - 2;  // moves bit 1 of the quadrant to the sign bit
  const T rc = std::bit_cast<T>(std::bit_cast<uint_t>(r) ^ (static_cast<uint_t>((q + 1u) & 2u) << sign_shift));
  const T rs = std::bit_cast<T>(std::bit_cast<uint_t>(r) ^ (static_cast<uint_t>(q & 2u) << sign_shift));
  z0 = rc * cq;
  z1 = rs * sq;
}

/// Scalar reference: element j of Philox block with words w (j in 0..3): pair j/2, cos for even j, sin for odd j.
template <class T>
inline T normal_from_block(const std::uint32_t (&w)[4], unsigned j) noexcept {
  T z0, z1;
  if (j < 2) {
    box_muller<T>(w[0], w[1], z0, z1);
  } else {
    box_muller<T>(w[2], w[3], z0, z1);
  }
  return (j & 1u) != 0 ? z1 : z0;
}

/// Scalar reference path: the normal at element index j of the stream with counter words (c1, c2, c3).
template <class T>
inline T normal_at(std::array<std::uint32_t, 2> key, std::uint32_t c1, std::uint32_t c2, std::uint32_t c3,
                   std::uint64_t element) noexcept {
  const auto w = philox4x32_10({static_cast<std::uint32_t>(element >> 2), c1, c2, c3}, key);
  const std::uint32_t words[4] = {w[0], w[1], w[2], w[3]};
  return normal_from_block<T>(words, static_cast<unsigned>(element & 3u));
}

/// Blocked path: the 4 * count normals of blocks block_first .. block_first + count - 1 (count <= normal_batch_blocks)
/// into out[0 .. 4 count). Philox over the batch (structure of arrays), then Box–Muller; both loops vectorize.
template <class T>
inline void normal_blocks(const philox_round_keys& ks, std::uint32_t block_first, std::uint32_t c1, std::uint32_t c2,
                          std::uint32_t c3, std::size_t count, T* out) noexcept {
  SKIPSTEP_DETAIL_STRICT_FP
  alignas(64) std::uint32_t w0[normal_batch_blocks];
  alignas(64) std::uint32_t w1[normal_batch_blocks];
  alignas(64) std::uint32_t w2[normal_batch_blocks];
  alignas(64) std::uint32_t w3[normal_batch_blocks];
  philox4x32_10_blocks(ks, block_first, c1, c2, c3, count, w0, w1, w2, w3);
  for (std::size_t i = 0; i < count; ++i) {
    T z0, z1, z2, z3;
    box_muller<T>(w0[i], w1[i], z0, z1);
    box_muller<T>(w2[i], w3[i], z2, z3);
    out[4 * i + 0] = z0;
    out[4 * i + 1] = z1;
    out[4 * i + 2] = z2;
    out[4 * i + 3] = z3;
  }
}

/// Fill out[0 .. n) with elements first .. first + n - 1 of the stream with counter words (c1, c2, c3).
/// Elements are addressed individually, so any split of [first, first + n) gives the same values.
/// Preconditions (checked by the caller): first + n <= 2^34. No heap allocation.
template <class T>
inline void normal_fill(std::array<std::uint32_t, 2> key, std::uint32_t c1, std::uint32_t c2, std::uint32_t c3,
                        std::uint64_t first, T* out, std::size_t n) noexcept {
  SKIPSTEP_DETAIL_STRICT_FP
  const philox_round_keys ks = philox4x32_key_schedule(key[0], key[1]);
  std::size_t pos = 0;
  std::uint64_t j = first;
  // Head: a partial block when first is not a multiple of 4.
  if ((j & 3u) != 0 && n > 0) {
    alignas(16) T tmp[4];
    normal_blocks<T>(ks, static_cast<std::uint32_t>(j >> 2), c1, c2, c3, 1, tmp);
    for (auto e = static_cast<unsigned>(j & 3u); e < 4 && pos < n; ++e) {
      out[pos++] = tmp[e];
    }
    j = first + pos;
  }
  // Body: whole blocks straight into out. Float uses the AVX2 / AVX-512 kernels of simd_normal.hpp when the CPU has
  // them (bit-identical to the loops below); otherwise normal_batch_blocks at a time through the portable loops.
  if constexpr (std::is_same_v<T, float>) {
    const std::size_t count = (n - pos) / 4;
    if (count > 0 && normal_blocks_f32_dispatch(ks, static_cast<std::uint32_t>(j >> 2), c1, c2, c3, count, out + pos)) {
      pos += 4 * count;
      j += 4 * count;
    }
  }
  while (n - pos >= 4) {
    std::size_t count = (n - pos) / 4;
    if (count > normal_batch_blocks) {
      count = normal_batch_blocks;
    }
    normal_blocks<T>(ks, static_cast<std::uint32_t>(j >> 2), c1, c2, c3, count, out + pos);
    pos += 4 * count;
    j += 4 * count;
  }
  // Tail: the first n - pos (< 4) elements of one more block.
  if (pos < n) {
    alignas(16) T tmp[4];
    normal_blocks<T>(ks, static_cast<std::uint32_t>(j >> 2), c1, c2, c3, 1, tmp);
    for (unsigned e = 0; pos < n; ++e) {
      out[pos++] = tmp[e];
    }
  }
}

}  // namespace skipstep::detail

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif
#undef SKIPSTEP_DETAIL_STRICT_FP
