/// @file
/// torch's CPU generator (`torch.Generator()`, torch 1.13) bit for bit: seeding, raw words, `torch.rand`,
/// `torch.randint` and `torch.randn` for float32, float64 and float16, so a C++ run can start from the same
/// x_T and draw the same noise as a PyTorch / diffusers run with the same seed.
///
/// Sources (pytorch v1.13.1): aten/src/ATen/core/MT19937RNGEngine.h (engine),
/// aten/src/ATen/CPUGeneratorImpl.cpp
/// (`set_current_seed`, `random`, `random64`), aten/src/ATen/core/DistributionsHelper.h (uniform and normal
/// distributions, the cached normal), aten/src/ATen/core/TransformationHelper.h (`uniform_real`,
/// `uniform_int_from_to`, `normal`), aten/src/ATen/native/cpu/DistributionTemplates.h (`normal_kernel`,
/// `normal_fill`, `normal_fill_AVX2`, `uniform_kernel`, `random_from_to_kernel`), aten/src/ATen/native/cpu/
/// avx_mathfun.h (`log256_ps`, `sincos256_ps`). tests/data/torch_rng/README.md states the algorithm in full;
/// the unit test test_torch_rng compares every value stored there bit for bit.
///
/// Scope and caveats:
/// - float32 numel >= 16 follows torch's AVX2 kernel (what torch picks on any x86-64 CPU with AVX2, also with
///   AVX-512), emulated exactly in portable code (interop/detail/torch_avx2_math.hpp). torch built or run
///   without AVX
///   (`ATEN_CPU_CAPABILITY=default`, non-x86 CPUs) gives different float32 bits there; everything else is
///   kernel independent.
/// - The scalar path (numel < 16), float64 and float16 call the C library's log/sin/cos/sqrt exactly as torch
/// does;
///   they are bit-exact against torch when both use the same libm (glibc, as the reference data was made
///   with).
/// - Other torch versions may differ (kernels and compilers change).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <string_view>

#include "skipstep/detail/error.hpp"
#include "skipstep/interop/detail/float16.hpp"
#include "skipstep/interop/detail/torch_avx2_kernel.hpp"

namespace skipstep {

/// The element type of a torch tensor draw.
enum class torch_dtype : int {
  float16,  ///< torch.float16 (at::Half): values carried as IEEE binary16 bit patterns.
  float32,  ///< torch.float32.
  float64,  ///< torch.float64.
};

/// Name as torch prints it ("float32").
[[nodiscard]] constexpr std::string_view to_string(torch_dtype dtype) noexcept {
  switch (dtype) {
    case torch_dtype::float16:
      return "float16";
    case torch_dtype::float32:
      return "float32";
    case torch_dtype::float64:
      return "float64";
  }
  return "unknown";
}

/// torch's CPU generator: `torch.Generator()` with its Mersenne Twister, its cached Box–Muller normal, and
/// the `torch.rand` / `torch.randint` / `torch.randn` algorithms of torch 1.13 on x86-64 (file comment).
///
/// A value type (copy = torch's `get_state`/`set_state`: both copies continue identically). Not thread-safe:
/// like torch, one generator serves one stream of calls.
class torch_generator {
 public:
  /// c10::detail::default_rng_seed_val, the seed of a `torch.Generator()` that is never seeded.
  static constexpr std::uint64_t default_seed = 67280421310721ull;

  /// `torch.Generator().manual_seed(seed)` (see manual_seed).
  explicit torch_generator(std::uint64_t seed = default_seed) { manual_seed(seed); }

  /// `Generator.manual_seed(seed)` → CPUGeneratorImpl::set_current_seed: engine = mt19937(seed & 0xffffffff)
  /// (MT19937RNGEngine.h `init_with_uint32`: state[0] = s, state[j] = 1812433253·(state[j-1] ^
  /// (state[j-1] >> 30)) plus j, mod 2^32; std::mt19937's seeding, the same words), and both cached normals
  /// cleared. Only the low 32 bits of the seed matter: seeds 2^32 and 0 give the same numbers, although
  /// initial_seed() still reports the full value.
  torch_generator& manual_seed(std::uint64_t seed) {
    seed_ = seed;
    engine_.seed(static_cast<std::mt19937::result_type>(seed & 0xFFFFFFFFu));
    has_cached_normal_ = false;
    cached_normal_ = 0.0;
    words_used_ = 0;
    return *this;
  }

  /// `Generator.initial_seed()`: the full 64-bit value last given to manual_seed.
  [[nodiscard]] std::uint64_t initial_seed() const noexcept { return seed_; }

  /// CPUGeneratorImpl::random(): the next 32-bit MT19937 output (standard twist, MATRIX_A = 0x9908b0df,
  /// tempering 11 / 7 & 0x9d2c5680 / 15 & 0xefc60000 / 18).
  [[nodiscard]] std::uint32_t random() {
    ++words_used_;
    return static_cast<std::uint32_t>(engine_());
  }

