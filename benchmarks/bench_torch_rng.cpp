// Benchmarks of torch's CPU generator (skipstep::torch_generator): torch.randn for float32 (the 16-wide
// AVX2-exact vector path), float64 and float16, the scalar path (numel < 16), and the raw MT19937 words.
//   build/benchmarks/bench_torch_rng --benchmark_min_time=0.2
// Names are BM_<what>/<n>; items/s counts normals produced (ns per normal = 1e9 / items_per_second).
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include <skipstep/interop/torch_generator.hpp>

namespace {

void sizes(benchmark::internal::Benchmark* b) {
  for (const std::int64_t n : {1024, 16384, 65536})
    b->Arg(n);
}

/// torch.randn(n) of type T per iteration, one generator throughout.
template <class T>
void randn(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  std::vector<T> out(n);
  skipstep::torch_generator g(42);
  for (auto _ : state) {
    if constexpr (std::is_same_v<T, std::uint16_t>)
      g.randn_float16(out);
    else
      g.randn(std::span<T>(out));
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}

void BM_TorchRandn_Float32(benchmark::State& state) {
  randn<float>(state);
}
BENCHMARK(BM_TorchRandn_Float32)->Apply(sizes);

void BM_TorchRandn_Float64(benchmark::State& state) {
  randn<double>(state);
}
BENCHMARK(BM_TorchRandn_Float64)->Apply(sizes);

void BM_TorchRandn_Float16(benchmark::State& state) {
  randn<std::uint16_t>(state);
}
BENCHMARK(BM_TorchRandn_Float16)->Arg(16384);

// The scalar path: numel < 16, one double Box–Muller pair per two normals (float32 tensor of 15).
void BM_TorchRandn_Scalar(benchmark::State& state) {
  randn<float>(state);
}
BENCHMARK(BM_TorchRandn_Scalar)->Arg(15);

// The engine alone: 32-bit MT19937 outputs (items = words).
void BM_TorchRandom(benchmark::State& state) {
  skipstep::torch_generator g(42);
  for (auto _ : state) {
    std::uint32_t acc = 0;
    for (int i = 0; i < 1024; ++i)
      acc ^= g.random();
    benchmark::DoNotOptimize(acc);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * 1024);
}
BENCHMARK(BM_TorchRandom);

}  // namespace
