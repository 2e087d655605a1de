// Replaces the global operator new / delete of a test binary so that a test can count heap allocations
// (skipstep_test::allocations). Replacement allocation functions cannot be inline: include this header in exactly
// one translation unit of the executable (each tests/unit/test_<name>.cpp is its own executable).
#pragma once

#include <atomic>
#include <cstdlib>
#include <new>

namespace skipstep_test {
/// Every global allocation made by this binary since it started.
inline std::atomic<long> allocations{0};
}  // namespace skipstep_test

void* operator new(std::size_t n) {
  skipstep_test::allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  skipstep_test::allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n == 0 ? 1 : n);
}
// The replacements pair malloc with free by design; GCC cannot see that once they are inlined.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
