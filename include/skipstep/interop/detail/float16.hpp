/// @file
/// IEEE-754 binary16 ("float16", torch's `at::Half`) as raw bits: exact widening to float and
/// round-to-nearest-even narrowing from float, in portable integer code (C++20 has no float16 type).
#pragma once

#include <bit>
#include <cstdint>

namespace skipstep::detail {

/// The float value of the binary16 bit pattern `bits` (exact: every binary16 value is a float). NaN payloads
/// keep their top bits. Same as c10's `fp16_ieee_to_fp32_value` (c10/util/Half.h).
[[nodiscard]] constexpr float half_bits_to_float(std::uint16_t bits) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x8000u) << 16;
  const std::uint32_t exponent = (bits >> 10) & 0x1Fu;
  std::uint32_t mantissa = bits & 0x3FFu;
  if (exponent == 0x1Fu)
    return std::bit_cast<float>(sign | 0x7F800000u | (mantissa << 13));  // Inf / NaN
  if (exponent != 0)
    return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
  if (mantissa == 0)
    return std::bit_cast<float>(sign);  // ±0
  // Subnormal: mantissa · 2^-24; normalise it into a float.
  std::uint32_t e = 113u;  // float exponent field of 2^-14
  while ((mantissa & 0x400u) == 0) {
    mantissa <<= 1;
    --e;
  }
  return std::bit_cast<float>(sign | (e << 23) | ((mantissa & 0x3FFu) << 13));
}

/// The binary16 bit pattern nearest to `value` (round to nearest, ties to even; overflow to ±Inf, NaN to the
/// quiet NaN 0x7E00 with the sign kept). Same rounding as c10's `fp16_ieee_from_fp32_value`, which
/// `at::Half(float)` uses.
[[nodiscard]] constexpr std::uint16_t float_to_half_bits(float value) noexcept {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(value);
  const auto sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
  const std::uint32_t magnitude = x & 0x7FFFFFFFu;
  if (magnitude > 0x7F800000u)
    return static_cast<std::uint16_t>(sign | 0x7E00u);  // NaN
  if (magnitude >= 0x477FF000u)
    return static_cast<std::uint16_t>(sign | 0x7C00u);  // >= 65520 rounds to Inf
  if (magnitude < 0x38800000u) {                        // below 2^-14: subnormal
    if (magnitude <= 0x33000000u)
      return sign;  // <= 2^-25: rounds to ±0 (2^-25 is a tie, 0 is even)
    const std::uint32_t exponent = magnitude >> 23;
    const std::uint32_t significand = (magnitude & 0x7FFFFFu) | 0x800000u;
    const std::uint32_t shift = 126u - exponent;  // 14..24: value / 2^-24 = significand / 2^shift
    std::uint32_t q = significand >> shift;
    const std::uint32_t rest = significand & ((1u << shift) - 1u);
    const std::uint32_t half_way = 1u << (shift - 1u);
    if (rest > half_way || (rest == half_way && (q & 1u) != 0))
      ++q;
    return static_cast<std::uint16_t>(sign | q);
  }
  std::uint32_t q =
      (magnitude - 0x38000000u) >> 13;  // rebias the exponent (127 -> 15), keep 10 mantissa bits
  const std::uint32_t rest = magnitude & 0x1FFFu;
  if (rest > 0x1000u || (rest == 0x1000u && (q & 1u) != 0))
    ++q;  // a carry into the exponent is correct
  return static_cast<std::uint16_t>(sign | q);
}

}  // namespace skipstep::detail
