// serving::batch: every request's result is bit-identical to running it alone (same sampler, same seed), whatever
// the other requests, the capacity, the slot, the admission order or the thread count (thread_pool); requests of
// different solvers (single-step, multistep, multi-stage with several rows per step, stochastic) share one batch
// and one network call per step; samplers are shared by reference across slots and threads (the TSan stage runs
// this file: label `threads`); steps allocate nothing; bad input gets errors naming function, argument, value.
#include <catch2/catch.hpp>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <thread>
#include <vector>

#include "count_allocations.hpp"
#include "check_error.hpp"
#include "skipstep/schedule/sigma_grid.hpp"
#include "skipstep/serving/batch.hpp"
#include "skipstep/skipstep.hpp"
#include "skipstep/solver/consistency.hpp"
#include "skipstep/solver/deis.hpp"
#include "skipstep/solver/dpm_solver.hpp"
#include "skipstep/solver/dpm_solver_singlestep.hpp"
#include "skipstep/solver/euler.hpp"
#include "skipstep/solver/ipndm.hpp"
#include "skipstep/solver/pndm.hpp"
#include "skipstep/solver/unipc.hpp"
#include "skipstep/testing/gaussian_mixture.hpp"

using skipstep_test::allocations;

using namespace skipstep;
using skipstep_test::nan_v;

