/// @file
/// The demo's thread team (see row_pool.hpp).
#include "row_pool.hpp"

#include <stdexcept>

namespace skipstep_demo {

row_pool::row_pool(unsigned threads) {
  if (threads == 0)
    throw std::invalid_argument("skipstep_demo::row_pool: threads must be >= 1 (got 0)");
  workers_.reserve(threads - 1);
  for (unsigned p = 1; p < threads; ++p)
    workers_.emplace_back([this, p] { worker_loop(p); });
}

row_pool::~row_pool() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  start_.notify_all();
  for (auto& w : workers_)
    w.join();
}

void row_pool::run_part(const job& j, unsigned part) noexcept {
  try {
    j.call(j.context, part);
  } catch (...) {
    std::lock_guard lock(mutex_);
    if (!failure_)
      failure_ = std::current_exception();
  }
}

void row_pool::dispatch(job j) {
  {
    std::lock_guard lock(mutex_);
    job_ = j;
    failure_ = nullptr;
    pending_ = static_cast<unsigned>(workers_.size());
    ++generation_;
  }
  start_.notify_all();
  run_part(j, 0);
  std::unique_lock lock(mutex_);
  done_.wait(lock, [this] { return pending_ == 0; });
  if (failure_)
    std::rethrow_exception(std::exchange(failure_, nullptr));
}

void row_pool::worker_loop(unsigned part) {
  std::uint64_t seen = 0;
  for (;;) {
    job j;
    {
      std::unique_lock lock(mutex_);
      start_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_)
        return;
      seen = generation_;
      j = job_;
    }
    run_part(j, part);
    {
      std::lock_guard lock(mutex_);
      --pending_;
    }
    done_.notify_one();
  }
}

}  // namespace skipstep_demo
