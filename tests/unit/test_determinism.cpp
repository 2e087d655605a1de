// Determinism (issue 7): the same seed gives bit-identical output across runs, batch sizes, chunkings (of the run
// in time and of the tensor in noise blocks) and thread counts, and across processes (a 50-step sampler run twice
// by the skipstep_run_sampler helper, its output files compared byte for byte).
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "../determinism/scenario.hpp"
#include "skipstep/skipstep.hpp"

#if __has_include("skipstep/parallel.hpp")
#include "skipstep/parallel.hpp"
#define SKIPSTEP_TEST_HAVE_THREAD_POOL 1
#endif

using namespace skipstep;
namespace sd = skipstep_determinism;

namespace {

bool same_bytes(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::vector<float> slice(const std::vector<float>& x, std::size_t sample) {
  return {x.begin() + static_cast<std::ptrdiff_t>(sample * sd::per_sample),
          x.begin() + static_cast<std::ptrdiff_t>((sample + 1) * sd::per_sample)};
}

/// Sample b run on its own: its noise must come from stream b, as it would in the batch.
std::vector<float> run_alone(std::uint64_t seed, std::size_t b) {
  auto x = sd::initial(seed, b, 1);
  const philox_normal rng(seed);
  auto stream_b = [&](std::span<float> out, noise_position at) {
    rng.fill(out, at.sample + b, at.step, at.first_element);
  };
  sd::make_sampler(1).sample(sd::model, x, stream_b);
  return x;
}

std::vector<float> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<float> out(bytes.size() / sizeof(float));
  std::memcpy(out.data(), bytes.data(), out.size() * sizeof(float));
  return out;
}

}  // namespace

TEST_CASE("the same seed gives the same bits run after run, and a different seed does not", "[determinism]") {
  const auto a = sd::run_batch(11);
  const auto b = sd::run_batch(11);
  REQUIRE(same_bytes(a, b));
  const auto c = sd::run_batch(12);
  REQUIRE_FALSE(same_bytes(a, c));
  // A fresh sampler and a reused one (the sampler keeps no state between runs).
  const auto s = sd::make_sampler(sd::batch);
  for (int run = 0; run < 2; ++run) {
    auto x = sd::initial(11, 0, sd::batch);
    s.sample(sd::model, x, philox_normal(11));
    REQUIRE(same_bytes(x, a));
  }
}

TEST_CASE("sample b's trajectory is the same alone or in a batch of 4", "[determinism]") {
  const auto batch = sd::run_batch(21);
  for (std::size_t b = 0; b < sd::batch; ++b) {
    INFO("sample " << b);
    REQUIRE(same_bytes(run_alone(21, b), slice(batch, b)));
  }
  // A batch of 2 made of samples 2 and 3 (streams offset by 2).
  auto x = sd::initial(21, 2, 2);
  const philox_normal rng(21);
  auto offset_2 = [&](std::span<float> out, noise_position at) {
    rng.fill(out, at.sample + 2, at.step, at.first_element);
  };
  sd::make_sampler(2).sample(sd::model, x, offset_2);
  REQUIRE(same_bytes(slice(x, 0), slice(batch, 2)));
  REQUIRE(same_bytes(slice(x, 1), slice(batch, 3)));
}

TEST_CASE("chunking: a run split in time, and noise drawn in other block sizes, give the same bits",
          "[determinism]") {
  const auto whole = sd::run_batch(31);
  const auto s = sd::make_sampler(sd::batch);
  SECTION("steps [0, k) then [k, N) with first_step, for several k") {
    for (std::size_t k : {std::size_t{1}, std::size_t{17}, sd::num_steps - 1}) {
      INFO("split at step " << k);
      auto x = sd::initial(31, 0, sd::batch);
      std::size_t seen = 0;
      auto stop_at_k = [&](const step_info&, std::span<const float>, std::span<const float>) { return ++seen < k; };
      const auto first = s.sample(sd::model, x, philox_normal(31), stop_at_k);
      REQUIRE(first.cancelled);
      REQUIRE(first.steps_run == k);
      const auto rest = s.sample(sd::model, x, philox_normal(31), no_callback{}, k);
      REQUIRE(rest.steps_run == sd::num_steps - k);
      REQUIRE(same_bytes(x, whole));
    }
  }
  SECTION("a noise source that fills each requested block in pieces of 1, 3 and 7 elements") {
    for (std::size_t piece : {std::size_t{1}, std::size_t{3}, std::size_t{7}}) {
      INFO("piece " << piece);
      const philox_normal rng(31);
      auto pieces = [&](std::span<float> out, noise_position at) {
        for (std::size_t j = 0; j < out.size(); j += piece) {
          const std::size_t len = std::min(piece, out.size() - j);
          rng.fill(out.subspan(j, len), at.sample, at.step, at.first_element + j);
        }
      };
      auto x = sd::initial(31, 0, sd::batch);
      s.sample(sd::model, x, pieces);
      REQUIRE(same_bytes(x, whole));
    }
  }
  SECTION("an explicit workspace reused across runs") {
    sampler_workspace<float> ws(sd::batch * sd::per_sample);
    for (int run = 0; run < 2; ++run) {
      auto x = sd::initial(31, 0, sd::batch);
      s.sample(sd::model, x, philox_normal(31), ws);
      REQUIRE(same_bytes(x, whole));
    }
  }
}

