// An inference server's loop without the network code: 64 requests (mixed solvers, 8–50 steps, their own seeds)
// arrive over time and are served three ways by a model whose cost grows sub-linearly with the batch size,
//   cost(b) = c0 + c1·√b   (c0 = 20 ms fixed per call: launch, weights read; c1 = 5 ms per √sample),
// a simulated clock (the exact oracle of a Gaussian mixture computes the outputs, on the CPU, in real time):
//   sequential   one request at a time, in arrival order (b = 1 per call)
//   static       batches of up to 8 requests waiting when the server is free, run until their slowest member
//                finishes; the batch keeps its shape (finished members are padding), so every call costs cost(size)
//   continuous   serving::batch of 8 slots: arrivals are admitted between steps, finished requests leave at once;
//                a call costs cost(unfinished slots)
// It prints model calls, the simulated total time, latency (finish − arrival) and throughput per policy, and checks
// that every request's result is bit-identical across the three policies and to sampler::sample run alone.
//   example_serving_loop [requests]     (default 64)
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "skipstep/schedule/sigma_grid.hpp"
#include "skipstep/serving/batch.hpp"
#include "skipstep/skipstep.hpp"
#include "skipstep/solver/deis.hpp"
#include "skipstep/solver/dpm_solver.hpp"
#include "skipstep/solver/euler.hpp"
#include "skipstep/solver/unipc.hpp"
#include "skipstep/testing/gaussian_mixture.hpp"

using namespace skipstep;

