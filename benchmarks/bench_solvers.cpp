// Benchmarks of the solver engine's steps (one row, or Heun's row pair) beside fused baseline loops that move the
// same bytes, float32 spans, one thread, n in {112, 16384, 1048576}:
//   BM_Solver_<name>/<n>            one step of a real sampler's plan, run as sampler::sample runs it (apply_step for
//                                   plain rows, detail::apply_row_range for rows with history or state)
//   BM_Streams_<r>r<w>w/<n>         a hand-written fused loop reading r and writing w float streams of n elements
//                                   (x' = a·x + b·m + Σ c_j·e_j, extra outputs d·x + e·m or a copy of x); extra
//                                   written streams overwrite extra read streams first, as a solver's history store
//                                   overwrites the slot it read, so that both move the same lines of memory
//   BM_Streams_<r>r<w>w_Philox/<n>  the same plus s·z, z drawn by philox_normal::fill in 256-element stack blocks
//                                   inside the pass, as the noisy steps draw it
//   BM_Sampler_PerStep_<name>/112   a full 50-step sampler::sample run with a trivial writing predictor (a robot
//                                   policy's 112-float action chunk); the JSON counter `steps` = 50: per-step time is
//                                   cpu_time / steps
//   BM_Bare_PerStep_<name>/112      the same predictor calls and step calls written by hand (no sampler); the
//                                   sampler's per-step overhead is (Sampler_PerStep − Bare_PerStep) / steps
//
// Which baseline each solver's step is compared with (ratio = median cpu_time of the solver row / of the baseline
// row at the same n, from the JSON of one run; scripts/bench prints them):
//   | BM_Solver_<name>  | streams of the step (S: Heun's saved state, H: history buffers, z: noise)  | baseline                     |
//   |-------------------|----------------------------------------------------------------------------|------------------------------|
//   | DDIM (reference)  | x, m -> x                                                                  | BM_Streams_2r1w              |
//   | Euler             | x, m -> x                                                                  | BM_Streams_2r1w              |
//   | FlowEuler         | x, m -> x                                                                  | BM_Streams_2r1w              |
//   | EulerAncestral    | x, m (+ z) -> x                                                            | BM_Streams_2r1w_Philox       |
//   | Heun (row pair)   | row 1: x, m -> x, S, H; row 2: x, m, S, H -> x                             | BM_Streams_2r3w + _4r1w (sum) |
//   | DPMpp2M           | x, m, H -> x, H (one ring slot: the store overwrites the slot it read)     | BM_Streams_3r2w              |
//   | DPMpp3M           | x, m, H_{i-1}, H_{i-2} -> x, H_i (H_i overwrites H_{i-2})                  | BM_Streams_4r2w              |
//   | SDEDPMpp2M        | x, m, H (+ z) -> x, H                                                      | BM_Streams_3r2w_Philox       |
//   | UniPC2 (bh2)      | x, m, S, H_a, H_b -> x, S (combined new state), H_b (store over a read)   | BM_Streams_5r3w              |
//   | UniPC3            | x, m, S, H_a, H_b, H_c -> x, S, H_c                                        | BM_Streams_6r3w              |
//   | DEIS3             | x, m, H_a, H_b -> x, H_b                                                   | BM_Streams_4r2w              |
//   | DPMSingle2 (block)| row 1: x, m -> x, S, H; row 2: x, m, S, H -> x (as Heun)                   | BM_Streams_2r3w + _4r1w (sum) |
//   | PNDM (PLMS AB4)   | x, m, H_a, H_b, H_c -> x, H_c                                              | BM_Streams_5r2w              |
//   | iPNDM             | x, m, H_a, H_b, H_c -> x, H_c                                              | BM_Streams_5r2w              |
//   | LCM, TCD          | x, m (+ z) -> x                                                            | BM_Streams_2r1w_Philox       |
// bytes/s counts 4 bytes per element and stream of that table (noise excluded); items/s counts elements.
//
// Values stay bounded with identical work per iteration: the σ-grid solvers (Euler, Euler ancestral, Heun, DPM++)
// repeat one mid-run row (step 10 of 20, scaled_linear) on the same buffers, with sample prediction (x̂0 = m): then
// every such step scales x by σ_t/σ_s < 1 (Heun's pair too) and the history holds x̂0 = m, so x converges to a fixed
// point set by m (m > 0 everywhere, so no value decays into subnormals), while the history/state buffers cycle
// through the same slots as in a run. The prediction type changes only coefficient values, not the work: the
// kernels see run-time scalars. (With ε or v prediction, repeating one step grows x without bound.) DDIM alternates a step with its inverse
// (as bench_step does) and FlowEuler the two rows of the flow grid 0.5 -> 0.6 -> 0.5. After timing, every benchmark
// checks that x is finite and bounded (SkipWithError otherwise).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <skipstep/schedule/flow_grid.hpp>
#include <skipstep/skipstep.hpp>
#include <skipstep/solver/dpm_solver.hpp>
#include <skipstep/solver/consistency.hpp>
#include <skipstep/solver/deis.hpp>
#include <skipstep/solver/dpm_solver_singlestep.hpp>
#include <skipstep/solver/euler.hpp>
#include <skipstep/solver/ipndm.hpp>
#include <skipstep/solver/pndm.hpp>
#include <skipstep/solver/unipc.hpp>