namespace {

constexpr std::size_t dim = 4;    // the mixture's dimension
constexpr std::size_t rows = 6;   // rows of it per sample
constexpr std::size_t n = dim * rows;

/// Every solver family of skipstep on one VP schedule: single-step (DDIM η = 0 and η = 1, DDPM, Euler ancestral,
/// LCM), multistep (DPM-Solver++ 2M, UniPC with its corrector, DEIS 3, iPNDM), and multi-stage with several rows
/// per step (Heun, PNDM with its Runge–Kutta warm-up, single-step DPM-Solver 2).
struct zoo {
  noise_schedule<double> schedule = noise_schedule<>::scaled_linear(1000);
  // shared_ptr, not unique_ptr<sampler>: sampler has no virtual destructor, and shared_ptr keeps the derived deleter.
  std::vector<std::shared_ptr<const sampler>> solvers;
  zoo() {
    solvers.push_back(std::make_shared<ddim_sampler>(schedule, timestep_schedule::trailing(1000, 10)));
    solvers.push_back(std::make_shared<ddim_sampler>(schedule, timestep_schedule::leading(1000, 7), eta{1.0}));
    solvers.push_back(std::make_shared<ddpm_sampler>(schedule, timestep_schedule::leading(1000, 12)));
    solvers.push_back(std::make_shared<euler_ancestral_sampler>(make_sigma_grid(schedule, 9), 1.0));
    solvers.push_back(std::make_shared<dpm_solver_sampler>(make_multistep_grid(schedule, 11)));
    solvers.push_back(std::make_shared<unipc_sampler>(make_multistep_grid(schedule, 8)));
    deis_options d;
    d.order = 3;
    solvers.push_back(std::make_shared<deis_sampler>(make_multistep_grid(schedule, 13), d));
    solvers.push_back(std::make_shared<ipndm_sampler>(make_ipndm_grid(9), sampler_options{}));
    solvers.push_back(std::make_shared<heun_sampler>(make_sigma_grid(schedule, 6)));
    solvers.push_back(std::make_shared<pndm_sampler>(schedule, 10, /*skip_prk_steps=*/false));
    solvers.push_back(std::make_shared<dpm_solver_singlestep_sampler>(make_multistep_grid(schedule, 8)));
    const auto lcm_ts = consistency_timesteps(1000, 4);
    solvers.push_back(std::make_shared<lcm_sampler>(schedule, std::span<const std::int64_t>(lcm_ts)));
  }
};

/// The exact oracle of a 2-component mixture at the level of model time t (the VP table's σ̃, interpolated as
/// diffusers does for fractional times): a function of (x, t) only, as a network is.
struct oracle {
  testing::gaussian_mixture mixture{dim, {-0.5, 0.2, 0.1, 0.4, 0.6, -0.3, 0.0, 0.5}, {0.2, 0.3, 0.25, 0.2, 0.3, 0.4, 0.2, 0.35}, {0.4, 0.6}};
  std::vector<double> table;
  std::vector<double> workspace;
  explicit oracle(const noise_schedule<double>& s) : table(vp_sigmas(s)), workspace(mixture.workspace_size()) {}
  level level_at(double t) const { return level::from_sigma_tilde(detail::interp_table(table, t)); }
  void operator()(std::span<const double> x, double t, std::span<double> out) {
    mixture.predict_batch(x, x.size() / dim, level_at(t), prediction_type::epsilon, out, workspace);
  }
};

std::vector<double> initial(std::uint64_t seed) {
  std::vector<double> x(n);
  philox_normal(seed ^ 0x9e3779b97f4a7c15ull).fill(std::span<double>(x), 0, 0);
  return x;
}

/// A request's result run alone: the plain sampler loop, seed → philox_normal(seed).
std::vector<double> alone(const sampler& s, oracle& model, std::uint64_t seed) {
  std::vector<double> x = initial(seed);
  auto f = [&](const std::vector<double>& v, double t, std::span<double> out) { model(v, t, out); };
  s.sample(f, x, philox_normal(seed));
  return x;
}

struct arrival {
  std::size_t solver;
  std::uint64_t seed;
  std::size_t at_call;  // admitted before this network call (when a slot is free)
};

/// Serves `arrivals` through a batch of `capacity` slots; returns each request's result by arrival index.
std::vector<std::vector<double>> serve(const zoo& z, oracle& model, const std::vector<arrival>& arrivals,
                                       std::size_t capacity, thread_pool* pool) {
  serving::batch_options options;
  options.pool = pool;
  options.parallel_min_elements = 0;  // split even these small steps over the threads
  serving::batch<double> b(capacity, n, options);
  std::vector<std::vector<double>> results(arrivals.size());
  std::vector<std::vector<double>> starts;
  for (const arrival& a : arrivals) starts.push_back(initial(a.seed));
  std::size_t next = 0, done = 0;
  auto net = serving::per_sample([&](std::span<const double> x, double t, std::span<double> out) { model(x, t, out); });
  while (done < arrivals.size()) {
    while (next < arrivals.size() && arrivals[next].at_call <= b.model_calls() && b.size() < b.capacity()) {
      b.admit({z.solvers[arrivals[next].solver].get(), starts[next], arrivals[next].seed, 0, next});
      ++next;
    }
    if (b.unfinished() == 0) {  // idle until the next arrival: nothing to call the network for
      if (next == arrivals.size()) throw std::logic_error("serve: no request left to admit");  // not REQUIRE: threads
      b.admit({z.solvers[arrivals[next].solver].get(), starts[next], arrivals[next].seed, 0, next});
      ++next;
    }
    b.step(net);
    for (std::size_t s = 0; s < b.capacity(); ++s)
      if (b.occupied(s) && b.finished(s)) {
        const auto x = b.sample(s);
        results[b.id(s)].assign(x.begin(), x.end());
        b.retire(s);
        ++done;
      }
  }
  return results;
}

}  // namespace