TEST_CASE("threads calling samplers on different batches give the bits of a serial run", "[determinism]") {
  constexpr std::size_t threads = 4;
  std::vector<std::vector<float>> serial(threads), parallel(threads);
  for (std::size_t i = 0; i < threads; ++i) serial[i] = sd::run_batch(100 + i);
  const auto shared = sd::make_sampler(sd::batch);  // one const sampler used by every thread
  std::vector<std::thread> pool;
  for (std::size_t i = 0; i < threads; ++i)
    pool.emplace_back([&, i] {
      auto x = sd::initial(100 + i, 0, sd::batch);
      shared.sample(sd::model, x, philox_normal(100 + i));
      parallel[i] = std::move(x);
    });
  for (auto& t : pool) t.join();
  for (std::size_t i = 0; i < threads; ++i) REQUIRE(same_bytes(parallel[i], serial[i]));
}

#ifdef SKIPSTEP_TEST_HAVE_THREAD_POOL
TEST_CASE("the opt-in threaded step gives the same bits for 1, 2, 3 and 4 threads", "[determinism][parallel]") {
  // Large enough for the pool to be used (parallel_step_min_elements), in both splits: whole samples per task
  // (8 samples) and chunks of one sample (1 sample), with and without dynamic thresholding.
  const auto schedule = noise_schedule<>::scaled_linear(1000);
  const auto ts = timestep_schedule::trailing(1000, 6);
  for (std::size_t samples : {std::size_t{8}, std::size_t{1}}) {
    for (bool threshold : {false, true}) {
      const std::size_t per = (parallel_step_min_elements + 1000) / samples + 37;
      sampler_options opt;
      opt.num_samples = samples;
      if (threshold) opt.processing = x0_processing::dynamic_threshold(0.9, 1.5);
      const ddim_sampler s(schedule, ts, eta{0.8}, opt);
      auto predictor = [](const std::vector<float>& x, std::int64_t t, std::span<float> out) {
        for (std::size_t i = 0; i < x.size(); ++i)
          out[i] = static_cast<float>(0.6 * std::tanh(x[i]) + 1e-4 * static_cast<double>(t));
      };
      std::vector<float> reference;
      for (std::size_t threads : {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{4}}) {
        INFO("samples " << samples << ", threshold " << threshold << ", threads " << threads);
        std::vector<float> x(samples * per);
        philox_normal(9).fill(std::span<float>(x), 0, 0);
        thread_pool pool(threads);
        sampler_workspace<float> ws(x.size(), &pool);
        s.sample(predictor, x, philox_normal(4), ws);
        if (threads == 1)
          reference = x;
        else
          REQUIRE(same_bytes(x, reference));
      }
    }
  }
}
#endif

TEST_CASE("a 50-step sampler run twice in separate processes writes the same bytes", "[determinism][process]") {
#ifndef SKIPSTEP_RUN_SAMPLER
  WARN("SKIPSTEP_RUN_SAMPLER not defined (test built outside tests/CMakeLists.txt): separate-process check skipped");
#else
  const std::string helper = SKIPSTEP_RUN_SAMPLER;
  const std::string base =
      "skipstep_determinism_" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) + "_";
  const std::string a = base + "a.bin", b = base + "b.bin";
  REQUIRE(std::system(("\"" + helper + "\" 41 " + a).c_str()) == 0);
  REQUIRE(std::system(("\"" + helper + "\" 41 " + b).c_str()) == 0);
  const auto fa = read_file(a), fb = read_file(b);
  std::remove(a.c_str());
  std::remove(b.c_str());
  REQUIRE(fa.size() == sd::batch * sd::per_sample);
  REQUIRE(same_bytes(fa, fb));
  // And the same bytes as this process computes.
  REQUIRE(same_bytes(fa, sd::run_batch(41)));
#endif
}