  /// How many 32-bit outputs random() has produced since the last manual_seed (random64() counts two).
  [[nodiscard]] std::uint64_t words_used() const noexcept { return words_used_; }

  /// CPUGeneratorImpl::random64(): two outputs, the first one the high word (`make64BitsFrom32Bits(hi, lo)`).
  [[nodiscard]] std::uint64_t random64() {
    const std::uint64_t hi = random();
    const std::uint64_t lo = random();
    return (hi << 32) | lo;
  }

  /// True when the generator holds the sine half of a scalar-path Box–Muller pair
  /// (`next_double_normal_sample`): the next scalar-path normal (a randn of fewer than 16 elements) is then
  /// that value, without drawing.
  [[nodiscard]] bool has_cached_normal() const noexcept { return has_cached_normal_; }

  /// `torch.rand(n, generator=g)` (float32): uniform_real (TransformationHelper.h) of one random() each,
  /// u = (v & (2^24 - 1)) · 2^-24, exact, in order.
  void rand(std::span<float> out) {
    for (float& u : out)
      u = uniform_float32();
  }
  /// `torch.rand(n, generator=g, dtype=torch.float64)`: one random64() each, u = (v & (2^53 - 1)) · 2^-53.
  void rand(std::span<double> out) {
    for (double& u : out)
      u = uniform_float64();
  }

  /// `torch.randint(low, high, (n,), generator=g)` (int64; random_from_to_kernel +
  /// uniform_int_from_to_distribution in DistributionsHelper.h): range = high - low; each value is
  /// (random64() % range) + low when range >= 2^32, else (random() % range) + low (unsigned modulo,
  /// two's-complement wrap of the sum). Throws std::invalid_argument unless low < high.
  void randint(std::span<std::int64_t> out, std::int64_t low, std::int64_t high) {
    if (!(low < high))
      detail::throw_invalid("torch_generator::randint", "high",
                            "must be greater than low = " + std::to_string(low), high);
    const std::uint64_t range = static_cast<std::uint64_t>(high) - static_cast<std::uint64_t>(low);
    const bool wide = range >= (std::uint64_t{1} << 32);
    for (std::int64_t& v : out) {
      const std::uint64_t raw = wide ? random64() : static_cast<std::uint64_t>(random());
      v = static_cast<std::int64_t>(raw % range + static_cast<std::uint64_t>(low));
    }
  }

  /// `torch.randn(n, generator=g)` for float32 (normal_kernel, DistributionTemplates.h):
  /// - n < 16: the scalar path, one scalar_normal() per element rounded to float;
  /// - n >= 16: `normal_fill_AVX2`: n uniforms (one random() each), then every full block of 16 through
  ///   torch_cpu::normal_block16 (radii from the first 8, angles from the last 8; outputs 0..7 the cosines,
  ///   8..15 the sines; AVX2 + FMA instructions when the CPU has them, the same bits); when n % 16 != 0, 16
  ///   fresh uniforms overwrite d[n-16, n) and that window is transformed as one more block (n + 16 uniforms
  ///   in all). Neither uses nor clears the cached normal.
  void randn(std::span<float> out) {
    const std::size_t n = out.size();
    if (n < 16) {
      for (float& v : out)
        v = static_cast<float>(scalar_normal());
      return;
    }
    float* d = out.data();
    for (std::size_t i = 0; i < n; ++i)
      d[i] = uniform_float32();
    detail::torch_cpu::normal_blocks16(d, n / 16);
    if (n % 16 != 0) {
      float* tail = d + (n - 16);
      for (std::size_t i = 0; i < 16; ++i)
        tail[i] = uniform_float32();
      detail::torch_cpu::normal_blocks16(tail, 1);
    }
  }

  /// `torch.randn(n, generator=g, dtype=torch.float64)`: n < 16 the scalar path (scalar_normal()); n >= 16
  /// `normal_fill<double>`: n uniforms (one random64() each), blocks of 16 with u1 = 1 - d[j], u2 = d[8 + j],
  /// r = sqrt(-2·log(u1)), θ = 6.283185307179586·u2, d[j] = r·cos θ, d[8 + j] = r·sin θ (libm, double), and
  /// the same 16-uniform tail rule as the float32 path.
  void randn(std::span<double> out) {
    const std::size_t n = out.size();
    if (n < 16) {
      for (double& v : out)
        v = scalar_normal();
      return;
    }
    double* d = out.data();
    for (std::size_t i = 0; i < n; ++i)
      d[i] = uniform_float64();
    for (std::size_t i = 0; i + 16 <= n; i += 16)
      normal_block16_float64(d + i);
    if (n % 16 != 0) {
      double* tail = d + (n - 16);
      for (std::size_t i = 0; i < 16; ++i)
        tail[i] = uniform_float64();
      normal_block16_float64(tail);
    }
  }