TEST_CASE("every request of a mixed-solver batch is bit-identical to running it alone", "[serving]") {
  const zoo z;
  oracle model(z.schedule);
  // Three requests of every solver, arriving over time (some mid-way through others' runs).
  std::vector<arrival> arrivals;
  for (std::size_t k = 0; k < 3 * z.solvers.size(); ++k)
    arrivals.push_back({(k * 5) % z.solvers.size(), 1000 + 17 * k, k * 2});
  std::vector<std::vector<double>> expected;
  for (const arrival& a : arrivals) expected.push_back(alone(*z.solvers[a.solver], model, a.seed));

  thread_pool two(2), four(4);
  for (std::size_t capacity : {1u, 3u, 8u, 40u}) {
    for (thread_pool* pool : {static_cast<thread_pool*>(nullptr), &two, &four}) {
      INFO("capacity " << capacity << ", threads " << (pool ? pool->size() : 1));
      const auto got = serve(z, model, arrivals, capacity, pool);
      for (std::size_t k = 0; k < arrivals.size(); ++k) {
        INFO("request " << k << " (solver " << arrivals[k].solver << ")");
        CHECK(got[k] == expected[k]);
      }
    }
  }
  // Another admission order (reversed, all at once) gives the same bits.
  std::vector<arrival> reversed(arrivals.rbegin(), arrivals.rend());
  for (arrival& a : reversed) a.at_call = 0;
  const auto got = serve(z, model, reversed, 5, nullptr);
  for (std::size_t k = 0; k < reversed.size(); ++k) CHECK(got[k] == expected[arrivals.size() - 1 - k]);
}

TEST_CASE("a request admitted mid-way through another's run; the network sees one time per slot", "[serving]") {
  const zoo z;
  oracle model(z.schedule);
  const sampler& unipc = *z.solvers[5];
  const sampler& heun = *z.solvers[8];
  serving::batch<double> b(4, n);
  const auto x1 = initial(1), x2 = initial(2);
  CHECK(b.admit({&unipc, x1, 1, 0, 11}) == 0);
  std::vector<std::vector<double>> seen_times;
  auto net = [&](std::span<const double> x, std::span<const double> t, std::span<double> out) {
    seen_times.emplace_back(t.begin(), t.end());
    for (std::size_t s = 0; s < t.size(); ++s)
      if (!std::isnan(t[s])) model(x.subspan(s * n, n), t[s], out.subspan(s * n, n));
  };
  for (int i = 0; i < 3; ++i) b.step(net);
  CHECK(b.admit({&heun, x2, 2, 0, 22}) == 1);
  CHECK(b.steps_done(0) == 3);
  CHECK(b.steps_done(1) == 0);
  while (!b.finished(0) || !b.finished(1)) b.step(net);
  CHECK(std::vector<double>(b.sample(0).begin(), b.sample(0).end()) == alone(unipc, model, 1));
  CHECK(std::vector<double>(b.sample(1).begin(), b.sample(1).end()) == alone(heun, model, 2));
  // One network call per row of the longest request: UniPC's 8 rows, Heun's 11 rows from call 3.
  CHECK(b.model_calls() == 3 + heun.rows().size());
  CHECK(seen_times.size() == b.model_calls());
  CHECK(seen_times[0].size() == 1);  // only slot 0 is passed while it is alone
  CHECK(seen_times[0][0] == unipc.rows()[0].model_time);
  CHECK(seen_times[3].size() == 2);
  CHECK(seen_times[3][0] == unipc.rows()[3].model_time);
  CHECK(seen_times[3][1] == heun.rows()[0].model_time);
  // After UniPC finished, its slot is passed with NaN (skip) while Heun runs on.
  CHECK(std::isnan(seen_times.back()[0]));
  CHECK(seen_times.back()[1] == heun.rows().back().model_time);
}

