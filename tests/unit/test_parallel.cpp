// Opt-in threads: a step split over a thread_pool gives the same bits as one thread, for every kernel path (fused,
// noisy, x0 output, clip, dynamic thresholding), for many small samples and for one large sample, whatever the
// thread count; and a sampler run with a pool equals one without.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <future>
#include <limits>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
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

// --- sharing one pool between threads (reliability issue: thread_pool)
// -------------------------------------------- Catch macros are not thread-safe: the threads below only
// record what they saw; the main thread checks it.
namespace {

/// Runs `body` on `callers` threads at once (body(k) on thread k) and joins them. A deadlock is reported as a
/// failure and ends the process after `limit` instead of hanging until ctest's timeout.
void on_threads(std::size_t callers, const std::function<void(std::size_t)>& body,
                std::chrono::seconds limit = std::chrono::seconds(240)) {
  std::vector<std::thread> threads;
  std::promise<void> all_done;
  std::future<void> done = all_done.get_future();
  std::thread joiner([&] {
    for (std::size_t k = 0; k < callers; ++k)
      threads.emplace_back(body, k);
    for (auto& t : threads)
      t.join();
    all_done.set_value();
  });
  if (done.wait_for(limit) != std::future_status::ready) {
    std::fprintf(stderr,
                 "test_parallel: %zu threads sharing a thread_pool did not finish in %llds (deadlock)\n",
                 callers, static_cast<long long>(limit.count()));
    std::_Exit(1);
  }
  joiner.join();
}

}  // namespace

TEST_CASE("two threads with their own workspaces sharing one thread_pool get the single-thread results",
          "[parallel][threads]") {
  const auto schedule = noise_schedule<>::scaled_linear(1000);
  sampler_options opt;
  opt.num_samples = 8;
  opt.processing = x0_processing::dynamic_threshold(0.95, 2.0);
  const ddim_sampler s(schedule, timestep_schedule::trailing(1000, 10), eta{0.8}, opt);
  auto model = [](const std::vector<float>& x, std::int64_t t, std::span<float> out) {
    for (std::size_t i = 0; i < x.size(); ++i)
      out[i] = 0.5f * std::tanh(x[i]) + 1e-4f * static_cast<float>(t);
  };
  const std::size_t n = 8 * 16384;  // above parallel_step_min_elements: every step uses the pool
  std::vector<std::vector<float>> expected, shared;
  for (std::size_t k = 0; k < 2; ++k) {
    expected.push_back(pattern(n, 0.2 + 0.1 * static_cast<double>(k)));
    s.sample(model, expected.back(), philox_normal(5 + k));
    shared.push_back(pattern(n, 0.2 + 0.1 * static_cast<double>(k)));
  }
  thread_pool pool(3);
  std::vector<std::string> errors(2);
  on_threads(2, [&](std::size_t k) {
    try {
      sampler_workspace<float> workspace(n, &pool);
      s.sample(model, shared[k], philox_normal(5 + k), workspace);
    } catch (const std::exception& e) {
      errors[k] = e.what();
    }
  });
  for (std::size_t k = 0; k < 2; ++k) {
    INFO("thread " << k);
    REQUIRE(errors[k].empty());
    REQUIRE(shared[k] == expected[k]);
  }
}

TEST_CASE("many concurrent jobs on one thread_pool: every task of every job runs once",
          "[parallel][threads]") {
  thread_pool pool(3);
  constexpr std::size_t callers = 4, rounds = 100, tasks = 257;
  std::vector<std::vector<int>> hits(callers, std::vector<int>(tasks, 0));
  std::vector<std::atomic<std::size_t>> bad_participant(callers);
  on_threads(callers, [&](std::size_t k) {
    for (std::size_t round = 0; round < rounds; ++round) {
      auto task = [&](std::size_t i, std::size_t participant) {
        ++hits[k][i];
        if (participant >= pool.size())
          bad_participant[k].fetch_add(1);
      };
      pool.run(tasks, task);
    }
  });
  for (std::size_t k = 0; k < callers; ++k) {
    REQUIRE(bad_participant[k].load() == 0);
    for (int h : hits[k])
      REQUIRE(h == static_cast<int>(rounds));
  }
}

