/// @file
/// torch's CUDA generator (`torch.Generator("cuda").manual_seed(s)` + `torch.randn(..., device="cuda")`),
/// imitated on the CPU: APPROXIMATE, not bit for bit.
///
/// What torch does (pytorch v1.13 aten/src/ATen/native/cuda/DistributionTemplates.h `normal_kernel` →
/// `distribution_nullary_kernel` / `distribution_elementwise_grid_stride_kernel`, `calc_execution_policy`;
/// aten/src/ATen/cuda/CUDAGeneratorImpl.cpp `philox_cuda_state`; curand_kernel.h / curand_normal.h):
/// - a launch of `threads` = 256·min(SMs·(max threads per SM)/256, ⌈numel/256⌉) threads; thread `idx` runs
///   `curand_init(seed, subsequence = idx, offset)`, i.e. Philox4x32-10 with key (seed_lo, seed_hi) and counter
///   (offset/4 + j, 0, idx, 0) for its j-th draw;
/// - each draw is `curand_normal4`: the four words (x, y, z, w) of one Philox block, two Box–Muller pairs
///   u = x·2⁻³² + 2⁻³³, v = y·2π·2⁻³² + π·2⁻³², n₀ = √(−2 ln u)·sin v, n₁ = √(−2 ln u)·cos v (and z, w for n₂, n₃);
/// - element li gets component (li / threads) mod 4 of draw li / (4·threads) of thread li mod threads;
/// - the generator's offset then advances by 4·⌈numel / (4·threads)⌉.
/// So for numel ≤ threads (every tensor up to SMs × max-threads-per-SM elements, e.g. 82·1536 = 125952 on an
/// RTX 3090: any SD 1.5 / SDXL latent up to batch 7 / 1), element i is n₀ of counter (offset/4, 0, i, 0) and the
/// offset advances by 4 per call: the rule AUTOMATIC1111's "NV" RNG source and stable-diffusion.cpp use for every
/// size (their `rng_philox`), which device_grid{} (no device limit) selects. Larger tensors depend on the GPU's SM
/// count: give it with device_grid{sm_count, max_threads_per_sm}.
///
/// Why approximate: the GPU evaluates logf and sincosf with its own (fast, device-specific) approximations; here
/// they are evaluated in double and rounded once to float, so values can differ from a GPU's in the last bits
/// (measured against published torch CUDA prints: tests/unit/test_torch_cuda_generator.cpp, README "The same
/// noise as a PyTorch run"). Use it to reproduce *a* seed's image closely, not to claim bit parity.
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>

#include "skipstep/detail/error.hpp"
#include "skipstep/detail/philox.hpp"
#include "skipstep/interop/detail/float16.hpp"

namespace skipstep {

/// The launch shape torch picks for a CUDA distribution kernel (calc_execution_policy): threads per launch =
/// 256·min(sm_count·max_threads_per_sm/256, ⌈numel/256⌉). sm_count = 0 means no device limit (one thread per
/// element: A1111's / stable-diffusion.cpp's rule, exact on any GPU for numel ≤ its SMs × max threads per SM).
struct device_grid {
  unsigned sm_count = 0;              ///< cudaDeviceProp::multiProcessorCount (0: unbounded).
  unsigned max_threads_per_sm = 2048; ///< cudaDeviceProp::maxThreadsPerMultiProcessor.
};

/// torch's CUDA Philox generator for `torch.randn` in float32 and float16 (file comment: approximate).
/// A value type (copy = get_state / set_state). Not thread-safe.
class torch_cuda_generator {
 public:
  /// c10::detail::default_rng_seed_val, the seed of a CUDA generator that is never seeded.
  static constexpr std::uint64_t default_seed = 67280421310721ull;

  /// `torch.Generator("cuda").manual_seed(seed)`: key = seed, offset 0.
  explicit torch_cuda_generator(std::uint64_t seed = default_seed, device_grid device = {})
      : seed_(seed), device_(device) {
    check_device("torch_cuda_generator", device);
  }

  /// `manual_seed(seed)` (CUDAGeneratorImpl::set_current_seed): the key, and the offset back to 0.
  torch_cuda_generator& manual_seed(std::uint64_t seed) noexcept {
    seed_ = seed;
    offset_ = 0;
    return *this;
  }