namespace {

constexpr std::size_t dim = 8, rows_per_sample = 14, n = dim * rows_per_sample;  // a 14×8 action chunk
constexpr std::size_t capacity = 8;
constexpr double c0 = 20.0, c1 = 5.0;  // ms
double cost(std::size_t b) { return c0 + c1 * std::sqrt(static_cast<double>(b)); }

struct job {
  std::shared_ptr<const sampler> solver;
  std::string name;
  double arrival = 0.0;  // ms
  std::uint64_t seed = 0;
  std::vector<double> x_T;
};

/// The network: the exact ε of a Gaussian mixture at the VP level of model time t (σ̃ interpolated in the training
/// table, as a network sees a fractional time), per sample.
struct network {
  testing::gaussian_mixture mixture;
  std::vector<double> table, workspace;
  explicit network(const noise_schedule<double>& s)
      : mixture(dim, std::vector<double>{-1, -0.5, 0, 0.5, 1, 0.5, 0, -0.5, 1, 0.5, 0, -0.5, -1, -0.5, 0, 0.5},
                std::vector<double>(2 * dim, 0.2), {0.5, 0.5}),
        table(vp_sigmas(s)),
        workspace(mixture.workspace_size()) {}
  void operator()(std::span<const double> x, double t, std::span<double> out) {
    const level l = level::from_sigma_tilde(detail::interp_table(table, t));
    mixture.predict_batch(x, x.size() / dim, l, prediction_type::epsilon, out, workspace);
  }
};

struct report {
  std::size_t calls = 0;
  double total = 0.0;  // ms, the simulated clock at the last finish
  std::vector<double> latency;
  std::vector<std::vector<double>> results;
};

void print(const char* name, const report& r) {
  std::vector<double> l = r.latency;
  std::sort(l.begin(), l.end());
  double mean = 0.0;
  for (double v : l) mean += v / static_cast<double>(l.size());
  const auto pct = [&](double p) { return l[static_cast<std::size_t>(p * static_cast<double>(l.size() - 1))]; };
  std::printf("| %-10s | %5zu | %8.1f | %8.1f | %8.1f | %8.1f | %6.2f |\n", name, r.calls, r.total / 1000.0, mean / 1000.0,
              pct(0.5) / 1000.0, pct(0.95) / 1000.0, static_cast<double>(l.size()) / (r.total / 1000.0));
}

/// Runs `group` (indices into jobs) in a batch until every member is finished; `keep_shape`: calls cost
/// cost(group size) (static batching), else cost(unfinished). Returns the clock at the end.
template <class Net>
double run_group(const std::vector<job>& jobs, const std::vector<std::size_t>& group, Net& net, double clock,
                 report& r, serving::batch<double>& b) {
  for (std::size_t k : group) b.admit({jobs[k].solver.get(), jobs[k].x_T, jobs[k].seed, 0, k});
  while (b.unfinished() > 0) {
    b.step(net);
    ++r.calls;
    clock += cost(group.size());
  }
  for (std::size_t s = 0; s < b.capacity(); ++s)
    if (b.occupied(s)) {
      const std::size_t k = b.id(s);
      r.results[k].assign(b.sample(s).begin(), b.sample(s).end());
      r.latency.push_back(clock - jobs[k].arrival);
      b.retire(s);
    }
  return clock;
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t count = argc > 1 ? static_cast<std::size_t>(std::atoi(argv[1])) : 64;
  if (count == 0) return 1;
  const auto schedule = noise_schedule<>::scaled_linear(1000);

  // The requests: solver, step count in [8, 50], seed, arrival (a Poisson stream of 10 requests per second).
  std::vector<job> jobs(count);
  std::vector<double> u(2 * count);
  philox_normal(2024).fill(std::span<double>(u), 0, 0);
  double arrival = 0.0;
  for (std::size_t k = 0; k < count; ++k) {
    job& j = jobs[k];
    const double uniform = 0.5 * (1.0 + std::erf(u[2 * k] / std::sqrt(2.0)));   // Φ(z): uniform in (0, 1)
    const double uniform2 = 0.5 * (1.0 + std::erf(u[2 * k + 1] / std::sqrt(2.0)));
    arrival += -100.0 * std::log(1.0 - 0.999 * uniform);  // mean 100 ms between arrivals
    j.arrival = arrival;
    j.seed = 5000 + k;
    const std::size_t steps = 8 + static_cast<std::size_t>(uniform2 * 42.999);
    switch (k % 6) {
      case 0: j.solver = std::make_shared<ddim_sampler>(schedule, timestep_schedule::trailing(1000, steps)); j.name = "DDIM"; break;
      case 1: j.solver = std::make_shared<ddpm_sampler>(schedule, timestep_schedule::leading(1000, steps)); j.name = "DDPM"; break;
      case 2: j.solver = std::make_shared<dpm_solver_sampler>(make_multistep_grid(schedule, steps)); j.name = "DPM++2M"; break;
      case 3: j.solver = std::make_shared<unipc_sampler>(make_multistep_grid(schedule, steps)); j.name = "UniPC"; break;
      case 4: j.solver = std::make_shared<euler_ancestral_sampler>(make_sigma_grid(schedule, steps), 1.0); j.name = "EulerA"; break;
      default: j.solver = std::make_shared<heun_sampler>(make_sigma_grid(schedule, steps / 2 + 1)); j.name = "Heun"; break;
    }
    j.x_T.resize(n);
    philox_normal(j.seed + 1'000'000).fill(std::span<double>(j.x_T), 0, 0);
  }

  network model(schedule);
  auto net = serving::per_sample([&](std::span<const double> x, double t, std::span<double> out) { model(x, t, out); });
  serving::batch<double> b(capacity, n);

  // Sequential: each request alone, as sampler::sample runs it (one call per row, b = 1).
  report seq;
  seq.results.resize(count);
  {
    double clock = 0.0;
    auto plain = [&](const std::vector<double>& x, double t, std::span<double> out) { model(x, t, out); };
    for (std::size_t k = 0; k < count; ++k) {
      clock = std::max(clock, jobs[k].arrival);
      std::vector<double> x = jobs[k].x_T;
      jobs[k].solver->sample(plain, x, philox_normal(jobs[k].seed));
      seq.calls += jobs[k].solver->rows().size();
      clock += static_cast<double>(jobs[k].solver->rows().size()) * cost(1);
      seq.latency.push_back(clock - jobs[k].arrival);
      seq.results[k] = std::move(x);
    }
    seq.total = clock;
  }

  // Static batches: whoever waits when the server is free (up to 8; at least the next arrival), to the slowest.
  report stat;
  stat.results.resize(count);
  {
    double clock = 0.0;
    std::size_t next = 0;
    while (next < count) {
      clock = std::max(clock, jobs[next].arrival);
      std::vector<std::size_t> group;
      while (next < count && group.size() < capacity && jobs[next].arrival <= clock) group.push_back(next++);
      clock = run_group(jobs, group, net, clock, stat, b);
    }
    stat.total = clock;
  }

  // Continuous batching: admit between steps, retire as soon as finished.
  report cont;
  cont.results.resize(count);
  {
    double clock = 0.0;
    std::size_t next = 0, done = 0;
    while (done < count) {
      if (b.unfinished() == 0 && next < count) clock = std::max(clock, jobs[next].arrival);  // idle: wait
      while (next < count && jobs[next].arrival <= clock && b.size() < b.capacity()) {
        b.admit({jobs[next].solver.get(), jobs[next].x_T, jobs[next].seed, 0, next});
        ++next;
      }
      const std::size_t active = b.step(net).stepped;
      ++cont.calls;
      clock += cost(active);
      for (std::size_t s = 0; s < b.capacity(); ++s)
        if (b.occupied(s) && b.finished(s)) {
          const std::size_t k = b.id(s);
          cont.results[k].assign(b.sample(s).begin(), b.sample(s).end());
          cont.latency.push_back(clock - jobs[k].arrival);
          b.retire(s);
          ++done;
        }
    }
    cont.total = clock;
  }

  std::size_t rows = 0;
  for (const job& j : jobs) rows += j.solver->rows().size();
  std::printf("serving_loop: %zu requests (DDIM, DDPM, DPM++2M, UniPC, Euler ancestral, Heun; 8-50 steps; %zu model "
              "evaluations in all), %zu elements each, arrivals over %.1f s; batch capacity %zu\n",
              count, rows, n, jobs.back().arrival / 1000.0, capacity);
  std::printf("cost model: a network call on b samples costs %.0f ms + %.0f ms * sqrt(b) (simulated clock)\n\n", c0, c1);
  std::printf("| policy     | calls | total, s | mean lat., s | p50 lat., s | p95 lat., s | req/s  |\n");
  std::printf("|------------|-------|----------|----------|----------|----------|--------|\n");
  print("sequential", seq);
  print("static", stat);
  print("continuous", cont);
  std::size_t same = 0;
  for (std::size_t k = 0; k < count; ++k) same += seq.results[k] == stat.results[k] && seq.results[k] == cont.results[k];
  std::printf("\nbit-identical across the three policies (and to sampler::sample alone): %zu / %zu\n", same, count);
  return same == count ? 0 : 1;
}
