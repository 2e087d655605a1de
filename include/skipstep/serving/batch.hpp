/// @file
/// Continuous batching: many requests, each with its own sampler, step index, seed and solver history, stepped
/// together with one network call per step. A serving::batch holds `capacity` slots of `sample_size` elements in
/// one contiguous buffer [capacity × sample_size]; `admit` puts a request into a free slot and `retire` frees it,
/// between steps. `step(model)` asks the network once for the whole batch, giving it one model time per slot (the
/// time of that slot's next row, rows()[r].model_time), then applies every unfinished slot's row r to its region of
/// the buffer with sampler::apply_row — the same function sampler::sample applies after its own model call — on
/// the slot's own workspace (saved state S, history ring) and with the slot's own noise, philox_normal(seed) at
/// (sample b, step, element) exactly as a run alone draws it. So each request's result is bit-identical to
///   request.solver->sample(model_alone, x, philox_normal(request.seed))   (x = request.initial)
/// whatever the other requests, the batch capacity, the slot it landed in, the admission order or the thread
/// count, provided the network computes each sample of a batch as it computes it alone (a per-sample model).
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "skipstep/detail/error.hpp"
#include "skipstep/parallel.hpp"
#include "skipstep/random.hpp"
#include "skipstep/sampler.hpp"
#include "skipstep/tensor.hpp"

namespace skipstep::serving {

/// The network of a batch: `f(x, t, out)` with x the first k slots of the batch (k·sample_size elements, slot s at
/// [s·sample_size, (s+1)·sample_size)), t their k model times (t[s] is the time of slot s's next row, fractional on
/// σ grids; an empty or finished slot gets batch_options::empty_slot_time, NaN by default, meaning "skip this
/// slot: its output is ignored"), and out the k·sample_size outputs to write, slot by slot in x's layout. What the
/// output means (ε, v, x0, flow velocity) is each slot's sampler's prediction_type, as for a plain predictor; a
/// U-Net taking one timestep per sample is this call. serving::per_sample turns a one-sample predictor into one.
template <class F, class T>
concept batched_predictor =
    TensorElement<T> && std::invocable<F&, std::span<const T>, std::span<const double>, std::span<T>>;

/// A batched_predictor that calls a one-sample predictor `f(std::span<const T> x, double t, std::span<T> out)`
/// once per slot whose time is not NaN (the others are skipped): the exact oracle
/// (testing::mixture_predictor::evaluate) or a model that cannot batch, driven through a batch.
template <class F>
struct per_sample_predictor {
  F f;  ///< the one-sample predictor.

