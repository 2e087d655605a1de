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
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "skipstep/detail/error.hpp"
#include "skipstep/step/affine_step.hpp"

namespace skipstep {

namespace detail {

/// How thread_pool starts a worker: `start(worker, body)` returns a std::thread running `body` (worker is
/// 1-based). The default is std::thread itself; tests pass a starter that throws std::system_error at a
/// chosen worker, as the OS does when it refuses a thread (RLIMIT_NPROC, memory), to check that the pool
/// cleans up.
struct std_thread_starter {
  template <class Body>
  std::thread operator()(std::size_t /*worker*/, Body&& body) const {
    return std::thread(std::forward<Body>(body));
  }
};

/// Tag for thread_pool's test-hook constructor.
struct with_thread_starter_t {
  explicit with_thread_starter_t() = default;
};
inline constexpr with_thread_starter_t with_thread_starter{};

}  // namespace detail

/// A fixed set of worker threads that run the tasks 0..n−1 of one job at a time; the calling thread takes
/// part. `run` blocks until every task is done and rethrows the first exception a task threw.
///
/// Thread safety: several threads may call `run` on one pool at once (e.g. two samplers, each with its own
/// sampler_workspace, sharing a pool). Jobs are serialized: a mutex is held for a job's whole duration, so a
/// caller waits for the jobs ahead of it, then runs its own with all participants. `run` is not reentrant: a
/// task that calls `run` on its own pool gets std::logic_error (it would wait for itself). Destroying a pool
/// while a `run` on it is in progress is undefined, as for any object in use.
class thread_pool {
 public:
  /// The largest pool size accepted: max(1024, 4 × std::thread::hardware_concurrency()). A step splits into
  /// at most 4 tasks per participant, so threads beyond the hardware only add switching; a size far beyond it
  /// (SIZE_MAX, an unsigned wrap-around) is a bug in the caller and is rejected rather than clamped.
  [[nodiscard]] static std::size_t max_threads() noexcept {
    return std::max<std::size_t>(1024, 4 * static_cast<std::size_t>(std::thread::hardware_concurrency()));
  }

  /// A pool of `threads` participants (the caller plus threads − 1 workers). 1 ≤ threads ≤ max_threads(),
  /// else std::invalid_argument naming thread_pool, threads and the value. If the OS refuses a worker thread,
  /// the workers already started are stopped and joined and std::system_error (same code) is thrown, naming
  /// thread_pool, the worker that failed and the count asked for.
  explicit thread_pool(std::size_t threads)
      : thread_pool(detail::with_thread_starter, threads, detail::std_thread_starter{}) {}

  /// Test hook (see detail::std_thread_starter): as thread_pool(threads), starting workers with `start`.
  template <class Starter>
  thread_pool(detail::with_thread_starter_t, std::size_t threads, Starter start) {
    if (threads == 0) detail::throw_invalid("thread_pool", "threads", "must be >= 1", threads);
    if (threads > max_threads())
      detail::throw_invalid("thread_pool", "threads",
                            "must be <= max_threads() = " + std::to_string(max_threads()) +
                                " (max(1024, 4 x hardware_concurrency()))",
                            threads);
    workers_.reserve(threads - 1);
    for (std::size_t w = 1; w < threads; ++w) {
      try {
        workers_.push_back(start(w, [this, w] { work(w); }));
      } catch (const std::system_error& e) {
        stop_and_join();
        throw std::system_error(e.code(), "skipstep::thread_pool: could not start worker thread " +
                                              std::to_string(w) + " of " + std::to_string(threads - 1) +
                                              " (threads = " + std::to_string(threads) + "); " +
                                              std::to_string(w - 1) + " started were stopped and joined");
      } catch (...) {
        stop_and_join();
        throw;
      }
    }
  }
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;
  /// Stops and joins the workers.
  ~thread_pool() { stop_and_join(); }

  /// Participants, the caller included.
  [[nodiscard]] std::size_t size() const noexcept { return workers_.size() + 1; }

  /// Calls task(i, participant) for every i in [0, tasks), spread over the participants (participant <
  /// size()); returns when all are done and rethrows the first exception a task threw (the other tasks still
  /// run). Safe to call from several threads at once: jobs run one after another (see the class comment).
  /// Calling it from a task of the same pool throws std::logic_error.
  template <class Task>
  void run(std::size_t tasks, Task& task) {
    if (running_here_ == this)
      throw std::logic_error(
          "skipstep::thread_pool::run: called from a task of the same pool (run is not "
          "reentrant: the task would wait for itself)");
    if (tasks == 0) return;
    const std::lock_guard job_lock(job_mutex_);  // one job at a time, held until this job is done
    job current{&task, [](void* t, std::size_t i, std::size_t p) { (*static_cast<Task*>(t))(i, p); }, tasks};
    {
      std::unique_lock lock(mutex_);
      // A worker that woke late for the previous job may still be in drain(): reset next_ only after it left.
      done_.wait(lock, [this] { return active_ == 0; });
      job_ = current;
      next_.store(0, std::memory_order_relaxed);
      error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    drain(current, 0);
    std::unique_lock lock(mutex_);
    // Every index was handed out (our drain saw next_ >= tasks); wait for the workers still running one.
    done_.wait(lock, [this] { return active_ == 0; });
    job_ = job{};
    if (error_)
      std::rethrow_exception(std::exchange(error_, nullptr));
  }

 private:
  /// One job: the caller's task, how to call it, and its task count. Copied by each participant under mutex_.
  struct job {
    void* task = nullptr;
    void (*invoke)(void*, std::size_t, std::size_t) = nullptr;
    std::size_t tasks = 0;
  };

  void work(std::size_t participant) {
    std::size_t seen = 0;
    std::unique_lock lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_)
        return;
      seen = generation_;
      const job current = job_;
      ++active_;
      lock.unlock();
      drain(current, participant);
      lock.lock();
      if (--active_ == 0)
        done_.notify_all();
    }
  }

  /// Runs tasks of `current` until none is left; the first exception a task throws is kept, the rest run.
  void drain(const job& current, std::size_t participant) {
    const thread_pool* const outer = std::exchange(running_here_, this);
    for (;;) {
      const std::size_t i = next_.fetch_add(1, std::memory_order_relaxed);
      if (i >= current.tasks)
        break;
      try {
        current.invoke(current.task, i, participant);
      } catch (...) {
        const std::lock_guard lock(mutex_);
        if (!error_) error_ = std::current_exception();
      }
    }
    running_here_ = outer;
  }

  void stop_and_join() noexcept {
    {
      const std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& t : workers_)
      if (t.joinable())
        t.join();
  }

  /// The pool whose task this thread is running (nullptr outside tasks): detects a reentrant run.
  inline static thread_local const thread_pool* running_here_ = nullptr;

  std::vector<std::thread> workers_;
  std::mutex job_mutex_;  // serializes run() calls
  std::mutex mutex_;      // guards everything below except next_
  std::condition_variable wake_, done_;
  job job_;
  std::atomic<std::size_t> next_{0};
  std::size_t active_ = 0;  // workers inside drain() for the current job
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
  detail::check_noise_covers("parallel_apply_step", noise, num_samples, per_sample);
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