TEST_CASE("float batches are bit-identical to float runs alone, with the plain kernels' thread split", "[serving]") {
  const auto schedule = noise_schedule<>::linear(1000);
  const ddim_sampler ddim(schedule, timestep_schedule::trailing(1000, 20), eta{0.5});
  const dpm_solver_sampler dpm(make_multistep_grid(schedule, 15));
  constexpr std::size_t big = 40000;  // large enough for the threaded paths
  auto f = [](std::span<const float> x, double t, std::span<float> out) {
    const auto c = static_cast<float>(0.3 + t / 4000.0);
    for (std::size_t i = 0; i < x.size(); ++i) out[i] = c * x[i] - 0.1f;
  };
  std::vector<float> x0(big);
  philox_normal(5).fill(std::span<float>(x0), 0, 0);
  thread_pool pool(3);
  std::vector<float> a = x0, b = x0;
  auto plain = [&](const std::vector<float>& x, double t, std::span<float> out) { f(x, t, out); };
  sampler_workspace<float> ws(big, &pool);  // the plain loop threaded over the pool
  ddim.sample(plain, a, philox_normal(7), ws);
  dpm.sample(plain, b, philox_normal(8));
  serving::batch<float> batch(2, big, serving::batch_options{&pool});
  batch.admit({&dpm, x0, 8, 0, 0});
  batch.admit({&ddim, x0, 7, 0, 1});
  while (batch.unfinished() > 0) batch.step(serving::per_sample(f));
  CHECK(std::vector<float>(batch.sample(1).begin(), batch.sample(1).end()) == a);
  CHECK(std::vector<float>(batch.sample(0).begin(), batch.sample(0).end()) == b);
}

TEST_CASE("samplers are shared by reference across batches and threads", "[serving][threads]") {
  const zoo z;
  std::vector<std::vector<double>> expected;
  {
    oracle model(z.schedule);
    for (std::size_t k = 0; k < z.solvers.size(); ++k) expected.push_back(alone(*z.solvers[k], model, 50 + k));
  }
  thread_pool pool(2);
  auto worker = [&](bool with_pool, int* mismatches) {
    oracle model(z.schedule);  // one network per thread; the samplers are shared
    std::vector<arrival> arrivals;
    for (std::size_t k = 0; k < z.solvers.size(); ++k) arrivals.push_back({k, 50 + k, k});
    const auto got = serve(z, model, arrivals, 4, with_pool ? &pool : nullptr);
    for (std::size_t k = 0; k < got.size(); ++k) *mismatches += got[k] == expected[k] ? 0 : 1;
  };
  int m1 = 0, m2 = 0, m3 = 0;
  std::thread t1(worker, true, &m1), t2(worker, true, &m2), t3(worker, false, &m3);
  t1.join();
  t2.join();
  t3.join();
  CHECK(m1 == 0);
  CHECK(m2 == 0);
  CHECK(m3 == 0);
}

TEST_CASE("batch steps allocate nothing; slots are reused", "[serving]") {
  const zoo z;
  oracle model(z.schedule);
  serving::batch<double> b(3, n);
  auto net = serving::per_sample([&](std::span<const double> x, double t, std::span<double> out) { model(x, t, out); });
  std::vector<std::vector<double>> starts;
  for (std::size_t k = 0; k < z.solvers.size(); ++k) starts.push_back(initial(k));
  // Warm up: every solver in every slot, so that each slot has held the largest plan (admit sizes a slot's
  // state and history, and may allocate; step never does).
  for (std::size_t k = 0; k < z.solvers.size(); ++k) {
    for (std::size_t s = 0; s < b.capacity(); ++s) b.admit({z.solvers[k].get(), starts[k], k, 0, k});
    while (b.unfinished() > 0) b.step(net);
    for (std::size_t s = 0; s < b.capacity(); ++s) b.retire(s);
  }
  const long before = allocations.load();
  long in_steps = 0;
  std::size_t steps = 0;
  for (std::size_t k = 0; k < z.solvers.size(); ++k) {
    b.admit({z.solvers[k].get(), starts[k], k, 0, k});
    b.admit({z.solvers[(k + 4) % z.solvers.size()].get(), starts[k], k + 1, 0, k});
    while (b.unfinished() > 0) {
      const long a = allocations.load();
      b.step(net);
      in_steps += allocations.load() - a;
      ++steps;
    }
    for (std::size_t s = 0; s < b.capacity(); ++s)
      if (b.occupied(s)) b.retire(s);
  }
  const long total = allocations.load() - before;
  CHECK(steps > 50);
  CHECK(in_steps == 0);
  CHECK(total == 0);  // admit and retire into warmed slots do not allocate either
}