  /// out_s = f(x_s, t[s]) for every slot s with a finite or infinite (not NaN) time.
  template <TensorElement T>
    requires std::invocable<F&, std::span<const T>, double, std::span<T>>
  void operator()(std::span<const T> x, std::span<const double> t, std::span<T> out) {
    if (t.empty()) return;
    const std::size_t n = x.size() / t.size();
    for (std::size_t s = 0; s < t.size(); ++s) {
      if (t[s] != t[s]) continue;  // NaN: an empty or finished slot
      if constexpr (!takes_fractional_time<F>) {
        // An integer-time predictor would silently truncate t (523.7 → 523) or overflow (inf): refuse, as
        // sampler::sample refuses fractional model times for such a predictor.
        if (!(t[s] == std::nearbyint(t[s]) && std::abs(t[s]) < 0x1p62))
          detail::throw_invalid("serving::per_sample", "t[" + std::to_string(s) + "]",
                                "must be a whole number for a predictor taking an integer timestep (give it a "
                                "double time parameter)",
                                t[s]);
      }
      f(x.subspan(s * n, n), t[s], out.subspan(s * n, n));
    }
  }
};

/// Wraps a one-sample predictor as a batched_predictor (see per_sample_predictor).
template <class F>
[[nodiscard]] per_sample_predictor<std::decay_t<F>> per_sample(F&& f) {
  return {std::forward<F>(f)};
}

/// How a batch runs.
struct batch_options {
  /// Opt-in: step the slots over this pool's threads (one slot per task; each slot's row on one thread, so the
  /// bits do not depend on the thread count). Small batches (fewer than parallel_min_elements elements to step)
  /// run on the calling thread. The network call is always made on the calling thread.
  thread_pool* pool = nullptr;
  /// With a pool, the fewest elements (unfinished slots × sample_size) a step splits over its threads: below it,
  /// waking the workers costs more than they save (default parallel_step_min_elements = 65536; 0: always).
  std::size_t parallel_min_elements = parallel_step_min_elements;
  /// Check every unfinished slot's model output for NaN / Inf before any slot is stepped (one vectorized read of
  /// the output; std::domain_error names the slot, its request, its step, the element and the value, and the
  /// batch is left as it was before the call). Off: a NaN propagates into that request's sample only.
  bool check_finite = true;
  /// The model time given to an empty or finished slot: NaN (default: "skip it") or, for a network that cannot
  /// skip a sample, any time it accepts. Such a slot's output is never read.
  double empty_slot_time = std::numeric_limits<double>::quiet_NaN();
};

/// One request: its sampler (shared, immutable, not copied: it must outlive the request's stay in the batch), its
/// starting sample, its seed and the caller's tag.
template <TensorElement T>
struct request {
  const sampler* solver = nullptr;  ///< any skipstep sampler (output_factor() = 1); many slots may share one.
  std::span<const T> initial = {};  ///< x_T (or the img2img start), sample_size() elements, copied at admit.
  std::uint64_t seed = 0;           ///< the step noise: philox_normal(seed), as in solver->sample(f, x, philox_normal(seed)).
  std::size_t first_step = 0;       ///< first step to run (img2img; 0 for multistep / multi-stage solvers).
  std::uint64_t id = 0;             ///< the caller's tag (named in errors).
};

/// What one batch step did.
struct step_result {
  std::size_t stepped = 0;   ///< slots that ran a row (the network call's unfinished samples).
  std::size_t finished = 0;  ///< of those, the slots whose request completed with this row.
  std::size_t extent = 0;    ///< the slots passed to the network (highest unfinished slot + 1).
};

/// A continuous batch of `capacity` slots of `sample_size` elements (see the file comment). Not thread-safe: one
/// thread drives a batch (its optional pool steps the slots); the samplers may be shared by any number of
/// batches and threads. Memory: every buffer is allocated by the constructor or, for a request whose solver
/// needs more history than its slot ever held, by admit; step allocates nothing.
template <TensorElement T>
class batch {
 public:
  /// A batch of `capacity` ≥ 1 slots of `sample_size` ≥ 1 elements each; throws std::invalid_argument naming
  /// serving::batch, the argument and the value otherwise.
  batch(std::size_t capacity, std::size_t sample_size, batch_options options = {})
      : n_(sample_size), options_(options) {
    constexpr std::string_view fn = "serving::batch";
    if (capacity == 0) detail::throw_invalid(fn, "capacity", "must be >= 1", capacity);
    if (sample_size == 0) detail::throw_invalid(fn, "sample_size", "must be >= 1", sample_size);
    if (sample_size > std::numeric_limits<std::size_t>::max() / capacity / sizeof(T))
      detail::throw_invalid(fn, "capacity * sample_size",
                            "must fit in memory (sample_size = " + std::to_string(sample_size) + ")", capacity);
    x_.assign(capacity * n_, T(0));
    m_.assign(capacity * n_, T(0));
    times_.assign(capacity, options_.empty_slot_time);
    order_.assign(capacity, 0);
    slots_.reserve(capacity);
    for (std::size_t s = 0; s < capacity; ++s) slots_.emplace_back(n_);
  }

