// Opt-in threads: a step split over a thread_pool gives the same bits as one thread, for every kernel path (fused,
// noisy, x0 output, clip, dynamic thresholding), for many small samples and for one large sample, whatever the
// thread count; and a sampler run with a pool equals one without.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "skipstep/skipstep.hpp"

using namespace skipstep;

namespace {

std::vector<float> pattern(std::size_t n, double phase) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<float>(1.5 * std::sin(0.013 * static_cast<double>(i) + phase));
  return v;
}

struct config {
  const char* name;
  x0_processing processing;
  bool noisy;
  bool x0;
};

}  // namespace

TEST_CASE("parallel_apply_step equals apply_step bit for bit", "[parallel]") {
  const double sigma = eta{1.0}(step_context{0.3, 0.6, 0, 10, 500, 400});
  const affine_step noisy = ddim_step(prediction_type::v, 0.3, 0.6, sigma_choice{sigma, sigma});
  const config configs[] = {
      {"fused", x0_processing::none(), false, false},
      {"fused + noise", x0_processing::none(), true, false},
      {"x0 output + noise", x0_processing::none(), true, true},
      {"clip + noise", x0_processing::clip(0.8), true, false},
      {"threshold + clipped eps + noise", x0_processing::dynamic_threshold(0.9, 1.3).with_clipped_model_output(), true,
       true},
  };
  const philox_normal rng(99);
  for (std::size_t threads : {1u, 2u, 3u, 4u}) {
    thread_pool pool(threads);
    REQUIRE(pool.size() == threads);
    for (const config& cfg : configs) {
      for (std::size_t samples : {1u, 3u, 64u}) {
        const std::size_t n = 64 * 3 * 1024;  // 196608 elements: above parallel_step_min_elements
        INFO(cfg.name << ", " << threads << " threads, " << samples << " samples");
        auto x_serial = pattern(n, 0.1), x_parallel = x_serial;
        const auto m = pattern(n, 0.7);
        std::vector<float> x0_serial(cfg.x0 ? n : 0), x0_parallel(cfg.x0 ? n : 0), scratch(n);
        if (cfg.noisy) {
          apply_step<float>(noisy, x_serial, m, cfg.processing, samples, rng, 7, x0_serial, scratch);
          parallel_apply_step<float>(pool, noisy, x_parallel, m, cfg.processing, samples, rng, 7, x0_parallel, scratch);
        } else {
          apply_step<float>(noisy, x_serial, m, cfg.processing, samples, no_noise{}, 7, x0_serial, scratch);
          parallel_apply_step<float>(pool, noisy, x_parallel, m, cfg.processing, samples, no_noise{}, 7, x0_parallel,
                                     scratch);
        }
        REQUIRE(x_parallel == x_serial);
        REQUIRE(x0_parallel == x0_serial);
      }
    }
  }
}

TEST_CASE("a sampler with a thread pool gives the single-thread result", "[parallel][sampler]") {
  const auto schedule = noise_schedule<>::scaled_linear(1000);
  sampler_options opt;
  opt.num_samples = 8;
  opt.processing = x0_processing::dynamic_threshold(0.95, 2.0);
  const ddim_sampler s(schedule, timestep_schedule::trailing(1000, 20), eta{0.8}, opt);
  auto model = [](const std::vector<float>& x, std::int64_t t, std::span<float> out) {
    for (std::size_t i = 0; i < x.size(); ++i) out[i] = 0.5f * std::tanh(x[i]) + 1e-4f * static_cast<float>(t);
  };
  const std::size_t n = 8 * 16384;
  auto x1 = pattern(n, 0.2), x3 = x1;
  sampler_workspace<float> single(n);
  s.sample(model, x1, philox_normal(5), single);
  thread_pool pool(3);
  sampler_workspace<float> threaded(n, &pool);
  s.sample(model, x3, philox_normal(5), threaded);
  REQUIRE(x1 == x3);
}

TEST_CASE("thread_pool runs every task once, is reusable and rethrows a task's exception", "[parallel]") {
  thread_pool pool(3);
  for (int round = 0; round < 50; ++round) {
    std::vector<int> hits(1000, 0);
    std::vector<std::size_t> by(1000, 99);
    auto task = [&](std::size_t i, std::size_t participant) {  // no Catch macros off the main thread
      ++hits[i];
      by[i] = participant;
    };
    pool.run(hits.size(), task);
    for (int h : hits) REQUIRE(h == 1);
    for (std::size_t p : by) REQUIRE(p < 3);
  }
  auto failing = [](std::size_t i, std::size_t) {
    if (i == 17) throw std::domain_error("task 17 failed");
  };
  REQUIRE_THROWS_WITH(pool.run(100, failing), "task 17 failed");
  std::size_t count = 0;
  auto after = [&](std::size_t, std::size_t) { ++count; };
  thread_pool single(1);
  single.run(10, after);
  REQUIRE(count == 10);
  REQUIRE_THROWS_WITH(thread_pool(0), Catch::Contains("thread_pool") && Catch::Contains("threads"));
}
