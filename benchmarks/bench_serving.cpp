// Continuous batching (serving::batch) against the plain sampler loop: the batching overhead per step per sample.
// float32, one thread, n in {112, 16384} elements per sample:
//   BM_Serving_Step/<n>          one iteration = 8 requests of 8 different solvers (DDIM η = 0, DDIM η = 1, DDPM,
//                                Euler ancestral, DPM-Solver++ 2M, UniPC bh2, DEIS 3, Heun; 8–50 steps, 231 rows in
//                                all) admitted into a full batch of 8 slots, stepped together (one batched network
//                                call per step, then each slot's row on its region), retired as they finish
//   BM_Plain_Step/<n>            the same 8 requests, each run alone by its own sampler (sampler::sample with its
//                                own workspace and philox_normal(seed)), one after another
//   BM_Serving_Step_NoCheck/<n>  BM_Serving_Step with batch_options::check_finite = false (the default checks every
//                                model output for NaN / Inf; the plain loop's check_finite is off by default)
// Both do the same rows (the JSON counter `rows` = 231 per iteration) with the same trivial model, out = 0.5·x under
// sample prediction (x̂0 = x/2: every run stays bounded), called per sample in both (the serving model is the same
// per-sample function behind serving::per_sample). The batching overhead per step per sample is
// cpu_time(Serving) / cpu_time(Plain) (target <= 1.2 at n = 16384); per row: cpu_time / rows. Both start each
// iteration from the same x_T (copied: admit copies it into the slot; the plain run copies it into its x).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "skipstep/schedule/sigma_grid.hpp"
#include "skipstep/serving/batch.hpp"
#include "skipstep/skipstep.hpp"
#include "skipstep/solver/deis.hpp"
#include "skipstep/solver/dpm_solver.hpp"
#include "skipstep/solver/euler.hpp"
#include "skipstep/solver/unipc.hpp"

namespace {

using namespace skipstep;

struct mix {
  noise_schedule<double> schedule = noise_schedule<>::scaled_linear(1000);
  std::vector<std::shared_ptr<const sampler>> solvers;
  mix() {
    sampler_options o;
    o.prediction = prediction_type::sample;
    solvers.push_back(std::make_shared<ddim_sampler>(schedule, timestep_schedule::trailing(1000, 50), eta{0.0}, o));
    solvers.push_back(std::make_shared<ddim_sampler>(schedule, timestep_schedule::trailing(1000, 20), eta{1.0}, o));
    solvers.push_back(std::make_shared<ddpm_sampler>(schedule, timestep_schedule::leading(1000, 30),
                                                     variance_type::fixed_small, o));
    solvers.push_back(std::make_shared<euler_ancestral_sampler>(make_sigma_grid(schedule, 25), 1.0, o));
    solvers.push_back(std::make_shared<dpm_solver_sampler>(make_multistep_grid(schedule, 40), dpm_solver_options{}, o));
    solvers.push_back(std::make_shared<unipc_sampler>(make_multistep_grid(schedule, 16), unipc_options{}, o));
    deis_options d;
    d.order = 3;
    solvers.push_back(std::make_shared<deis_sampler>(make_multistep_grid(schedule, 35), d, o));
    solvers.push_back(std::make_shared<heun_sampler>(make_sigma_grid(schedule, 8), o));  // 15 rows
  }
  std::size_t rows() const {
    std::size_t r = 0;
    for (const auto& s : solvers) r += s->rows().size();
    return r;
  }
};

const mix& the_mix() {
  static const mix m;
  return m;
}

void model(std::span<const float> x, double /*t*/, std::span<float> out) {
  for (std::size_t i = 0; i < x.size(); ++i) out[i] = 0.5f * x[i];
}

std::vector<std::vector<float>> starts(std::size_t n) {
  std::vector<std::vector<float>> x(8, std::vector<float>(n));
  for (std::size_t k = 0; k < 8; ++k) philox_normal(100 + k).fill(std::span<float>(x[k]), 0, 0);
  return x;
}

bool bounded(std::span<const float> x) {
  for (float v : x)
    if (!std::isfinite(v) || std::abs(v) > 100.0f) return false;
  return true;
}

/// The 8 results run alone (the reference the batch must equal bit for bit).
std::vector<std::vector<float>> alone(std::size_t n) {
  const mix& m = the_mix();
  auto x = starts(n);
  auto f = [](const std::vector<float>& v, double t, std::span<float> out) { model(v, t, out); };
  for (std::size_t k = 0; k < 8; ++k) m.solvers[k]->sample(f, x[k], philox_normal(7 + k));
  return x;
}

void run_serving(benchmark::State& state, bool check) {
  const mix& m = the_mix();
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto x0 = starts(n);
  serving::batch_options opt;
  opt.check_finite = check;
  serving::batch<float> b(8, n, opt);
  auto net = serving::per_sample(model);
  bool ok = true;
  for (auto _ : state) {
    for (std::size_t k = 0; k < 8; ++k) b.admit({m.solvers[k].get(), x0[k], 7 + k, 0, k});
    while (b.unfinished() > 0) b.step(net);
    for (std::size_t s = 0; s < 8; ++s) {
      ok = ok && bounded(b.sample(s));
      b.retire(s);
    }
    benchmark::ClobberMemory();
  }
  // After timing: one more round, compared bit for bit with the requests run alone.
  for (std::size_t k = 0; k < 8; ++k) b.admit({m.solvers[k].get(), x0[k], 7 + k, 0, k});
  while (b.unfinished() > 0) b.step(net);
  const auto expected = alone(n);
  for (std::size_t s = 0; s < 8; ++s) {
    const auto got = b.sample(s);
    ok = ok && std::equal(got.begin(), got.end(), expected[s].begin());
    b.retire(s);
  }
  if (!ok) state.SkipWithError("a result is not finite and bounded, or differs from its run alone");
  state.counters["rows"] = static_cast<double>(m.rows());
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * m.rows() * n));
}

void BM_Serving_Step(benchmark::State& state) { run_serving(state, true); }
void BM_Serving_Step_NoCheck(benchmark::State& state) { run_serving(state, false); }

void BM_Plain_Step(benchmark::State& state) {
  const mix& m = the_mix();
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto x0 = starts(n);
  std::vector<std::vector<float>> x = x0;
  std::vector<sampler_workspace<float>> ws;
  for (std::size_t k = 0; k < 8; ++k) ws.push_back(m.solvers[k]->make_workspace(x[k]));
  auto f = [](const std::vector<float>& v, double t, std::span<float> out) { model(v, t, out); };
  bool ok = true;
  for (auto _ : state) {
    for (std::size_t k = 0; k < 8; ++k) {
      std::copy(x0[k].begin(), x0[k].end(), x[k].begin());
      m.solvers[k]->sample(f, x[k], philox_normal(7 + k), ws[k]);
      ok = ok && bounded(x[k]);
    }
    benchmark::ClobberMemory();
  }
  if (!ok) state.SkipWithError("a result is not finite and bounded");
  state.counters["rows"] = static_cast<double>(m.rows());
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * m.rows() * n));
}

BENCHMARK(BM_Serving_Step)->Arg(112)->Arg(16384);
BENCHMARK(BM_Plain_Step)->Arg(112)->Arg(16384);
BENCHMARK(BM_Serving_Step_NoCheck)->Arg(112)->Arg(16384);

}  // namespace
