/// @file
/// A fixed team of K threads (the caller plus K − 1 workers) that run one job at a time: the exact
/// predictor's rows split into K contiguous parts (for_rows), or a list of independent tasks
/// (for_each_index). Starting a job takes a mutex and two condition variables: no heap allocation, so the
/// sampling loop stays allocation-free.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace skipstep_demo {

class row_pool {
 public:
  /// A team of `threads` ≥ 1 participants; threads − 1 workers are started now and joined by the destructor.
  explicit row_pool(unsigned threads);
  ~row_pool();
  row_pool(const row_pool&) = delete;
  row_pool& operator=(const row_pool&) = delete;

  /// K, the number of participants.
  [[nodiscard]] unsigned size() const noexcept { return static_cast<unsigned>(workers_.size()) + 1; }

  /// Part p of [0, n) split into K parts: [⌊p·n/K⌋, ⌊(p+1)·n/K⌋).
  [[nodiscard]] std::pair<std::size_t, std::size_t> part_range(std::size_t n, unsigned part) const noexcept {
    const std::size_t k = size();
    return {part * n / k, (part + 1) * n / k};
  }

  /// Calls fn(part, begin, end) for every non-empty part of [0, n) (part 0 on the calling thread) and returns
  /// when all are done. The first exception thrown by any part is rethrown here.
  template <class F>
  void for_rows(std::size_t n, F&& fn) {
    auto body = [&](unsigned part) {
      const auto [b, e] = part_range(n, part);
      if (b < e)
        fn(part, b, e);
    };
    run_on_all(body);
  }

  /// Calls fn(i) for i in [0, count), each index once, the participants taking the next free index (dynamic
  /// scheduling: for tasks of unequal cost).
  template <class F>
  void for_each_index(std::size_t count, F&& fn) {
    std::atomic<std::size_t> next{0};
    auto body = [&](unsigned) {
      for (std::size_t i = next.fetch_add(1); i < count; i = next.fetch_add(1))
        fn(i);
    };
    run_on_all(body);
  }

 private:
  /// A job as a function pointer plus its context (type erasure without allocation).
  struct job {
    void (*call)(void*, unsigned) = nullptr;
    void* context = nullptr;
  };

  template <class F>
  void run_on_all(F& body) {
    dispatch(job{[](void* c, unsigned part) { (*static_cast<F*>(c))(part); }, &body});
  }

  /// Publishes `j`, runs part 0, waits for the workers, rethrows the first failure.
  void dispatch(job j);
  /// A worker: waits for a new generation, runs its part, reports completion.
  void worker_loop(unsigned part);
  /// Runs one part, recording the first exception.
  void run_part(const job& j, unsigned part) noexcept;

  std::mutex mutex_;
  std::condition_variable start_;
  std::condition_variable done_;
  std::uint64_t generation_ = 0;
  unsigned pending_ = 0;
  bool stop_ = false;
  job job_;
  std::exception_ptr failure_;
  std::vector<std::thread> workers_;
};

}  // namespace skipstep_demo
