// Benchmarks of the normal generator (issue 5): skipstep::philox_normal::fill against
// std::normal_distribution<float> driven by std::mt19937, on the sizes.
//   g++ -std=c++20 -O3 -DNDEBUG -I include benchmarks/bench_random.cpp -lbenchmark -lbenchmark_main -lpthread
// Names are BM_<what>/<n>; items/s counts normals produced.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include <skipstep/random.hpp>

namespace {

void sizes(benchmark::internal::Benchmark* b) {
  for (const std::int64_t n : {112, 16384, 65536, 1048576, 4194304}) {
    b->Arg(n);
  }
}

/// philox_normal::fill of n elements of type T, a new step each iteration.
template <class T>
void fill_normals(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  std::vector<T> out(n);
  const skipstep::philox_normal rng{0x5EED5EED1234ABCDu};
  std::uint64_t step = 0;
  for (auto _ : state) {
    rng.fill(out, 3, step++ & 0xFFFFu);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0) *
                          static_cast<std::int64_t>(sizeof(T)));
}

void BM_Normal_Fill(benchmark::State& state) { fill_normals<float>(state); }
BENCHMARK(BM_Normal_Fill)->Apply(sizes);

void BM_Normal_Fill_Double(benchmark::State& state) { fill_normals<double>(state); }
BENCHMARK(BM_Normal_Fill_Double)->Apply(sizes);

// The scalar reference path, one normal_at call per element (for scale, not a target).
void BM_Normal_At(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  std::vector<float> out(n);
  const skipstep::philox_normal rng{0x5EED5EED1234ABCDu};
  for (auto _ : state) {
    for (std::size_t j = 0; j < n; ++j) {
      out[j] = rng.normal_at<float>(3, 0, j);
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_Normal_At)->Arg(16384);

void BM_StdNormal_Fill(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  std::vector<float> out(n);
  std::mt19937 gen{12345u};
  std::normal_distribution<float> dist{0.0f, 1.0f};
  for (auto _ : state) {
    for (auto& x : out) {
      x = dist(gen);
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0) *
                          static_cast<std::int64_t>(sizeof(float)));
}
BENCHMARK(BM_StdNormal_Fill)->Apply(sizes);

}  // namespace