TEST_CASE("serving::batch bad input: errors name the function, the argument and the value", "[serving][errors]") {
  const zoo z;
  oracle model(z.schedule);
  const sampler& ddim = *z.solvers[0];
  const sampler& unipc = *z.solvers[5];
  const auto x = initial(3);
  auto net = serving::per_sample([&](std::span<const double> v, double t, std::span<double> out) { model(v, t, out); });

  CHECK_ERROR(serving::batch<double>(0, n), std::invalid_argument, "serving::batch", "capacity", "0");
  CHECK_ERROR(serving::batch<double>(2, 0), std::invalid_argument, "serving::batch", "sample_size", "0");

  serving::batch<double> b(2, n);
  // stepping an empty batch
  CHECK_ERROR(b.step(net), std::invalid_argument, "serving::batch::step", "size()", "0");
  // a request of another sample size; a null solver
  const std::vector<double> small(n - 1, 0.0);
  CHECK_ERROR(b.admit({&ddim, small, 1, 0, 9}), std::invalid_argument, "serving::batch::admit",
              "request.initial.size()", std::to_string(n - 1));
  CHECK_ERROR(b.admit({nullptr, x, 1, 0, 9}), std::invalid_argument, "serving::batch::admit", "request.solver",
              "nullptr");
  // first_step on a multistep solver; beyond N
  CHECK_ERROR(b.admit({&unipc, x, 1, 2, 9}), std::invalid_argument, "serving::batch::admit", "request.first_step",
              "2");
  CHECK_ERROR(b.admit({&ddim, x, 1, 11, 9}), std::invalid_argument, "serving::batch::admit", "request.first_step",
              "11");
  // a learned-variance DDPM
  const ddpm_sampler learned(z.schedule, timestep_schedule::leading(1000, 5), variance_type::learned_range);
  CHECK_ERROR(b.admit({&learned, x, 1, 0, 9}), std::invalid_argument, "serving::batch::admit",
              "request.solver->output_factor()", "2");
  CHECK(b.size() == 0);
  // admit into a full batch
  CHECK(b.admit({&ddim, x, 1, 0, 1}) == 0);
  CHECK(b.admit({&unipc, x, 2, 0, 2}) == 1);
  CHECK_ERROR(b.admit({&ddim, x, 3, 0, 3}), std::invalid_argument, "serving::batch::admit", "size()", "2");
  // retire an unknown or an empty slot
  CHECK_ERROR(b.retire(2), std::out_of_range, "serving::batch::retire", "slot", "2");
  b.retire(0);
  CHECK_ERROR(b.retire(0), std::invalid_argument, "serving::batch::retire", "slot", "0");
  CHECK_ERROR((void)b.sample(0), std::invalid_argument, "serving::batch::sample", "slot", "0");
  // a model writing NaN: named, and nothing is stepped
  const std::vector<double> before(b.sample(1).begin(), b.sample(1).end());
  auto poisoned = [&](std::span<const double> v, std::span<const double> t, std::span<double> out) {
    net(v, t, out);
    out[n + 5] = nan_v;
  };
  CHECK_ERROR(b.step(poisoned), std::domain_error, "serving::batch::step",
              "model output of slot 1 (request id 2, step 0", "element 5");
  CHECK_THROWS_WITH(b.step(poisoned), Catch::Matchers::Contains("must be finite (got nan)"));
  CHECK(std::vector<double>(b.sample(1).begin(), b.sample(1).end()) == before);
  CHECK(b.steps_done(1) == 0);
  // an exception from the model passes unchanged, and the batch resumes exactly
  auto throwing = [](std::span<const double>, std::span<const double>, std::span<double>) {
    throw std::runtime_error("network down");
  };
  CHECK_THROWS_WITH(b.step(throwing), "network down");
  while (!b.finished(1)) b.step(net);
  CHECK(std::vector<double>(b.sample(1).begin(), b.sample(1).end()) == [&] {
    std::vector<double> y = x;
    auto f = [&](const std::vector<double>& v, double t, std::span<double> out) { model(v, t, out); };
    unipc.sample(f, y, philox_normal(2));
    return y;
  }());
  // only finished requests left: stepping is an error too
  CHECK_ERROR(b.step(net), std::invalid_argument, "serving::batch::step", "size()", "1");
  // sampler::apply_row, the engine entry point, checks its buffers
  sampler_workspace<double> ws(n);
  std::vector<double> y = x, m(n, 0.0);
  CHECK_ERROR(z.solvers[4]->apply_row(0, std::span<double>(y), std::span<const double>(m), no_noise{}, ws),
              std::invalid_argument, "apply_row", "workspace.history.size()", "0");
  CHECK_ERROR(unipc.apply_row(0, std::span<double>(y), std::span<const double>(m), no_noise{}, ws),
              std::invalid_argument, "apply_row", "workspace.state.size()", "0");
  CHECK_ERROR(ddim.apply_row(99, std::span<double>(y), std::span<const double>(m), no_noise{}, ws), std::out_of_range,
              "apply_row", "r", "99");
  CHECK_ERROR(ddim.apply_row(0, std::span<double>(y), std::span<const double>(m).first(n - 1), no_noise{}, ws),
              std::invalid_argument, "apply_row", "m.size()", std::to_string(n - 1));
  CHECK_ERROR(z.solvers[1]->apply_row(0, std::span<double>(y), std::span<const double>(m), no_noise{}, ws),
              std::invalid_argument, "apply_row", "noise", "no_noise");
}

