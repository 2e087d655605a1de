/// @file
/// The element loops of a sampler step (DESIGN.md §7), kept out of line so that each is compiled as a small function
/// of its own: the vectorizer sees a clean restrict loop and the register allocator nothing else (inlined into the
/// large apply_step, GCC 12 kept a spill store inside the fused loop and lost ~25% in cache). One call per step
/// (deterministic) or per 256-element noise block (noisy) is noise next to the loop.
///
/// No FMA is introduced by the code: whether `a*x + b*m` contracts is the user's -ffp-contract choice, the same for
/// every backend, since all of them reach these functions through a std::span.
#pragma once

#include <cstddef>

#if defined(__GNUC__) || defined(__clang__)
#define SKIPSTEP_KERNEL_NOINLINE __attribute__((noinline))
#elif defined(_MSC_VER)
#define SKIPSTEP_KERNEL_NOINLINE __declspec(noinline)
#else
#define SKIPSTEP_KERNEL_NOINLINE
#endif

#if defined(__GNUC__) || defined(__clang__) || defined(_MSC_VER)
#define SKIPSTEP_RESTRICT __restrict
#else
#define SKIPSTEP_RESTRICT
#endif

namespace skipstep::detail {

/// x[i] ← a·x[i] + b·m[i], i < n: the fused deterministic step (one read of x and m, one write of x).
template <class T>
SKIPSTEP_KERNEL_NOINLINE void fused_step_kernel(T* SKIPSTEP_RESTRICT x, const T* SKIPSTEP_RESTRICT m, std::size_t n,
                                                T a, T b) noexcept {
  for (std::size_t i = 0; i < n; ++i) x[i] = a * x[i] + b * m[i];
}

/// x[i] ← a·x[i] + b·m[i] + s·z[i], i < n: the fused noisy step over one noise block.
template <class T>
SKIPSTEP_KERNEL_NOINLINE void fused_noisy_step_kernel(T* SKIPSTEP_RESTRICT x, const T* SKIPSTEP_RESTRICT m,
                                                      const T* SKIPSTEP_RESTRICT z, std::size_t n, T a, T b,
                                                      T s) noexcept {
  for (std::size_t i = 0; i < n; ++i) x[i] = a * x[i] + b * m[i] + s * z[i];
}

/// The fused deterministic step that also writes x̂0 (for a callback): x0[i] ← px·x[i] + pm·m[i], then
/// x[i] ← a·x[i] + b·m[i]. The new sample is computed exactly as by fused_step_kernel, so observing x̂0 never
/// changes the numbers.
template <class T>
SKIPSTEP_KERNEL_NOINLINE void fused_step_x0_kernel(T* SKIPSTEP_RESTRICT x, const T* SKIPSTEP_RESTRICT m,
                                                   T* SKIPSTEP_RESTRICT x0, std::size_t n, T a, T b, T px,
                                                   T pm) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    const T xv = x[i], mv = m[i];
    x0[i] = px * xv + pm * mv;
    x[i] = a * xv + b * mv;
  }
}

/// The fused noisy step over one noise block that also writes x̂0 (see fused_step_x0_kernel).
template <class T>
SKIPSTEP_KERNEL_NOINLINE void fused_noisy_step_x0_kernel(T* SKIPSTEP_RESTRICT x, const T* SKIPSTEP_RESTRICT m,
                                                         const T* SKIPSTEP_RESTRICT z, T* SKIPSTEP_RESTRICT x0,
                                                         std::size_t n, T a, T b, T s, T px, T pm) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    const T xv = x[i], mv = m[i];
    x0[i] = px * xv + pm * mv;
    x[i] = a * xv + b * mv + s * z[i];
  }
}

}  // namespace skipstep::detail

#undef SKIPSTEP_RESTRICT
#undef SKIPSTEP_KERNEL_NOINLINE