#if defined(__GNUC__) || defined(__clang__)
#define BENCH_NOINLINE __attribute__((noinline))
#else
#define BENCH_NOINLINE
#endif

namespace {

using namespace skipstep;

void sizes(benchmark::internal::Benchmark* b) {
  for (const std::int64_t n : {112, 16384, 1048576}) b->Arg(n);
}

void counters(benchmark::State& state, int streams) {
  const auto n = state.range(0);
  const auto it = static_cast<std::int64_t>(state.iterations());
  state.SetItemsProcessed(it * n);
  state.SetBytesProcessed(it * n * streams * static_cast<std::int64_t>(sizeof(float)));
}

/// `count` buffers of n floats in one allocation, each 64-byte aligned and starting 64 bytes after the previous one
/// ends (so that equal indices of different buffers never share their low 12 address bits: no 4K aliasing). Buffer
/// 0 (x) holds a ramp in [-1, 1], the others values in [0.25, 0.75] (never 0). Solver and baseline rows use the same
/// layout, so that ratios compare code, not memory placement.
struct buffers {
  std::vector<float> storage;
  std::vector<std::span<float>> v;
  buffers(std::size_t n, std::size_t count) : storage(count * (n + 16) + 16) {
    const auto addr = reinterpret_cast<std::uintptr_t>(storage.data());
    const std::size_t skip = ((64 - addr % 64) % 64) / sizeof(float);
    for (std::size_t j = 0; j < count; ++j) {
      v.emplace_back(storage.data() + skip + j * (n + 16), n);
      for (std::size_t i = 0; i < n; ++i)
        v[j][i] = j == 0 ? static_cast<float>(static_cast<int>(i % 97) - 48) / 48.0f
                         : 0.25f + 0.5f * static_cast<float>((i + 13 * j) % 89) / 88.0f;
    }
  }
  float* operator[](std::size_t j) { return v[j].data(); }
};

/// Skips the benchmark with an error unless every x is finite and |x| < 1e6 (values stayed bounded).
void check_bounded(benchmark::State& state, std::span<const float> x) {
  for (const float v : x)
    if (!std::isfinite(v) || std::abs(v) >= 1e6f) {
      state.SkipWithError("values did not stay bounded");
      return;
    }
}

// --- the baselines: hand-written fused loops, out of line with restrict pointers like the library's kernels ------

/// x ← a·x + b·m.
BENCH_NOINLINE void streams_2r1w(float* __restrict x, const float* __restrict m, std::size_t n, float a, float b) {
  for (std::size_t i = 0; i < n; ++i) x[i] = a * x[i] + b * m[i];
}
/// x ← a·x + b·m, s ← x (old), h ← d·x + e·m (old x): two fresh output streams.
BENCH_NOINLINE void streams_2r3w(float* __restrict x, const float* __restrict m, float* __restrict s,
                                 float* __restrict h, std::size_t n, float a, float b, float d, float e) {
  for (std::size_t i = 0; i < n; ++i) {
    const float xv = x[i], mv = m[i];
    x[i] = a * xv + b * mv;
    h[i] = d * xv + e * mv;
    s[i] = xv;
  }
}
/// x ← a·x + b·m + c·s + c2·h.
BENCH_NOINLINE void streams_4r1w(float* __restrict x, const float* __restrict m, const float* __restrict s,
                                 const float* __restrict h, std::size_t n, float a, float b, float c, float c2) {
  for (std::size_t i = 0; i < n; ++i) x[i] = a * x[i] + b * m[i] + c * s[i] + c2 * h[i];
}
/// x ← a·x + b·m + c·h, h ← d·x + e·m (in place over the h it read).
BENCH_NOINLINE void streams_3r2w(float* __restrict x, const float* __restrict m, float* __restrict h, std::size_t n,
                                 float a, float b, float c, float d, float e) {
  for (std::size_t i = 0; i < n; ++i) {
    const float xv = x[i], mv = m[i];
    x[i] = a * xv + b * mv + c * h[i];
    h[i] = d * xv + e * mv;
  }
}
/// x ← a·x + b·m + c·h1 + c2·h2, h2 ← d·x + e·m (in place over h2).
BENCH_NOINLINE void streams_4r2w(float* __restrict x, const float* __restrict m, const float* __restrict h1,
                                 float* __restrict h2, std::size_t n, float a, float b, float c, float c2, float d,
                                 float e) {
  for (std::size_t i = 0; i < n; ++i) {
    const float xv = x[i], mv = m[i];
    x[i] = a * xv + b * mv + c * h1[i] + c2 * h2[i];
    h2[i] = d * xv + e * mv;
  }
}
/// x ← a·x + b·m + c·h1 + c2·h2 + c3·h3, h3 ← d·x + e·m (in place over h3: PNDM's/iPNDM's AB4 row).
BENCH_NOINLINE void streams_5r2w(float* __restrict x, const float* __restrict m, const float* __restrict h1,
                                 const float* __restrict h2, float* __restrict h3, std::size_t n, float a, float b,
                                 float c, float c2, float c3, float d, float e) {
  for (std::size_t i = 0; i < n; ++i) {
    const float xv = x[i], mv = m[i];
    x[i] = a * xv + b * mv + c * h1[i] + c2 * h2[i] + c3 * h3[i];
    h3[i] = d * xv + e * mv;
  }
}
/// x ← a·x + b·m + c·s + c2·h1 + c3·h2, s ← u_x·x + u_m·m + u_s·s + u_1·h1 + u_2·h2 (old values),
/// h2 ← d·x + e·m (in place over h2): UniPC order 2's row, which combines a new state S.
BENCH_NOINLINE void streams_5r3w(float* __restrict x, const float* __restrict m, float* __restrict s,
                                 const float* __restrict h1, float* __restrict h2, std::size_t n, float a, float b,
                                 float c, float c2, float c3, float d, float e) {
  for (std::size_t i = 0; i < n; ++i) {
    const float xv = x[i], mv = m[i], sv = s[i], h1v = h1[i], h2v = h2[i];
    x[i] = a * xv + b * mv + c * sv + c2 * h1v + c3 * h2v;
    s[i] = e * xv + d * mv + c2 * sv + c3 * h1v + c * h2v;
    h2[i] = d * xv + e * mv;
  }
}
/// streams_5r3w with a third history stream: x, m, s, h1, h2, h3 → x, s, h3 (UniPC order 3's row).
BENCH_NOINLINE void streams_6r3w(float* __restrict x, const float* __restrict m, float* __restrict s,
                                 const float* __restrict h1, const float* __restrict h2, float* __restrict h3,
                                 std::size_t n, float a, float b, float c, float c2, float c3, float d, float e) {
  for (std::size_t i = 0; i < n; ++i) {
    const float xv = x[i], mv = m[i], sv = s[i], h1v = h1[i], h2v = h2[i], h3v = h3[i];
    x[i] = a * xv + b * mv + c * sv + c2 * h1v + c3 * h2v + d * h3v;
    s[i] = e * xv + d * mv + c2 * sv + c3 * h1v + c * h2v + b * h3v;
    h3[i] = d * xv + e * mv;
  }
}
/// streams_2r1w plus s·z over one noise block.
BENCH_NOINLINE void streams_2r1w_z(float* __restrict x, const float* __restrict m, const float* __restrict z,
                                   std::size_t n, float a, float b, float s) {
  for (std::size_t i = 0; i < n; ++i) x[i] = a * x[i] + b * m[i] + s * z[i];
}
/// streams_3r2w plus s·z over one noise block.
BENCH_NOINLINE void streams_3r2w_z(float* __restrict x, const float* __restrict m, float* __restrict h,
                                   const float* __restrict z, std::size_t n, float a, float b, float c, float d,
                                   float e, float s) {
  for (std::size_t i = 0; i < n; ++i) {
    const float xv = x[i], mv = m[i];
    x[i] = a * xv + b * mv + c * h[i] + s * z[i];
    h[i] = d * xv + e * mv;
  }
}

/// Baseline coefficients: a contraction with a fixed point away from 0, all different (so that no product can be
/// shared) and hidden from the optimizer (DoNotOptimize before the loop), as the solvers' run-time scalars are.
struct weights {
  float a = 0.5f, b = 0.25f, c = 0.125f, c2 = 0.0625f, c3 = 0.03125f, d = 0.375f, e = 0.4375f, s = 0.01f;
};

template <class Kernel>
void run_streams(benchmark::State& state, std::size_t count, int streams, Kernel kernel) {
  const auto n = static_cast<std::size_t>(state.range(0));
  buffers buf(n, count);
  weights k;
  benchmark::DoNotOptimize(k);
  for (auto _ : state) {
    kernel(buf, n, k);
    benchmark::DoNotOptimize(buf[0]);
    benchmark::ClobberMemory();
  }
  check_bounded(state, buf.v[0]);
  counters(state, streams);
}

void BM_Streams_2r1w(benchmark::State& state) {
  run_streams(state, 2, 3, [](buffers& b, std::size_t n, const weights& k) { streams_2r1w(b[0], b[1], n, k.a, k.b); });
}
void BM_Streams_2r3w(benchmark::State& state) {
  run_streams(state, 4, 5, [](buffers& b, std::size_t n, const weights& k) { streams_2r3w(b[0], b[1], b[2], b[3], n, k.a, k.b, k.d, k.e); });
}
void BM_Streams_4r1w(benchmark::State& state) {
  run_streams(state, 4, 5, [](buffers& b, std::size_t n, const weights& k) { streams_4r1w(b[0], b[1], b[2], b[3], n, k.a, k.b, k.c, k.c2); });
}
void BM_Streams_3r2w(benchmark::State& state) {
  run_streams(state, 3, 5, [](buffers& b, std::size_t n, const weights& k) { streams_3r2w(b[0], b[1], b[2], n, k.a, k.b, k.c, k.d, k.e); });
}
void BM_Streams_4r2w(benchmark::State& state) {
  run_streams(state, 4, 6,
              [](buffers& b, std::size_t n, const weights& k) { streams_4r2w(b[0], b[1], b[2], b[3], n, k.a, k.b, k.c, k.c2, k.d, k.e); });
}

void BM_Streams_5r2w(benchmark::State& state) {
  run_streams(state, 5, 7, [](buffers& b, std::size_t n, const weights& k) {
    streams_5r2w(b[0], b[1], b[2], b[3], b[4], n, k.a, k.b, k.c, k.c2, k.c3, k.d, k.e);
  });
}
void BM_Streams_5r3w(benchmark::State& state) {
  run_streams(state, 5, 8, [](buffers& b, std::size_t n, const weights& k) {
    streams_5r3w(b[0], b[1], b[2], b[3], b[4], n, k.a, k.b, k.c, k.c2, k.c3, k.d, k.e);
  });
}
void BM_Streams_6r3w(benchmark::State& state) {
  run_streams(state, 6, 9, [](buffers& b, std::size_t n, const weights& k) {
    streams_6r3w(b[0], b[1], b[2], b[3], b[4], b[5], n, k.a, k.b, k.c, k.c2, k.c3, k.d, k.e);
  });
}

constexpr std::size_t block = 256;  // the engine's noise block (detail::noise_block)
const philox_normal bench_noise{0x5EED5EED1234ABCDu};

void BM_Streams_2r1w_Philox(benchmark::State& state) {
  run_streams(state, 2, 3, [](buffers& b, std::size_t n, const weights& k) {
    std::array<float, block> z;
    for (std::size_t j = 0; j < n; j += block) {
      const std::size_t len = std::min(block, n - j);
      bench_noise.fill(std::span<float>(z.data(), len), 0, 10, j);
      streams_2r1w_z(b[0] + j, b[1] + j, z.data(), len, k.a, k.b, k.s);
    }
  });
}
void BM_Streams_3r2w_Philox(benchmark::State& state) {
  run_streams(state, 3, 5, [](buffers& b, std::size_t n, const weights& k) {
    std::array<float, block> z;
    for (std::size_t j = 0; j < n; j += block) {
      const std::size_t len = std::min(block, n - j);
      bench_noise.fill(std::span<float>(z.data(), len), 0, 10, j);
      streams_3r2w_z(b[0] + j, b[1] + j, b[2] + j, z.data(), len, k.a, k.b, k.c, k.d, k.e, k.s);
    }
  });
}

BENCHMARK(BM_Streams_2r1w)->Apply(sizes);
BENCHMARK(BM_Streams_2r3w)->Apply(sizes);
BENCHMARK(BM_Streams_4r1w)->Apply(sizes);
BENCHMARK(BM_Streams_3r2w)->Apply(sizes);
BENCHMARK(BM_Streams_4r2w)->Apply(sizes);
BENCHMARK(BM_Streams_5r2w)->Apply(sizes);
BENCHMARK(BM_Streams_5r3w)->Apply(sizes);
BENCHMARK(BM_Streams_6r3w)->Apply(sizes);
BENCHMARK(BM_Streams_2r1w_Philox)->Apply(sizes);
BENCHMARK(BM_Streams_3r2w_Philox)->Apply(sizes);

// --- the solvers ----------------------------------------------------------------------------------------------------

float* const no_x0 = nullptr;  // no callback: no x̂0 output

/// Buffers of a step as sampler::sample holds them: x, m, the saved state S and the history ring.
struct step_buffers {
  buffers buf;
  std::array<float*, 8> history{};
  std::vector<float> scratch;
  step_buffers(std::size_t n, std::size_t slots) : buf(n, 3 + slots), scratch(n) {
    for (std::size_t k = 0; k < slots; ++k) history[k] = buf[3 + k];
  }
  std::span<float> x() { return buf.v[0]; }
  std::span<const float> m() { return buf.v[1]; }
  float* state() { return buf[2]; }
};

/// Row r of `s`'s plan on the buffers, dispatched as sampler::sample dispatches it (no callback, one sample, one
/// thread): apply_step for a plain row, detail::apply_row_range for a row with history or state.
template <class Noise>
void step_row(const sampler& s, std::size_t r, step_buffers& b, Noise& noise) {
  const solver_row& row = s.rows()[r];
  const affine_step& c = s.coefficients()[r];
  const x0_processing& processing = s.options().processing;
  const std::span<float> x = b.x();
  if (!row.extras.is_plain())
    detail::apply_row_range(c, row.extras, x.data(), b.m().data(), row.extras.uses_state() ? b.state() : nullptr,
                            b.history.data(), x.size(), processing, noise, row.step, no_x0, b.scratch.data(), 0,
                            1);
  else
    apply_step(c, x, b.m(), processing, 1, noise, row.step);
}

template <class Noise>
void run_rows(benchmark::State& state, const sampler& s, std::vector<std::size_t> rows, bool alternate, int streams,
              Noise noise) {
  const auto n = static_cast<std::size_t>(state.range(0));
  step_buffers b(n, s.history_slots());
  std::size_t k = 0;
  for (auto _ : state) {
    if (alternate) {
      step_row(s, rows[k & 1], b, noise);
      ++k;
    } else {
      for (const std::size_t r : rows) step_row(s, r, b, noise);
    }
    benchmark::DoNotOptimize(b.x().data());
    benchmark::ClobberMemory();
  }
  check_bounded(state, b.x());
  counters(state, streams);
}

const noise_schedule<>& sd_schedule() {
  static const noise_schedule<> schedule = noise_schedule<>::scaled_linear(1000);
  return schedule;
}
sampler_options v_prediction() {  // PNDM accepts epsilon or v only; with v the repeated row contracts
  sampler_options o;
  o.prediction = prediction_type::v;
  return o;
}
sampler_options sample_prediction() {
  sampler_options o;
  o.prediction = prediction_type::sample;
  return o;
}
constexpr std::size_t grid_steps = 20, mid_step = 10;
const sigma_grid& vp_grid() {
  static const sigma_grid grid = make_sigma_grid(sd_schedule(), grid_steps);
  return grid;
}
dpm_solver_options dpm(dpm_algorithm algorithm, int order) {
  dpm_solver_options o;
  o.algorithm = algorithm;
  o.order = order;
  return o;
}

/// Skips unless row r of `s` has the extras the table above assumes (reads, store, state).
bool expect_row(benchmark::State& state, const sampler& s, std::size_t r, std::size_t reads, bool store,
                bool uses_state) {
  const row_extras& e = s.rows()[r].extras;
  if (e.history_reads != reads || (e.store_slot >= 0) != store || e.uses_state() != uses_state) {
    state.SkipWithError("the row's shape is not the one the baseline table assumes");
    return false;
  }
  return true;
}

void BM_Solver_DDIM(benchmark::State& state) {
  // ddim_sampler on the two-step list 600 -> 500 -> 600 is not a valid schedule; build the pair as bench_step does
  // and run it through apply_step, which is what ddim_sampler's plain rows call.
  const auto n = static_cast<std::size_t>(state.range(0));
  buffers buf(n, 2);
  const affine_step down = ddim_step(prediction_type::epsilon, 0.5, 0.6);
  const affine_step up = ddim_step(prediction_type::epsilon, 0.6, 0.5);
  const affine_step steps[2] = {down, up};
  const x0_processing none = x0_processing::none();
  std::size_t k = 0;
  for (auto _ : state) {
    apply_step(steps[k & 1], buf.v[0], std::span<const float>(buf.v[1]), none);
    ++k;
    benchmark::DoNotOptimize(buf[0]);
    benchmark::ClobberMemory();
  }
  check_bounded(state, buf.v[0]);
  counters(state, 3);
}

void BM_Solver_Euler(benchmark::State& state) {
  const euler_sampler s(vp_grid(), sample_prediction());
  run_rows(state, s, {mid_step}, false, 3, no_noise{});
}
void BM_Solver_EulerAncestral(benchmark::State& state) {
  const euler_ancestral_sampler s(vp_grid(), 1.0, sample_prediction());
  run_rows(state, s, {mid_step}, false, 3, bench_noise);
}
void BM_Solver_Heun(benchmark::State& state) {
  const heun_sampler s(vp_grid(), sample_prediction());
  const std::size_t r = s.row_of_step(mid_step);
  if (!expect_row(state, s, r, 0, true, true) || !expect_row(state, s, r + 1, 1, false, true)) return;
  run_rows(state, s, {r, r + 1}, false, 10, no_noise{});
}
void BM_Solver_DPMpp2M(benchmark::State& state) {
  const dpm_solver_sampler s(vp_grid(), dpm(dpm_algorithm::dpmsolver_pp, 2), sample_prediction());
  if (!expect_row(state, s, mid_step, 1, true, false)) return;
  run_rows(state, s, {mid_step}, false, 5, no_noise{});
}
void BM_Solver_DPMpp3M(benchmark::State& state) {
  const dpm_solver_sampler s(vp_grid(), dpm(dpm_algorithm::dpmsolver_pp, 3), sample_prediction());
  if (!expect_row(state, s, mid_step, 2, true, false)) return;
  run_rows(state, s, {mid_step}, false, 6, no_noise{});
}
void BM_Solver_SDEDPMpp2M(benchmark::State& state) {
  const dpm_solver_sampler s(vp_grid(), dpm(dpm_algorithm::sde_dpmsolver_pp, 2), sample_prediction());
  if (!expect_row(state, s, mid_step, 1, true, false)) return;
  run_rows(state, s, {mid_step}, false, 5, bench_noise);
}
void BM_Solver_FlowEuler(benchmark::State& state) {
  const flow_euler_sampler s(sigma_grid{{0.5, 0.6, 0.5}, {500.0, 600.0}});
  run_rows(state, s, {0, 1}, true, 3, no_noise{});
}

unipc_options unipc(int order) {
  unipc_options o;
  o.order = order;
  return o;
}
deis_options deis(int order) {
  deis_options o;
  o.order = order;
  return o;
}
dpm_singlestep_options singlestep(int order) {
  dpm_singlestep_options o;
  o.order = order;
  return o;
}
const std::vector<std::int64_t>& consistency_times(std::size_t steps) {
  static const std::vector<std::int64_t> t8 = consistency_timesteps(1000, 8);
  static const std::vector<std::int64_t> t50 = consistency_timesteps(1000, 50);
  return steps == 8 ? t8 : t50;
}

void BM_Solver_UniPC2(benchmark::State& state) {
  const unipc_sampler s(vp_grid(), unipc(2), sample_prediction());
  if (!expect_row(state, s, mid_step, 2, true, true)) return;
  run_rows(state, s, {mid_step}, false, 8, no_noise{});
}
void BM_Solver_UniPC3(benchmark::State& state) {
  const unipc_sampler s(vp_grid(), unipc(3), sample_prediction());
  if (!expect_row(state, s, mid_step, 3, true, true)) return;
  run_rows(state, s, {mid_step}, false, 9, no_noise{});
}
void BM_Solver_DEIS3(benchmark::State& state) {
  const deis_sampler s(vp_grid(), deis(3), sample_prediction());
  if (!expect_row(state, s, mid_step, 2, true, false)) return;
  run_rows(state, s, {mid_step}, false, 6, no_noise{});
}
void BM_Solver_DPMSingle2(benchmark::State& state) {
  const dpm_solver_singlestep_sampler s(vp_grid(), singlestep(2), sample_prediction());
  if (!expect_row(state, s, mid_step, 0, true, true) || !expect_row(state, s, mid_step + 1, 1, false, true)) return;
  run_rows(state, s, {mid_step, mid_step + 1}, false, 10, no_noise{});
}
void BM_Solver_PNDM(benchmark::State& state) {
  const pndm_sampler s(sd_schedule(), grid_steps, true, timestep_spacing::leading, 0, final_alpha::one,
                       v_prediction());
  if (!expect_row(state, s, mid_step, 3, true, false)) return;
  run_rows(state, s, {mid_step}, false, 7, no_noise{});
}
void BM_Solver_iPNDM(benchmark::State& state) {
  const ipndm_sampler s(make_ipndm_grid(grid_steps));
  if (!expect_row(state, s, mid_step, 3, true, false)) return;
  run_rows(state, s, {mid_step}, false, 7, no_noise{});
}
void BM_Solver_LCM(benchmark::State& state) {
  const lcm_sampler s(sd_schedule(), consistency_times(8), 10.0, sample_prediction());
  run_rows(state, s, {4}, false, 3, bench_noise);
}
void BM_Solver_TCD(benchmark::State& state) {
  const tcd_sampler s(sd_schedule(), consistency_times(8), 0.3, sample_prediction());
  run_rows(state, s, {4}, false, 3, bench_noise);
}

BENCHMARK(BM_Solver_DDIM)->Apply(sizes);
BENCHMARK(BM_Solver_Euler)->Apply(sizes);
BENCHMARK(BM_Solver_EulerAncestral)->Apply(sizes);
BENCHMARK(BM_Solver_Heun)->Apply(sizes);
BENCHMARK(BM_Solver_DPMpp2M)->Apply(sizes);
BENCHMARK(BM_Solver_DPMpp3M)->Apply(sizes);
BENCHMARK(BM_Solver_SDEDPMpp2M)->Apply(sizes);
BENCHMARK(BM_Solver_FlowEuler)->Apply(sizes);
BENCHMARK(BM_Solver_UniPC2)->Apply(sizes);
BENCHMARK(BM_Solver_UniPC3)->Apply(sizes);
BENCHMARK(BM_Solver_DEIS3)->Apply(sizes);
BENCHMARK(BM_Solver_DPMSingle2)->Apply(sizes);
BENCHMARK(BM_Solver_PNDM)->Apply(sizes);
BENCHMARK(BM_Solver_iPNDM)->Apply(sizes);
BENCHMARK(BM_Solver_LCM)->Apply(sizes);
BENCHMARK(BM_Solver_TCD)->Apply(sizes);

// --- the whole sampler at n = 112: per-step overhead ----------------------------------------------------------------

/// A trivial writing predictor: out = 0.1·x (one read, one write; the network would be here). It takes the model
/// time as a double, so σ-grid solvers pass their fractional times.
struct scaled_predictor {
  void operator()(const std::vector<float>& x, double, std::span<float> out) const {
    const float* __restrict xs = x.data();
    float* __restrict o = out.data();
    for (std::size_t i = 0, n = x.size(); i < n; ++i) o[i] = 0.1f * xs[i];
  }
};

constexpr std::size_t run_steps = 50;

std::vector<float> initial_x(std::size_t n) {
  std::vector<float> x(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<float>(static_cast<int>(i % 97) - 48) / 48.0f;
  return x;
}

template <class Noise>
void run_sampler(benchmark::State& state, const sampler& s, Noise noise) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const std::vector<float> x_init = initial_x(n);
  std::vector<float> x = x_init;
  sampler_workspace<float> workspace(n);
  for (auto _ : state) {
    std::copy(x_init.begin(), x_init.end(), x.begin());
    s.sample(scaled_predictor{}, x, noise, workspace);
    benchmark::DoNotOptimize(x.data());
    benchmark::ClobberMemory();
  }
  check_bounded(state, x);
  state.counters["steps"] = static_cast<double>(s.num_steps());
  state.counters["rows"] = static_cast<double>(s.rows().size());
}

/// The same run written by hand: per row, the predictor, then the row's step call (step_row, as in BM_Solver_*).
template <class Noise>
void run_bare(benchmark::State& state, const sampler& s, Noise noise) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const std::vector<float> x_init = initial_x(n);
  std::vector<float> x = x_init;
  step_buffers b(n, s.history_slots());
  const scaled_predictor predictor;
  const std::size_t rows = s.rows().size();
  for (auto _ : state) {
    std::copy(x_init.begin(), x_init.end(), x.begin());
    for (std::size_t r = 0; r < rows; ++r) {
      predictor(x, s.rows()[r].model_time, b.buf.v[1]);
      const solver_row& row = s.rows()[r];
      const affine_step& c = s.coefficients()[r];
      if (!row.extras.is_plain())
        detail::apply_row_range(c, row.extras, x.data(), b.m().data(), row.extras.uses_state() ? b.state() : nullptr,
                                b.history.data(), n, s.options().processing, noise, row.step, no_x0,
                                b.scratch.data(), 0, 1);
      else
        apply_step(c, std::span<float>(x), b.m(), s.options().processing, 1, noise, row.step);
    }
    benchmark::DoNotOptimize(x.data());
    benchmark::ClobberMemory();
  }
  check_bounded(state, x);
  state.counters["steps"] = static_cast<double>(s.num_steps());
  state.counters["rows"] = static_cast<double>(rows);
}

