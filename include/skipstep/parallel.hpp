/// @file
/// Opt-in multi-threading for large tensors. A step is elementwise and its noise is counter-based (addressed by
/// sample, step and element), so splitting it over threads gives the same bits as one thread: results do not depend
/// on the thread count. A `thread_pool` keeps its workers for its whole life; running a step on it allocates nothing.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "skipstep/detail/error.hpp"
#include "skipstep/step/affine_step.hpp"

namespace skipstep {

/// A fixed set of worker threads that run the tasks 0..n−1 of one job at a time; the calling thread takes part.
/// `run` blocks until every task is done and rethrows the first exception a task threw.
class thread_pool {
 public:
  /// A pool of `threads` participants (the caller plus threads − 1 workers). threads ≥ 1.
  explicit thread_pool(std::size_t threads) {
    if (threads == 0) detail::throw_invalid("thread_pool", "threads", "must be >= 1", threads);
    workers_.reserve(threads - 1);
    for (std::size_t w = 1; w < threads; ++w) workers_.emplace_back([this, w] { work(w); });
  }
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;
  /// Stops and joins the workers.
  ~thread_pool() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
  }

  /// Participants, the caller included.
  [[nodiscard]] std::size_t size() const noexcept { return workers_.size() + 1; }

  /// Calls task(i, participant) for every i in [0, tasks), spread over the participants (participant < size());
  /// returns when all are done. Not reentrant: one job at a time per pool.
  template <class Task>
  void run(std::size_t tasks, Task& task) {
    if (tasks == 0) return;
    {
      std::lock_guard lock(mutex_);
      job_ = &task;
      invoke_ = [](void* job, std::size_t i, std::size_t participant) { (*static_cast<Task*>(job))(i, participant); };
      tasks_ = tasks;
      next_.store(0);
      unfinished_ = tasks;
      error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    drain(0);
    std::unique_lock lock(mutex_);
    done_.wait(lock, [this] { return unfinished_ == 0; });
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void work(std::size_t participant) {
    std::size_t seen = 0;
    for (;;) {
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
        if (stopping_) return;
        seen = generation_;
      }
      drain(participant);
    }
  }

  void drain(std::size_t participant) {
    for (;;) {
      const std::size_t i = next_.fetch_add(1);
      if (i >= tasks_) return;
      try {
        invoke_(job_, i, participant);
      } catch (...) {
        std::lock_guard lock(mutex_);
        if (!error_) error_ = std::current_exception();
      }
      std::lock_guard lock(mutex_);
      if (--unfinished_ == 0) done_.notify_all();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  void* job_ = nullptr;
  void (*invoke_)(void*, std::size_t, std::size_t) = nullptr;
  std::size_t tasks_ = 0;
  std::atomic<std::size_t> next_{0};
  std::size_t unfinished_ = 0;
  std::size_t generation_ = 0;
  bool stopping_ = false;
  std::exception_ptr error_;
};

/// Below this many elements a step runs on the calling thread only: waking workers costs more than it saves.
inline constexpr std::size_t parallel_step_min_elements = 1u << 16;

/// apply_step over `pool`: the same result, bit for bit, as apply_step on one thread. Samples are split over the
/// participants when there are at least as many samples as participants, else each sample's elements are split in
/// chunks. Dynamic thresholding needs whole samples: with fewer samples than participants it runs on one thread.
/// `scratch` must hold min(num_samples, pool.size()) samples' elements when thresholding. The noise source is called
/// concurrently (philox_normal and given_noise are safe; a stateful callable of yours must be too).
template <class T, class Noise = no_noise>
void parallel_apply_step(thread_pool& pool, const affine_step& c, std::span<T> x, std::span<const T> model,
                         const x0_processing& processing, std::size_t num_samples = 1, Noise&& noise = {},
                         std::size_t step_index = 0, std::span<T> x0_out = {}, std::span<T> scratch = {}) {
  const std::size_t per_sample = detail::check_step_arguments<T, Noise>(
      "parallel_apply_step", x, std::span<const T>(model), processing, num_samples, x0_out, scratch.size());
  const std::size_t participants = pool.size();
  const bool thresholding = processing.mode == x0_processing::kind::dynamic_threshold;
  T* const x0_ptr = x0_out.empty() ? nullptr : x0_out.data();
  const auto serial = [&] {
    detail::apply_step_range(c, x.data(), model.data(), per_sample, processing, noise, step_index, x0_ptr,
                             scratch.empty() ? nullptr : scratch.data(),
                             detail::step_range{0, num_samples, 0, per_sample});
  };
  if (participants == 1 || x.size() < parallel_step_min_elements || (thresholding && num_samples < participants)) {
    serial();
    return;
  }
  if (thresholding && scratch.size() < participants * per_sample)
    detail::throw_invalid("parallel_apply_step", "scratch.size()",
                          "must hold one sample per thread (" + std::to_string(participants * per_sample) + ")",
                          scratch.size());
  if (num_samples >= participants) {
    // Whole samples per task: tasks of about equal size, a few per participant for balance.
    const std::size_t tasks = std::min(num_samples, participants * 4);
    auto task = [&](std::size_t i, std::size_t participant) {
      const std::size_t begin = num_samples * i / tasks, end = num_samples * (i + 1) / tasks;
      detail::apply_step_range(c, x.data(), model.data(), per_sample, processing, noise, step_index, x0_ptr,
                               thresholding ? scratch.data() + participant * per_sample : nullptr,
                               detail::step_range{begin, end, 0, per_sample});
    };
    pool.run(tasks, task);
    return;
  }
  // Few large samples: split each sample's elements in chunks of whole noise blocks.
  const std::size_t chunk =
      std::max<std::size_t>(detail::noise_block, (per_sample / (participants * 4) + detail::noise_block - 1) /
                                                     detail::noise_block * detail::noise_block);
  const std::size_t chunks = (per_sample + chunk - 1) / chunk;
  auto task = [&](std::size_t i, std::size_t) {
    const std::size_t sample = i / chunks, first = (i % chunks) * chunk;
    detail::apply_step_range(c, x.data(), model.data(), per_sample, processing, noise, step_index, x0_ptr, static_cast<T*>(nullptr),
                             detail::step_range{sample, sample + 1, first, std::min(first + chunk, per_sample)});
  };
  pool.run(num_samples * chunks, task);
}

}  // namespace skipstep
