/// @file
/// The program's only LibTorch translation unit: loading the TorchScript files, sampling a cell with skipstep's
/// DDIM sampler through skipstep::torch_predictor, the classifier's features, and the forward benchmark.
#include "model.hpp"

#include <skipstep/backend/libtorch.hpp>
#include <skipstep/skipstep.hpp>

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace fashion_mnist {

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

skipstep::timestep_schedule make_timesteps(const cell_spec& cell) {
  return cell.skip == skip_type::uniform ? skipstep::timestep_schedule::uniform(num_train_timesteps, cell.steps)
                                         : skipstep::timestep_schedule::quadratic(num_train_timesteps, cell.steps);
}

skipstep::ddim_sampler make_sampler(const skipstep::noise_schedule<double>& schedule, const cell_spec& cell,
                                    std::size_t num_samples) {
  skipstep::sampler_options options;
  options.prediction = skipstep::prediction_type::epsilon;
  options.num_samples = num_samples;
  const auto timesteps = make_timesteps(cell);
  if (cell.larger_variance) return skipstep::ddim_sampler(schedule, timesteps, skipstep::larger_variance{}, options);
  return skipstep::ddim_sampler(schedule, timesteps, skipstep::eta{cell.eta}, options);
}

/// Runs f(worker index) on `workers` std::threads, each with one intra-op thread; rethrows the first exception.
template <class F>
void run_workers(std::size_t workers, F&& f) {
  std::vector<std::thread> threads;
  std::exception_ptr error;
  std::mutex m;
  for (std::size_t w = 0; w < workers; ++w)
    threads.emplace_back([&, w] {
      try {
        at::set_num_threads(1);
        f(w);
      } catch (...) {
        const std::lock_guard<std::mutex> lock(m);
        if (!error) error = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace

struct networks::impl {
  torch::jit::script::Module eps;
  torch::jit::script::Module classifier;
  std::size_t workers = 1;
  skipstep::noise_schedule<double> schedule = skipstep::noise_schedule<double>::linear(num_train_timesteps);
};

networks::networks(const std::string& eps_path, const std::string& classifier_path, std::size_t workers)
    : impl_(std::make_unique<impl>()) {
  impl_->eps = torch::jit::load(eps_path);
  impl_->eps.eval();
  impl_->classifier = torch::jit::load(classifier_path);
  impl_->classifier.eval();
  impl_->workers = std::max<std::size_t>(1, workers);
}

networks::~networks() = default;

std::size_t networks::parameters() const {
  std::size_t n = 0;
  for (const auto& p : impl_->eps.parameters()) n += static_cast<std::size_t>(p.numel());
  return n;
}

cell_timing networks::sample(const cell_spec& cell, std::size_t n, std::size_t batch, std::uint64_t seed,
                             std::span<float> out) {
  if (out.size() != n * image_size) throw std::invalid_argument("fashion_mnist::networks::sample: out.size()");
  const std::size_t num_batches = (n + batch - 1) / batch;
  const skipstep::philox_normal gen(seed);
  std::atomic<std::size_t> next{0};
  std::vector<cell_timing> per(impl_->workers);
  const auto start = clock_type::now();
  run_workers(impl_->workers, [&](std::size_t w) {
    cell_timing& tm = per[w];
    for (std::size_t b = next++; b < num_batches; b = next++) {
      const std::size_t first = b * batch, count = std::min(batch, n - first);
      const skipstep::ddim_sampler sampler = make_sampler(impl_->schedule, cell, count);
      torch::Tensor x = torch::empty({static_cast<std::int64_t>(count), 1, 28, 28});
      const std::span<float> xs = skipstep::elements(x);
      for (std::size_t k = 0; k < count; ++k)
        gen.fill(xs.subspan(k * image_size, image_size), first + k, initial_noise_step);
      // The sample index inside the batch → the global sample index (the generator's stream).
      auto noise = [&](std::span<float> z, skipstep::noise_position at) {
        gen.fill(z, first + at.sample, at.step, at.first_element);
      };
      torch::jit::script::Module module = impl_->eps;  // a handle: the same module, shared read-only
      auto timed_forward = [&](const torch::Tensor& xx, const torch::Tensor& tt) {
        const auto t0 = clock_type::now();
        torch::Tensor y = module.forward({xx, tt}).toTensor();
        tm.forward_s += seconds_since(t0);
        ++tm.forwards;
        return y;
      };
      skipstep::torch_predictor net(timed_forward, {static_cast<std::int64_t>(count), 1, 28, 28});
      double predictor_s = 0.0;
      auto timed_predictor = [&](const torch::Tensor& xx, std::int64_t t, std::span<float> m) {
        const auto t0 = clock_type::now();
        net(xx, t, m);
        predictor_s += seconds_since(t0);
      };
      skipstep::sampler_workspace<float> workspace(xs.size());
      const auto t0 = clock_type::now();
      const auto result = sampler.sample(timed_predictor, x, noise, workspace);
      tm.sample_s += seconds_since(t0);
      if (result.steps_run != cell.steps) throw std::logic_error("fashion_mnist::networks::sample: steps_run");
      std::memcpy(out.data() + first * image_size, xs.data(), xs.size() * sizeof(float));
      // predictor_s includes the forward time of this batch; forward_s is accumulated across batches.
      tm.adaptor_s += predictor_s;
    }
  });
  cell_timing total;
  total.wall_s = seconds_since(start);
  for (const auto& p : per) {
    total.sample_s += p.sample_s;
    total.forward_s += p.forward_s;
    total.adaptor_s += p.adaptor_s;
    total.forwards += p.forwards;
  }
  total.adaptor_s -= total.forward_s;  // predictor time minus the forward inside it
  return total;
}

void networks::features(std::span<const float> images, std::size_t n, std::span<double> out, std::vector<int>* labels) {
  if (images.size() != n * image_size || out.size() != n * feature_size)
    throw std::invalid_argument("fashion_mnist::networks::features: sizes");
  if (labels) labels->assign(n, -1);
  c10::InferenceMode guard;
  auto method = impl_->classifier.get_method("features");
  constexpr std::size_t chunk = 500;
  for (std::size_t first = 0; first < n; first += chunk) {
    const std::size_t count = std::min(chunk, n - first);
    torch::Tensor x = torch::from_blob(const_cast<float*>(images.data() + first * image_size),
                                       {static_cast<std::int64_t>(count), 1, 28, 28}, torch::kFloat);
    const torch::Tensor f = method({x}).toTensor().to(torch::kDouble).contiguous();
    std::memcpy(out.data() + first * feature_size, f.data_ptr<double>(), count * feature_size * sizeof(double));
    if (labels) {
      const torch::Tensor logits = impl_->classifier.forward({x}).toTensor().argmax(1).to(torch::kInt).contiguous();
      std::memcpy(labels->data() + first, logits.data_ptr<int>(), count * sizeof(int));
    }
  }
}

double networks::forward_ms_per_image(std::size_t batch, std::size_t workers, int threads, int reps) {
  std::vector<double> times;
  std::mutex m;
  const auto one_worker = [&](std::size_t) {
    if (threads > 1) at::set_num_threads(threads);
    c10::InferenceMode guard;
    torch::jit::script::Module module = impl_->eps;
    const torch::Tensor x = torch::randn({static_cast<std::int64_t>(batch), 1, 28, 28});
    const torch::Tensor t = torch::full({static_cast<std::int64_t>(batch)}, 500, torch::kLong);
    for (int w = 0; w < 3; ++w) module.forward({x, t});  // the profiling executor optimizes after a few runs
    for (int r = 0; r < reps; ++r) {
      const auto t0 = clock_type::now();
      module.forward({x, t});
      const double s = seconds_since(t0);
      const std::lock_guard<std::mutex> lock(m);
      times.push_back(s);
    }
  };
  const auto start = clock_type::now();
  run_workers(workers, one_worker);
  const double wall = seconds_since(start);
  if (workers > 1)  // throughput of the workers side by side (includes the 3 warm-up calls)
    return 1e3 * wall / (static_cast<double>(workers) * (reps + 3) * static_cast<double>(batch));
  std::sort(times.begin(), times.end());
  return 1e3 * times[times.size() / 2] / static_cast<double>(batch);
}

}  // namespace fashion_mnist