TEST_CASE(
    "tasks that throw while other threads share the pool: each caller gets its own outcome, no deadlock",
    "[parallel][threads]") {
  thread_pool pool(4);
  constexpr std::size_t rounds = 60, tasks = 64;
  std::vector<std::size_t> thrown(3, 0), completed(3, 0);
  std::vector<std::string> wrong(3);
  on_threads(3, [&](std::size_t k) {
    for (std::size_t round = 0; round < rounds; ++round) {
      std::atomic<std::size_t> ran{0};
      // caller 0: task 17 throws; caller 1: every task throws; caller 2: nothing throws.
      auto task = [&](std::size_t i, std::size_t) {
        ran.fetch_add(1);
        if ((k == 0 && i == 17) || k == 1)
          throw std::domain_error("caller " + std::to_string(k) + " task failed");
      };
      try {
        pool.run(tasks, task);
        ++completed[k];
      } catch (const std::domain_error& e) {
        ++thrown[k];
        if (e.what() != "caller " + std::to_string(k) + " task failed")
          wrong[k] = e.what();
      }
      if (ran.load() != tasks)
        wrong[k] = "ran " + std::to_string(ran.load()) + " of " + std::to_string(tasks);
    }
  });
  for (std::size_t k = 0; k < 3; ++k) {
    INFO("caller " << k);
    REQUIRE(wrong[k].empty());
  }
  REQUIRE(thrown == std::vector<std::size_t>{rounds, rounds, 0});
  REQUIRE(completed == std::vector<std::size_t>{0, 0, rounds});
  // The pool is still usable afterwards.
  std::atomic<std::size_t> count{0};
  auto after = [&](std::size_t, std::size_t) { count.fetch_add(1); };
  pool.run(10, after);
  REQUIRE(count.load() == 10);
}

TEST_CASE("a task calling run on its own pool gets logic_error instead of a deadlock",
          "[parallel][threads]") {
  thread_pool pool(3);
  auto inner = [](std::size_t, std::size_t) {};
  auto reentrant = [&](std::size_t, std::size_t) { pool.run(4, inner); };
  REQUIRE_THROWS_AS(pool.run(8, reentrant), std::logic_error);
  REQUIRE_THROWS_WITH(pool.run(8, reentrant),
                      Catch::Contains("thread_pool::run") && Catch::Contains("reentrant"));
  // A task may use a different pool.
  thread_pool other(2);
  std::atomic<int> inner_runs{0};
  auto counting = [&](std::size_t, std::size_t) { inner_runs.fetch_add(1); };
  auto nested = [&](std::size_t, std::size_t) { other.run(3, counting); };
  pool.run(4, nested);
  REQUIRE(inner_runs.load() == 12);
}

TEST_CASE("thread_pool destruction while idle joins its workers", "[parallel][threads]") {
  for (int round = 0; round < 50; ++round) {
    thread_pool never_used(4);
    REQUIRE(never_used.size() == 4);
  }
  for (int round = 0; round < 50; ++round) {
    // Destroyed right after a job: workers may still be waking for it.
    thread_pool pool(4);
    std::atomic<int> ran{0};
    auto task = [&](std::size_t, std::size_t) { ran.fetch_add(1); };
    pool.run(3, task);
    REQUIRE(ran.load() == 3);
  }
  {
    thread_pool idle(3);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

TEST_CASE("a worker thread the OS refuses: the started ones are joined and a clear system_error is thrown",
          "[parallel][threads][errors]") {
  for (std::size_t refused : {1u, 3u, 5u}) {
    INFO("worker " << refused << " refused");
    std::atomic<std::size_t> started{0}, finished{0};
    auto starter = [&](std::size_t worker, auto&& body) {
      if (worker == refused)
        throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again),
                                "std::thread");
      started.fetch_add(1);
      return std::thread([&finished, body = std::move(body)]() mutable {
        body();
        finished.fetch_add(1);
      });
    };
    try {
      thread_pool pool(detail::with_thread_starter, 6, starter);
      FAIL("no exception");
    } catch (const std::system_error& e) {
      REQUIRE(e.code() == std::errc::resource_unavailable_try_again);
      const std::string what = e.what();
      REQUIRE_THAT(what, Catch::Contains("skipstep::thread_pool") &&
                             Catch::Contains("worker thread " + std::to_string(refused) + " of 5") &&
                             Catch::Contains("threads = 6"));
    }
    REQUIRE(started.load() == refused - 1);
    REQUIRE(finished.load() == started.load());  // every started worker returned and was joined
  }
}

TEST_CASE("thread_pool sizes far beyond the hardware are rejected with a clear error", "[parallel][errors]") {
  const std::size_t limit = thread_pool::max_threads();
  REQUIRE(limit >= 1024);
  REQUIRE(limit >= 4 * static_cast<std::size_t>(std::thread::hardware_concurrency()));
  const std::size_t huge = std::numeric_limits<std::size_t>::max();
  REQUIRE_THROWS_AS(thread_pool(huge), std::invalid_argument);
  REQUIRE_THROWS_WITH(thread_pool(huge), Catch::Contains("skipstep::thread_pool") &&
                                             Catch::Contains("threads") &&
                                             Catch::Contains("max_threads() = " + std::to_string(limit)) &&
                                             Catch::Contains("(got " + std::to_string(huge) + ")"));
  REQUIRE_THROWS_AS(thread_pool(limit + 1), std::invalid_argument);
}