  /// The number of slots.
  [[nodiscard]] std::size_t capacity() const noexcept { return slots_.size(); }
  /// Elements per slot.
  [[nodiscard]] std::size_t sample_size() const noexcept { return n_; }
  /// Occupied slots (running or finished, not yet retired).
  [[nodiscard]] std::size_t size() const noexcept { return occupied_; }
  /// Occupied slots whose request has rows left.
  [[nodiscard]] std::size_t unfinished() const noexcept {
    std::size_t k = 0;
    for (const slot& s : slots_) k += s.solver != nullptr && !s.finished() ? 1 : 0;
    return k;
  }
  /// Network calls made by step() so far.
  [[nodiscard]] std::size_t model_calls() const noexcept { return calls_; }
  /// The options the batch was built with.
  [[nodiscard]] const batch_options& options() const noexcept { return options_; }

  /// True when slot s holds a request (s < capacity(), else std::out_of_range).
  [[nodiscard]] bool occupied(std::size_t s) const { return at("serving::batch::occupied", s).solver != nullptr; }
  /// True when slot s's request has run all its rows: sample(s) is its result (retire it when read).
  [[nodiscard]] bool finished(std::size_t s) const { return held("serving::batch::finished", s).finished(); }
  /// Steps slot s's request has completed (counting from 0, not from its first_step).
  [[nodiscard]] std::size_t steps_done(std::size_t s) const {
    const slot& sl = held("serving::batch::steps_done", s);
    return sl.finished() ? sl.solver->num_steps() : sl.solver->rows()[sl.row].step;
  }
  /// The tag of slot s's request.
  [[nodiscard]] std::uint64_t id(std::size_t s) const { return held("serving::batch::id", s).id; }
  /// Slot s's current sample (its result once finished(s)).
  [[nodiscard]] std::span<const T> sample(std::size_t s) const {
    (void)held("serving::batch::sample", s);
    return std::span<const T>(x_).subspan(s * n_, n_);
  }
  /// The whole buffer the network sees, [capacity × sample_size].
  [[nodiscard]] std::span<const T> samples() const noexcept { return x_; }

  /// Puts `r` into the lowest free slot and returns the slot: copies r.initial there, sizes the slot's state and
  /// history for r.solver (allocating only if the slot never held so large a plan) and positions it at
  /// row_of_step(r.first_step). Between steps only. Throws std::invalid_argument naming serving::batch::admit,
  /// the argument and the value when the batch is full, r.solver is null, r.initial has not sample_size()
  /// elements (or not a multiple of the solver's num_samples), the solver is a learned-variance DDPM
  /// (output_factor() = 2: unsupported), first_step > num_steps() or > 0 for a solver with history; and
  /// std::domain_error when a coefficient overflows T (sampler::check_coefficients_fit). The batch is unchanged
  /// on an exception.
  std::size_t admit(const request<T>& r) {
    constexpr std::string_view fn = "serving::batch::admit";
    if (occupied_ == slots_.size())
      detail::throw_invalid(fn, "size()",
                            "must be < capacity() = " + std::to_string(slots_.size()) +
                                " to admit a request (the batch is full: retire a slot first; request id " +
                                std::to_string(r.id) + ")",
                            occupied_);
    if (r.solver == nullptr) detail::throw_invalid(fn, "request.solver", "must point to a sampler", "nullptr");
    const sampler& solver = *r.solver;
    if (r.initial.size() != n_)
      detail::throw_invalid(fn, "request.initial.size()",
                            "must equal the batch's sample_size() = " + std::to_string(n_) + " (request id " +
                                std::to_string(r.id) + ")",
                            r.initial.size());
    const std::size_t k = solver.options().num_samples;
    if (n_ % k != 0)
      detail::throw_invalid(fn, "request.solver->options().num_samples",
                            "must divide sample_size() = " + std::to_string(n_), k);
    if (solver.output_factor() != 1)
      detail::throw_invalid(fn, "request.solver->output_factor()",
                            "must be 1 (a learned-variance DDPM's [m; v] output is not supported in a batch)",
                            solver.output_factor());
    if (r.first_step > solver.num_steps())
      detail::throw_invalid(fn, "request.first_step", "must be <= num_steps = " + std::to_string(solver.num_steps()),
                            r.first_step);
    if (r.first_step > 0 && (solver.history_slots() > 0 || solver.uses_state()))
      detail::throw_invalid(fn, "request.first_step",
                            "must be 0 for a multistep or multi-stage solver (it needs the history of the steps "
                            "before it; build the solver for the shortened schedule)",
                            r.first_step);
    solver.check_coefficients_fit<T>(fn, r.first_step);
    if (solver.num_steps() > philox_normal::max_steps || n_ / k > philox_normal::max_elements)
      detail::throw_invalid(fn, "request.solver->num_steps()",
                            "must be addressable by philox_normal (at most 2^32 steps of 2^34 elements)",
                            solver.num_steps());
    std::size_t s = 0;
    while (slots_[s].solver != nullptr) ++s;
    slot& sl = slots_[s];
    solver.prepare_workspace(sl.workspace, n_);  // may allocate (admit, not step)
    std::copy(r.initial.begin(), r.initial.end(), x_.begin() + static_cast<std::ptrdiff_t>(s * n_));
    sl.solver = &solver;
    sl.noise = philox_normal(r.seed);
    sl.id = r.id;
    sl.row = solver.row_of_step(r.first_step);
    ++occupied_;
    return s;
  }