  /// The seed (`initial_seed()`).
  [[nodiscard]] std::uint64_t initial_seed() const noexcept { return seed_; }

  /// The Philox offset in 32-bit words (`philox_offset_per_thread`, a multiple of 4).
  [[nodiscard]] std::uint64_t offset() const noexcept { return offset_; }

  /// Sets the Philox offset (`set_offset`; torch's CUDA state tensor carries it). Must be a multiple of 4.
  void set_offset(std::uint64_t offset) {
    if (offset % 4 != 0)
      detail::throw_invalid("torch_cuda_generator::set_offset", "offset", "must be a multiple of 4", offset);
    offset_ = offset;
  }

  /// `torch.randn(out.size(), device="cuda", generator=g)` in float32 (see the file comment for the layout).
  void randn(std::span<float> out) {
    fill(out.size(), [&](std::size_t i, double v) { out[i] = static_cast<float>(v); });
  }

  /// The same draw in float16 (torch computes in float, then rounds to half): IEEE binary16 bit patterns.
  void randn_float16(std::span<std::uint16_t> out_bits) {
    fill(out_bits.size(),
         [&](std::size_t i, double v) { out_bits[i] = detail::float_to_half_bits(static_cast<float>(v)); });
  }

  /// Threads of the launch for numel elements (calc_execution_policy; the device_grid rule).
  [[nodiscard]] std::uint64_t threads_for(std::uint64_t numel) const noexcept {
    const std::uint64_t blocks = (numel + 255) / 256;
    if (device_.sm_count == 0) return blocks * 256;
    const std::uint64_t limit = std::uint64_t{device_.sm_count} * (device_.max_threads_per_sm / 256);
    return (blocks < limit ? blocks : limit) * 256;
  }

 private:
  static void check_device(const char* fn, const device_grid& d) {
    if (d.sm_count != 0 && d.max_threads_per_sm < 256)
      detail::throw_invalid(fn, "device.max_threads_per_sm", "must be >= 256 (one block of 256 threads)",
                            d.max_threads_per_sm);
  }

  /// Component c of curand_normal4 on one Philox block (Box–Muller on words 2p, 2p + 1, p = c/2: sin for even c,
  /// cos for odd), in double (one rounding to float after).
  static double normal_component(const std::array<std::uint32_t, 4>& w, std::uint64_t c) noexcept {
    constexpr double inv32 = 0x1p-32;
    constexpr double two_pi = 6.283185307179586476925286766559;
    const std::size_t p = static_cast<std::size_t>(c / 2);
    const double u = static_cast<double>(w[2 * p]) * inv32 + inv32 / 2.0;
    const double v = static_cast<double>(w[2 * p + 1]) * (inv32 * two_pi) + inv32 * two_pi / 2.0;
    const double s = std::sqrt(-2.0 * std::log(u));
    return s * (c % 2 == 0 ? std::sin(v) : std::cos(v));
  }

  template <class Store>
  void fill(std::size_t numel, Store&& store) {
    if (numel == 0) return;
    const std::uint64_t threads = threads_for(numel);
    const std::uint64_t draws = (numel - 1) / (4 * threads) + 1;  // loop iterations of each thread
    const std::array<std::uint32_t, 2> key{static_cast<std::uint32_t>(seed_), static_cast<std::uint32_t>(seed_ >> 32)};
    const std::uint64_t base = offset_ / 4;
    for (std::size_t li = 0; li < numel; ++li) {
      const std::uint64_t idx = li % threads, q = li / threads;
      const std::uint64_t draw = base + q / 4;
      const std::array<std::uint32_t, 4> w = detail::philox4x32_10(
          {static_cast<std::uint32_t>(draw), static_cast<std::uint32_t>(draw >> 32), static_cast<std::uint32_t>(idx),
           static_cast<std::uint32_t>(idx >> 32)},
          key);
      store(li, normal_component(w, q % 4));
    }
    offset_ += 4 * draws;
  }

  std::uint64_t seed_ = default_seed;
  std::uint64_t offset_ = 0;
  device_grid device_{};
};

}  // namespace skipstep
