/// @file
/// Philox4x32-10 counter-based bijection (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3",
/// SC'11; reference implementation: D. E. Shaw Research's Random123, `philox.h`).
///
/// Philox4x32-R maps a 128-bit counter c = (c0, c1, c2, c3) and a 64-bit key k = (k0, k1) to 128 random bits by R
/// rounds of
///   (hi0, lo0) = M0 * c0,  (hi1, lo1) = M1 * c2          (32x32 -> 64-bit products)
///   c' = (hi1 ^ c1 ^ k0,  lo1,  hi0 ^ c3 ^ k1,  lo0)
/// with the key bumped by the Weyl constants (W0, W1) between rounds. M0 = 0xD2511F53, M1 = 0xCD9E8D57,
/// W0 = 0x9E3779B9 (golden ratio), W1 = 0xBB67AE85 (sqrt(3) - 1). R = 10 is Random123's default and the variant whose
/// known-answer vectors (Random123 `tests/kat_vectors`, lines `philox4x32 10 ...`) the unit tests check.
///
/// Only integer arithmetic: results are bit-identical on every platform and compiler. The batched form
/// (philox4x32_10_blocks) is a plain loop over independent counters that compilers vectorize (the 32x32 -> 64-bit
/// multiply maps to SSE2 `pmuludq` / AVX2 `vpmuludq`).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace skipstep::detail {

inline constexpr std::uint32_t philox_m0 = 0xD2511F53u;
inline constexpr std::uint32_t philox_m1 = 0xCD9E8D57u;
inline constexpr std::uint32_t philox_w0 = 0x9E3779B9u;
inline constexpr std::uint32_t philox_w1 = 0xBB67AE85u;
inline constexpr int philox_rounds = 10;

/// One Philox4x32 round on four words (in place), with round key (k0, k1).
constexpr void philox4x32_round(std::uint32_t& x0, std::uint32_t& x1, std::uint32_t& x2, std::uint32_t& x3,
                                std::uint32_t k0, std::uint32_t k1) noexcept {
  const std::uint64_t p0 = std::uint64_t{philox_m0} * x0;
  const std::uint64_t p1 = std::uint64_t{philox_m1} * x2;
  const auto hi0 = static_cast<std::uint32_t>(p0 >> 32);
  const auto lo0 = static_cast<std::uint32_t>(p0);
  const auto hi1 = static_cast<std::uint32_t>(p1 >> 32);
  const auto lo1 = static_cast<std::uint32_t>(p1);
  x0 = hi1 ^ x1 ^ k0;
  x1 = lo1;
  x2 = hi0 ^ x3 ^ k1;
  x3 = lo0;
}

/// Round keys of Philox4x32-10: round r uses (k0 + r*W0, k1 + r*W1) (mod 2^32), r = 0..9.
struct philox_round_keys {
  std::array<std::uint32_t, philox_rounds> k0{};
  std::array<std::uint32_t, philox_rounds> k1{};
};

constexpr philox_round_keys philox4x32_key_schedule(std::uint32_t k0, std::uint32_t k1) noexcept {
  philox_round_keys ks;
  for (int r = 0; r < philox_rounds; ++r) {
    ks.k0[static_cast<std::size_t>(r)] = k0 + static_cast<std::uint32_t>(r) * philox_w0;
    ks.k1[static_cast<std::size_t>(r)] = k1 + static_cast<std::uint32_t>(r) * philox_w1;
  }
  return ks;
}

/// Philox4x32-10(counter, key): the scalar reference (Random123 `philox4x32_R(10, ctr, key)`).
constexpr std::array<std::uint32_t, 4> philox4x32_10(std::array<std::uint32_t, 4> ctr,
                                                     std::array<std::uint32_t, 2> key) noexcept {
  std::uint32_t x0 = ctr[0], x1 = ctr[1], x2 = ctr[2], x3 = ctr[3];
  std::uint32_t k0 = key[0], k1 = key[1];
  for (int r = 0; r < philox_rounds; ++r) {
    philox4x32_round(x0, x1, x2, x3, k0, k1);
    k0 += philox_w0;
    k1 += philox_w1;
  }
  return {x0, x1, x2, x3};
}

/// Batched Philox4x32-10 over the counters (c0_first + i, c1, c2, c3), i = 0..count-1 (c0 wraps mod 2^32), written
/// structure-of-arrays: w0[i], w1[i], w2[i], w3[i] are the four output words of counter i. Same bits as
/// philox4x32_10 for each counter; the loop over i has no dependences and vectorizes.
inline void philox4x32_10_blocks(const philox_round_keys& ks, std::uint32_t c0_first, std::uint32_t c1,
                                 std::uint32_t c2, std::uint32_t c3, std::size_t count, std::uint32_t* w0,
                                 std::uint32_t* w1, std::uint32_t* w2, std::uint32_t* w3) noexcept {
  // Local copies so the compiler sees the keys are loop invariant (no aliasing with the outputs).
  const philox_round_keys k = ks;
  for (std::size_t i = 0; i < count; ++i) {
    std::uint32_t x0 = c0_first + static_cast<std::uint32_t>(i), x1 = c1, x2 = c2, x3 = c3;
    philox4x32_round(x0, x1, x2, x3, k.k0[0], k.k1[0]);
    philox4x32_round(x0, x1, x2, x3, k.k0[1], k.k1[1]);
    philox4x32_round(x0, x1, x2, x3, k.k0[2], k.k1[2]);
    philox4x32_round(x0, x1, x2, x3, k.k0[3], k.k1[3]);
    philox4x32_round(x0, x1, x2, x3, k.k0[4], k.k1[4]);
    philox4x32_round(x0, x1, x2, x3, k.k0[5], k.k1[5]);
    philox4x32_round(x0, x1, x2, x3, k.k0[6], k.k1[6]);
    philox4x32_round(x0, x1, x2, x3, k.k0[7], k.k1[7]);
    philox4x32_round(x0, x1, x2, x3, k.k0[8], k.k1[8]);
    philox4x32_round(x0, x1, x2, x3, k.k0[9], k.k1[9]);
    w0[i] = x0;
    w1[i] = x1;
    w2[i] = x2;
    w3[i] = x3;
  }
}

}  // namespace skipstep::detail