  /// Frees slot s (finished or not: retiring an unfinished request cancels it) and zeroes its region, so that the
  /// network's input does not depend on past requests. Between steps only. std::out_of_range for s ≥ capacity(),
  /// std::invalid_argument for an empty slot, both naming serving::batch::retire, slot and the value.
  void retire(std::size_t s) {
    slot& sl = held("serving::batch::retire", s);
    sl.solver = nullptr;
    --occupied_;
    std::fill_n(x_.begin() + static_cast<std::ptrdiff_t>(s * n_), n_, T(0));
  }

  /// One network call for every unfinished slot, then one row of each: model(x, t, out) on slots [0, extent)
  /// with t[s] = slot s's next model time (options().empty_slot_time for the others), then, per unfinished slot
  /// s at row r, sampler::apply_row(r, x_s, out_s, philox_normal(seed), workspace_s). Returns what it did.
  /// Throws std::invalid_argument when no slot is unfinished (an empty batch, or only finished requests), and
  /// std::domain_error for a non-finite model output (with check_finite); an exception from the model is passed
  /// on unchanged. On any exception no slot has been stepped. No allocation.
  template <batched_predictor<T> F>
  step_result step(F&& model) {
    constexpr std::string_view fn = "serving::batch::step";
    step_result result;
    for (std::size_t s = 0; s < slots_.size(); ++s) {
      const slot& sl = slots_[s];
      if (sl.solver == nullptr || sl.finished()) {
        times_[s] = options_.empty_slot_time;
        continue;
      }
      times_[s] = sl.solver->rows()[sl.row].model_time;
      order_[result.stepped++] = s;
      result.extent = s + 1;
    }
    if (result.stepped == 0)
      detail::throw_invalid(fn, "size()",
                            "must include an unfinished request to step (admit one; finished ones wait for retire)",
                            occupied_);
    const std::size_t k = result.extent;
    model(std::span<const T>(x_.data(), k * n_), std::span<const double>(times_.data(), k),
          std::span<T>(m_.data(), k * n_));
    ++calls_;
    if (options_.check_finite) {
      for (std::size_t j = 0; j < result.stepped; ++j) {
        const std::size_t s = order_[j];
        const std::span<const T> m = std::span<const T>(m_).subspan(s * n_, n_);
        const std::size_t bad = first_non_finite(m);
        if (bad < n_) {
          const slot& sl = slots_[s];
          const std::size_t step = sl.solver->rows()[sl.row].step;
          detail::throw_domain(fn,
                               "model output of slot " + std::to_string(s) + " (request id " + std::to_string(sl.id) +
                                   ", step " + std::to_string(step) + ", t = " + detail::format_value(times_[s]) +
                                   "), element " + std::to_string(bad),
                               "must be finite", m[bad]);
        }
      }
    }
    auto step_slot = [this](std::size_t s) {
      slot& sl = slots_[s];
      sl.solver->apply_row(sl.row, std::span<T>(x_).subspan(s * n_, n_), std::span<const T>(m_).subspan(s * n_, n_),
                           sl.noise, sl.workspace);
    };
    thread_pool* const pool = options_.pool;
    if (pool != nullptr && pool->size() > 1 && result.stepped > 1 &&
        result.stepped * n_ >= options_.parallel_min_elements) {
      auto task = [&](std::size_t j, std::size_t) { step_slot(order_[j]); };
      pool->run(result.stepped, task);
    } else {
      for (std::size_t j = 0; j < result.stepped; ++j) step_slot(order_[j]);
    }
    for (std::size_t j = 0; j < result.stepped; ++j) {
      slot& sl = slots_[order_[j]];
      ++sl.row;
      if (sl.finished()) ++result.finished;
    }
    return result;
  }