  /// `torch.randn(n, generator=g, dtype=torch.float16)`, written as binary16 bit patterns: n < 16 the scalar
  /// path (scalar_normal() → float → half, as `static_cast<at::Half>(double)` converts); n >= 16
  /// `normal_fill<at::Half>`: uniforms u = (random() & 0x7FF)·2^-11, blocks of 16 with u1 = half(1 - d[j]), r
  /// = half(sqrtf(-2·logf(u1))), θ = half(float(6.283185307179586·u2)), d[j] = half(r·cosf(θ)), d[8 + j] =
  /// half(r·sinf(θ)) (float arithmetic), and the 16-uniform tail rule.
  void randn_float16(std::span<std::uint16_t> out_bits) {
    const std::size_t n = out_bits.size();
    if (n < 16) {
      for (std::uint16_t& v : out_bits)
        v = detail::float_to_half_bits(static_cast<float>(scalar_normal()));
      return;
    }
    std::uint16_t* d = out_bits.data();
    for (std::size_t i = 0; i < n; ++i)
      d[i] = uniform_float16_bits();
    for (std::size_t i = 0; i + 16 <= n; i += 16)
      normal_block16_float16(d + i);
    if (n % 16 != 0) {
      std::uint16_t* tail = d + (n - 16);
      for (std::size_t i = 0; i < 16; ++i)
        tail[i] = uniform_float16_bits();
      normal_block16_float16(tail);
    }
  }

  /// One normal of the scalar path (`at::normal_distribution<double>`, DistributionsHelper.h): the cached
  /// normal if there is one (then cleared); else u1 = uniform64, u2 = uniform64 (random64() each, 53 bits),
  /// r = sqrt(-2·log(1 - u2)), θ = 6.283185307179586·u1 (libm, double), cache r·sin θ and return r·cos θ. The
  /// value passes through `normal(v, mean = 0, std = 1) = v·1 + 0` (TransformationHelper.h), which turns -0
  /// into +0.
  [[nodiscard]] double scalar_normal() {
    if (has_cached_normal_) {
      has_cached_normal_ = false;
      return cached_normal_ + 0.0;
    }
    const double u1 = uniform_float64();
    const double u2 = uniform_float64();
    const double radius = std::sqrt(-2.0 * std::log(1.0 - u2));
    const double theta = 6.283185307179586 * u1;
    cached_normal_ = radius * std::sin(theta);
    has_cached_normal_ = true;
    return radius * std::cos(theta) + 0.0;
  }

 private:
  /// `uniform_real_distribution<float>(0, 1)`: the low 24 bits of one output times 2^-24.
  [[nodiscard]] float uniform_float32() { return static_cast<float>(random() & 0xFFFFFFu) * 0x1p-24f; }
  /// `uniform_real_distribution<double>(0, 1)`: the low 53 bits of random64() times 2^-53.
  [[nodiscard]] double uniform_float64() {
    return static_cast<double>(random64() & ((std::uint64_t{1} << 53) - 1u)) * 0x1p-53;
  }
  /// `uniform_real_distribution<at::Half>(0, 1)`: the low 11 bits of one output times 2^-11, as binary16
  /// (exact).
  [[nodiscard]] std::uint16_t uniform_float16_bits() {
    return detail::float_to_half_bits(static_cast<float>(random() & 0x7FFu) * 0x1p-11f);
  }

  /// `normal_fill_16<double>` (DistributionTemplates.h) with mean 0, std 1.
  static void normal_block16_float64(double* d) {
    for (std::size_t j = 0; j < 8; ++j) {
      const double u1 = 1.0 - d[j];
      const double u2 = d[j + 8];
      const double radius = std::sqrt(-2.0 * std::log(u1));
      const double theta = 6.283185307179586 * u2;
      d[j] = radius * std::cos(theta) + 0.0;
      d[j + 8] = radius * std::sin(theta) + 0.0;
    }
  }

  /// `normal_fill_16<at::Half>`: c10::Half arithmetic goes through float; assignments round to binary16 (a
  /// double θ first to float, as at::Half(float) is the only converting constructor).
  static void normal_block16_float16(std::uint16_t* d) {
    using detail::float_to_half_bits;
    using detail::half_bits_to_float;
    for (std::size_t j = 0; j < 8; ++j) {
      const float u1 = half_bits_to_float(float_to_half_bits(1.0f - half_bits_to_float(d[j])));
      const double u2 = half_bits_to_float(d[j + 8]);
      const float radius = half_bits_to_float(float_to_half_bits(std::sqrt(-2.0f * std::log(u1))));
      const float theta = half_bits_to_float(float_to_half_bits(static_cast<float>(6.283185307179586 * u2)));
      d[j] = float_to_half_bits(radius * std::cos(theta) + 0.0f);
      d[j + 8] = float_to_half_bits(radius * std::sin(theta) + 0.0f);
    }
  }

  std::mt19937 engine_;
  std::uint64_t seed_ = default_seed;
  std::uint64_t words_used_ = 0;
  double cached_normal_ = 0.0;
  bool has_cached_normal_ = false;
};

}  // namespace skipstep