const sigma_grid& run_grid() {
  static const sigma_grid grid = make_sigma_grid(sd_schedule(), run_steps);
  return grid;
}
const sigma_grid& run_flow_grid() {
  static const sigma_grid grid = make_flow_grid(run_steps);
  return grid;
}

#define SKIPSTEP_PER_STEP(name, make_sampler, noise)                                              \
  void BM_Sampler_PerStep_##name(benchmark::State& state) { run_sampler(state, make_sampler, noise); } \
  void BM_Bare_PerStep_##name(benchmark::State& state) { run_bare(state, make_sampler, noise); }       \
  BENCHMARK(BM_Sampler_PerStep_##name)->Arg(112);                                                  \
  BENCHMARK(BM_Bare_PerStep_##name)->Arg(112)

SKIPSTEP_PER_STEP(DDIM, ddim_sampler(sd_schedule(), timestep_schedule::trailing(1000, run_steps), eta{0.0}),
                  no_noise{});
SKIPSTEP_PER_STEP(Euler, euler_sampler(run_grid()), no_noise{});
SKIPSTEP_PER_STEP(EulerAncestral, euler_ancestral_sampler(run_grid()), bench_noise);
SKIPSTEP_PER_STEP(Heun, heun_sampler(run_grid()), no_noise{});
SKIPSTEP_PER_STEP(DPMpp2M, dpm_solver_sampler(run_grid(), dpm(dpm_algorithm::dpmsolver_pp, 2)), no_noise{});
SKIPSTEP_PER_STEP(DPMpp3M, dpm_solver_sampler(run_grid(), dpm(dpm_algorithm::dpmsolver_pp, 3)), no_noise{});
SKIPSTEP_PER_STEP(SDEDPMpp2M, dpm_solver_sampler(run_grid(), dpm(dpm_algorithm::sde_dpmsolver_pp, 2)), bench_noise);
SKIPSTEP_PER_STEP(FlowEuler, flow_euler_sampler(run_flow_grid()), no_noise{});
SKIPSTEP_PER_STEP(UniPC2, unipc_sampler(run_grid(), unipc(2)), no_noise{});
SKIPSTEP_PER_STEP(UniPC3, unipc_sampler(run_grid(), unipc(3)), no_noise{});
SKIPSTEP_PER_STEP(DEIS3, deis_sampler(run_grid(), deis(3)), no_noise{});
SKIPSTEP_PER_STEP(DPMSingle2, dpm_solver_singlestep_sampler(run_grid(), singlestep(2)), no_noise{});
SKIPSTEP_PER_STEP(PNDM, pndm_sampler(sd_schedule(), run_steps), no_noise{});
SKIPSTEP_PER_STEP(iPNDM, ipndm_sampler(make_ipndm_grid(run_steps)), no_noise{});
SKIPSTEP_PER_STEP(LCM, lcm_sampler(sd_schedule(), consistency_times(run_steps)), bench_noise);
SKIPSTEP_PER_STEP(TCD, tcd_sampler(sd_schedule(), consistency_times(run_steps)), bench_noise);

}  // namespace