TEST_CASE("sampler::apply_row in a loop is sampler::sample", "[serving]") {
  const zoo z;
  oracle model(z.schedule);
  for (const auto& s : z.solvers) {
    const std::uint64_t seed = 77;
    std::vector<double> x = initial(seed), m(n);
    sampler_workspace<double> ws(n);
    s->prepare_workspace(ws, n);
    for (std::size_t r = 0; r < s->rows().size(); ++r) {
      model(x, s->rows()[r].model_time, m);
      s->apply_row(r, std::span<double>(x), std::span<const double>(m), philox_normal(seed), ws);
    }
    CHECK(x == alone(*s, model, seed));
  }
}

TEST_CASE("per_sample refuses to truncate a fractional time for an integer-time predictor", "[serving][errors]") {
  const auto sched = noise_schedule<>::linear(1000);
  const heun_sampler heun(make_sigma_grid(sched, 6));
  REQUIRE_FALSE(heun.has_integral_model_times());
  serving::batch<double> b(2, 8);
  const std::vector<double> x(8, 0.5);
  b.admit({&heun, x, 1, 0, 7});
  auto integer_net = serving::per_sample([](std::span<const double> in, std::int64_t, std::span<double> out) {
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = 0.1 * in[i];
  });
  std::size_t first_fractional = 0;  // rows with whole-number times (σ_max → t = 999) run
  while (heun.rows()[first_fractional].model_time == std::nearbyint(heun.rows()[first_fractional].model_time))
    ++first_fractional;
  for (std::size_t r = 0; r < first_fractional; ++r) b.step(integer_net);
  const std::size_t done = b.steps_done(0);
  CHECK_THROWS_AS(b.step(integer_net), std::invalid_argument);
  CHECK_THROWS_WITH(b.step(integer_net), Catch::Contains("serving::per_sample") && Catch::Contains("t[0]") &&
                                             Catch::Contains("whole number"));
  CHECK(b.steps_done(0) == done);  // nothing was stepped by the refused calls
}