 private:
  struct slot {
    explicit slot(std::size_t n) : workspace(n, std::size_t{0}) {}
    const sampler* solver = nullptr;  ///< null: free.
    philox_normal noise{0};
    std::uint64_t id = 0;
    std::size_t row = 0;  ///< the next row to run.
    sampler_workspace<T> workspace;  ///< S, the history ring and the thresholding scratch (model_output unused).
    [[nodiscard]] bool finished() const noexcept { return row >= solver->rows().size(); }
  };

  /// The index of the first NaN / Inf of m (m.size() if none): one branch-free, vectorizable pass over the bits
  /// per block of 1024 elements, the scalar search only in a block that has one.
  static std::size_t first_non_finite(std::span<const T> m) noexcept {
    using bits_t = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
    static_assert(sizeof(T) == sizeof(bits_t), "serving::batch: float or double elements");
    constexpr bits_t exponent = static_cast<bits_t>(sizeof(T) == 4 ? 0x7f800000ull : 0x7ff0000000000000ull);
    constexpr std::size_t block = 1024;
    for (std::size_t b = 0; b < m.size(); b += block) {
      const std::size_t end = std::min(m.size(), b + block);
      bits_t any = 0;
      for (std::size_t i = b; i < end; ++i) {
        const bits_t e = std::bit_cast<bits_t>(m[i]) & exponent;
        any |= static_cast<bits_t>(e == exponent);
      }
      if (any != 0)
        for (std::size_t i = b; i < end; ++i)
          if ((std::bit_cast<bits_t>(m[i]) & exponent) == exponent) return i;
    }
    return m.size();
  }

  const slot& at(std::string_view fn, std::size_t s) const {
    detail::check_index(fn, "slot", s, slots_.size(), "capacity()");
    return slots_[s];
  }
  slot& held(std::string_view fn, std::size_t s) {
    return const_cast<slot&>(std::as_const(*this).held(fn, s));
  }
  const slot& held(std::string_view fn, std::size_t s) const {
    const slot& sl = at(fn, s);
    if (sl.solver == nullptr) detail::throw_invalid(fn, "slot", "must hold a request (it is empty)", s);
    return sl;
  }

  std::size_t n_;
  batch_options options_;
  std::vector<T> x_;               ///< [capacity × n]: the samples, the network's input.
  std::vector<T> m_;               ///< [capacity × n]: the network's output.
  std::vector<double> times_;      ///< one model time per slot.
  std::vector<std::size_t> order_;  ///< the unfinished slots of the current step.
  std::vector<slot> slots_;
  std::size_t occupied_ = 0;
  std::size_t calls_ = 0;
};

}  // namespace skipstep::serving
