/// @file
/// The sampling loop: m = predictor(x, t_i); x ← step_i(x, m, z_i); callback(i, t_i, x, x̂0). Every step's
/// coefficients are computed once, in double, when the sampler is built; the loop itself does not allocate
/// once a workspace exists. DDIM (any sigma policy), ancestral DDPM and DDIM inversion share the loop.
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "skipstep/detail/error.hpp"
#include "skipstep/parallel.hpp"
#include "skipstep/predictor.hpp"
#include "skipstep/schedule/noise_schedule.hpp"
#include "skipstep/schedule/timesteps.hpp"
#include "skipstep/step/affine_step.hpp"
#include "skipstep/step/ddim.hpp"
#include "skipstep/step/ddpm.hpp"
#include "skipstep/step/noise_source.hpp"
#include "skipstep/step/sigma.hpp"
#include "skipstep/step/solver_row.hpp"
#include "skipstep/step/transitions.hpp"
#include "skipstep/step/x0_transform.hpp"
#include "skipstep/tensor.hpp"

namespace skipstep {

namespace detail {

/// Throws std::domain_error if `values` has a NaN or an infinity, naming what, the step and the element.
template <class T>
void check_all_finite(std::string_view function, std::span<const T> values, const char* what, std::size_t step,
                      std::int64_t timestep) {
  for (std::size_t j = 0; j < values.size(); ++j)
    if (!std::isfinite(values[j]))
      throw_domain(function,
                   std::string(what) + " at step " + std::to_string(step) +
                       " (t = " + std::to_string(timestep) + "), element " + std::to_string(j),
                   "must be finite", values[j]);
}

/// "skipstep::ddim_sampler: step 3 (t = 700)", the context of a per-step construction error.
inline std::string step_label(const char* sampler_name, std::size_t i, const step_transition& tr) {
  return std::string("skipstep::") + sampler_name + ": step " + std::to_string(i) +
         " (t = " + std::to_string(tr.timestep) + ")";
}

}  // namespace detail

/// Options shared by all samplers.
struct sampler_options {
  prediction_type prediction = prediction_type::epsilon;     ///< what the predictor outputs.
  x0_processing processing = x0_processing::none();          ///< clip / dynamic thresholding of x̂0.
  step_convention convention = step_convention::consistent;  ///< consistent (default) or diffusers.
  std::size_t num_samples =
      1;  ///< x holds this many equal, contiguous samples (thresholding and noise streams).
  /// Opt-in check (off by default: it costs a pass over memory): every model output and every new sample must
  /// be finite, else std::domain_error names the step, the timestep and the first bad element.
  bool check_finite = false;
};

/// What a per-step callback sees.
struct step_info {
  std::size_t step_index;     ///< i = 0..N−1.
  std::size_t num_steps;      ///< N.
  std::int64_t timestep;      ///< t_i the model was evaluated at.
  double alpha_cumprod_from;  ///< level before the step (α² of the path's level).
  double alpha_cumprod_to;    ///< level after the step.
  double model_time = 0.0;    ///< the exact time of the step's first model evaluation (fractional on σ grids).
};

/// Marker: no per-step callback.
struct no_callback {};

/// How a run ended.
struct sample_result {
  std::size_t steps_run = 0;  ///< steps completed in this call.
  bool cancelled = false;     ///< true if the callback returned false.
};

/// Buffers a run needs, created once per sample size and reused: the model output (for writing predictors),
/// x̂0 (for callbacks) and one sample's scratch (dynamic thresholding).
template <TensorElement T>
struct sampler_workspace {
  std::vector<T> model_output;  ///< where a writing predictor writes.
  std::vector<T> x0;            ///< x̂0 of the current step (filled when a callback is given).
  std::vector<T> scratch;       ///< one sample's scratch (per thread) for dynamic thresholding.
  std::vector<T> noise;         ///< a step's noise, drawn first when the source may throw (sized on first use).
  std::vector<T> state;         ///< a multi-stage solver's saved state S (sized on first use).
  std::vector<T> history;       ///< a multistep solver's ring of past x̂0 / ε̂ buffers (sized on first use).
  const void* history_owner = nullptr;  ///< the sampler whose run left `state`/`history` valid ...
  std::size_t history_next_step = 0;    ///< ... up to (not including) this step: where a resumed run may start.
  thread_pool* pool = nullptr;  ///< opt-in: run each step over this pool (same bits as one thread).

  /// A workspace for tensors of `size` elements; with a pool, steps of large tensors use its threads.
  explicit sampler_workspace(std::size_t size, thread_pool* threads = nullptr)
      : model_output(size), x0(size), scratch(size), pool(threads) {}
  /// A workspace whose model output holds `output_size` elements (a learned-variance DDPM model writes 2·size).
  sampler_workspace(std::size_t size, std::size_t output_size, thread_pool* threads = nullptr)
      : model_output(output_size), x0(size), scratch(size), pool(threads) {}
  /// A workspace for tensors shaped like `like`.
  template <ReadableTensor X>
  explicit sampler_workspace(const X& like) : sampler_workspace(elements(like).size()) {}
};

/// A workspace for tensors like `x` has x's element type.
template <ReadableTensor X>
sampler_workspace(const X&) -> sampler_workspace<tensor_value_t<X>>;

/// A configured sampler: the list of step transitions and their coefficients, plus the loop.
class sampler {
 public:
  /// Virtual: a derived sampler (dpm_solver_singlestep_sampler keeps its order list) may be owned through a
  /// `std::unique_ptr<sampler>` or `std::shared_ptr<sampler>` (serving batches, config loaders) and destroyed there.
  virtual ~sampler() = default;
  sampler(const sampler&) = default;             ///< Copies the plan (samplers are immutable values).
  sampler(sampler&&) noexcept = default;         ///< Moves the plan.
  sampler& operator=(const sampler&) = default;  ///< Copies the plan.
  sampler& operator=(sampler&&) noexcept = default;  ///< Moves the plan.

  /// The transitions (levels) of every step.
  [[nodiscard]] const std::vector<step_transition>& transitions() const noexcept { return transitions_; }
  /// The coefficients of every step, computed in double at construction.
  [[nodiscard]] const std::vector<affine_step>& coefficients() const noexcept { return coefficients_; }
  /// N, the number of steps of a full run.
  [[nodiscard]] std::size_t num_steps() const noexcept { return transitions_.size(); }
  /// The plan's rows, one per model evaluation (N for single-step samplers; coefficients()[k] is row k's core).
  [[nodiscard]] const std::vector<solver_row>& rows() const noexcept { return rows_; }
  /// The first row of step i (rows().size() for i = N); i must be <= N.
  [[nodiscard]] std::size_t row_of_step(std::size_t i) const { return step_first_row_.at(i); }
  /// History buffers the plan needs in the workspace (0 for single-step samplers).
  [[nodiscard]] std::size_t history_slots() const noexcept { return history_slots_; }
  /// True when every model time is an integer, so that a predictor taking an integer timestep can be used.
  [[nodiscard]] bool has_integral_model_times() const noexcept {
    for (const solver_row& r : rows_)
      if (r.model_time != std::nearbyint(r.model_time)) return false;
    return true;
  }
  /// The options the sampler was built with.
  [[nodiscard]] const sampler_options& options() const noexcept { return options_; }
  /// Model output elements per sample element: 1, or 2 for a learned-variance DDPM model ([m_b; v_b] per sample).
  [[nodiscard]] std::size_t output_factor() const noexcept { return posteriors_.empty() ? 1 : 2; }

  /// A workspace sized for tensors like `x` and for this sampler's model output, optionally with a thread pool.
  template <ReadableTensor X>
  [[nodiscard]] sampler_workspace<tensor_value_t<X>> make_workspace(const X& x, thread_pool* pool = nullptr) const {
    const std::size_t n = elements(x).size();
    return sampler_workspace<tensor_value_t<X>>(n, output_factor() * n, pool);
  }

  /// True when some step adds noise (then `sample` needs a noise source).
  [[nodiscard]] bool is_stochastic() const noexcept {
    for (std::size_t r = 0; r < rows_.size(); ++r)
      if (row_draws_noise(r)) return true;
    return false;
  }

  /// Runs steps first_step..N−1 in place on x (a full run from x_T when first_step = 0; img2img starts later,
  /// see first_step_for_strength). `noise` is a NoiseSource or no_noise; `callback(step_info, span x, span
  /// x̂0)` may return false to cancel. No allocation happens inside the loop (for a WritingPredictor).
  /// On an exception (from the predictor, the noise source, the callback or a check), x holds the last completed
  /// step, so resuming with first_step = result.steps_run + first_step reproduces the uninterrupted run: a noise
  /// source that may throw (see draws_cannot_throw) is drawn into the workspace before the step touches x.
  template <Tensor X, EpsilonPredictor<X> F, class Noise = no_noise, class Callback = no_callback>
  sample_result sample(F&& predictor, X& x, Noise&& noise, sampler_workspace<tensor_value_t<X>>& workspace,
                       Callback&& callback = {}, std::size_t first_step = 0) const {
    using T = tensor_value_t<X>;
    using noise_t = std::remove_cvref_t<Noise>;
    constexpr bool has_noise = !std::is_same_v<noise_t, no_noise>;
    static_assert(!has_noise || NoiseSource<noise_t, T>,
                  "skipstep::sampler::sample: noise must be no_noise or callable as noise(std::span<T>, "
                  "noise_position)");
    constexpr bool has_callback = !std::is_same_v<std::remove_cvref_t<Callback>, no_callback>;
    const std::string_view fn = sample_name_;
    const std::span<T> xs = elements(x);
    const std::size_t factor = output_factor();
    if (xs.empty())
      detail::throw_invalid(fn, "x.size()", "must be > 0", 0);
    if (xs.size() % options_.num_samples != 0)
      detail::throw_invalid(fn, "x.size()",
                            "must be a multiple of num_samples = " + std::to_string(options_.num_samples),
                            xs.size());
    if (workspace.x0.size() != xs.size())
      detail::throw_invalid(fn, "workspace.x0.size()",
                            "must equal x.size() = " + std::to_string(xs.size()) + " (see make_workspace)",
                            workspace.x0.size());
    if (workspace.model_output.size() != factor * xs.size())
      detail::throw_invalid(fn, "workspace.model_output.size()",
                            "must equal " + std::string(factor == 2 ? "2 * " : "") + "x.size() = " +
                                std::to_string(factor * xs.size()) + " (see make_workspace)",
                            workspace.model_output.size());
    {
      const std::size_t per = xs.size() / options_.num_samples;
      const std::size_t threads = workspace.pool != nullptr ? std::min(workspace.pool->size(), options_.num_samples) : 1;
      if (options_.processing.mode == x0_processing::kind::dynamic_threshold && workspace.scratch.size() < threads * per)
        detail::throw_invalid(fn, "workspace.scratch.size()",
                              "must hold " + std::to_string(threads) + " sample(s) of " + std::to_string(per) +
                                  " elements for dynamic thresholding (see make_workspace)",
                              workspace.scratch.size());
      detail::check_noise_covers(fn, noise, options_.num_samples, per);
    }
    if (first_step > num_steps())
      detail::throw_invalid(fn, "first_step", "must be <= num_steps = " + std::to_string(num_steps()),
                            first_step);
    // Every coefficient must be finite in the tensor's type: a float tensor cannot carry a coefficient that
    // overflows float (ε prediction at ā ≈ 1e-301, a noise std of 1e39), which would make the run silently NaN.
    check_coefficients_fit<T>(fn, first_step);
    const std::size_t first_row = row_of_step(first_step);
    if constexpr (!has_noise) {
      for (std::size_t r = first_row; r < rows_.size(); ++r)
        if (row_draws_noise(r))
          detail::throw_invalid(fn, "noise", "is no_noise but step " + std::to_string(rows_[r].step) + " adds noise",
                                "no_noise");
    }
    constexpr bool fractional = takes_fractional_time<F>;
    if constexpr (!fractional) {
      for (std::size_t r = first_row; r < rows_.size(); ++r)
        if (rows_[r].model_time != std::nearbyint(rows_[r].model_time))
          detail::throw_invalid(fn, "predictor",
                                "takes an integer timestep, but the model time of " + step_where(rows_[r].step) +
                                    " is fractional; give the predictor a double time parameter",
                                rows_[r].model_time);
    }
    constexpr bool in_pass_noise = draws_cannot_throw<noise_t, T>;
    if constexpr (BoundedCounterBasedGenerator<noise_t, T>) {
      if (num_steps() > noise_t::max_steps)
        detail::throw_invalid(fn, "noise", "addresses at most " + std::to_string(noise_t::max_steps) + " steps",
                              num_steps());
      if (xs.size() / options_.num_samples > noise_t::max_elements)
        detail::throw_invalid(fn, "x.size() / num_samples",
                              "must not exceed the noise generator's " + std::to_string(noise_t::max_elements) +
                                  " elements per stream",
                              xs.size() / options_.num_samples);
    }
    // Buffers sized once per workspace (never inside the loop).
    if constexpr (has_noise && !in_pass_noise) {
      if (workspace.noise.size() != xs.size()) workspace.noise.assign(xs.size(), T(0));
    }
    if (uses_state_ && workspace.state.size() != xs.size()) workspace.state.assign(xs.size(), T(0));
    if (history_slots_ > 0 && workspace.history.size() != history_slots_ * xs.size())
      workspace.history.assign(history_slots_ * xs.size(), T(0));
    std::array<T*, 8> history{};
    for (std::size_t k = 0; k < history_slots_; ++k) history[k] = workspace.history.data() + k * xs.size();
    // A multistep or multi-stage run resumed at first_step > 0 needs the history its interrupted run left.
    if (first_step > 0 && (history_slots_ > 0 || uses_state_) &&
        (workspace.history_owner != this || workspace.history_next_step != first_step))
      detail::throw_invalid(fn, "first_step",
                            "needs the solver history of the steps before it: resume with the workspace of the "
                            "interrupted run (or build the solver for the shortened schedule)",
                            first_step);
    workspace.history_owner = this;
    workspace.history_next_step = first_step;
    const std::span<T> x0_out = has_callback ? std::span<T>(workspace.x0) : std::span<T>();
    sample_result result;
    for (std::size_t r = first_row; r < rows_.size(); ++r) {
      const solver_row& row = rows_[r];
      const std::size_t i = row.step;
      const step_transition& tr = transitions_[i];
      auto evaluate_row = [&](std::span<const T> m) {
        if (m.size() != factor * xs.size())
          detail::throw_invalid(fn, "model output size at " + step_where(i),
                                "must equal " + std::string(factor == 2 ? "2 * " : "") +
                                    "x.size() = " + std::to_string(factor * xs.size()),
                                m.size());
        if (options_.check_finite) detail::check_all_finite(fn, m, "model output", i, tr.timestep);
        auto step_with = [&](auto&& source) {
          run_row(r, xs, m, source, history.data(), workspace, x0_out);
        };
        if constexpr (has_noise) {
          if (row_draws_noise(r)) {
            if constexpr (in_pass_noise) {
              step_with(noise);
            } else {
              const std::span<T> z(workspace.noise);
              detail::predraw_noise<T>(noise, z, options_.num_samples, i, detail::noise_block);
              step_with(detail::buffered_noise<T>{z.data(), xs.size() / options_.num_samples});
            }
            return;
          }
        }
        step_with(no_noise{});
      };
      const auto time = [&] {
        if constexpr (fractional)
          return row.model_time;
        else
          return static_cast<std::int64_t>(std::nearbyint(row.model_time));
      }();
      if constexpr (WritingPredictor<F, X>) {
        predictor(std::as_const(x), time, std::span<T>(workspace.model_output));
        evaluate_row(std::span<const T>(workspace.model_output));
      } else {
        const auto out = predictor(std::as_const(x), time);
        evaluate_row(elements(out));
      }
      if (!row.ends_step) continue;
      ++result.steps_run;
      workspace.history_next_step = i + 1;
      if (options_.check_finite) detail::check_all_finite(fn, std::span<const T>(xs), "sample", i, tr.timestep);
      if constexpr (has_callback) {
        const step_info info{i, num_steps(), tr.timestep, tr.alpha_cumprod_from, tr.alpha_cumprod_to,
                             rows_[row_of_step(i)].model_time};
        using cb_result =
            std::invoke_result_t<Callback&, const step_info&, std::span<const T>, std::span<const T>>;
        if constexpr (std::is_same_v<cb_result, void>) {
          callback(info, std::span<const T>(xs), std::span<const T>(x0_out));
        } else if (!callback(info, std::span<const T>(xs), std::span<const T>(x0_out))) {
          result.cancelled = true;
          break;
        }
      }
    }
    return result;
  }

  /// Convenience overload that makes a workspace for this call (one allocation per run, none per step).
  template <Tensor X, EpsilonPredictor<X> F, class Noise = no_noise, class Callback = no_callback>
  sample_result sample(F&& predictor, X& x, Noise&& noise = {}, Callback&& callback = {},
                       std::size_t first_step = 0) const {
    auto workspace = make_workspace(std::as_const(x));
    return sample(std::forward<F>(predictor), x, std::forward<Noise>(noise), workspace,
                  std::forward<Callback>(callback), first_step);
  }

  /// True when some row reads or writes the saved state S of a multi-stage step (the workspace's `state`).
  [[nodiscard]] bool uses_state() const noexcept { return uses_state_; }

  /// Sizes `workspace.state` and `workspace.history` for samples of `size` elements as this plan needs them
  /// (S: size elements when uses_state(); the ring: history_slots() · size), as `sample` does on first use. It
  /// allocates only when a buffer's capacity is short, so a workspace reused across samplers stops allocating
  /// once it has held the largest plan. The other buffers are left as they are.
  template <TensorElement T>
  void prepare_workspace(sampler_workspace<T>& workspace, std::size_t size) const {
    if (uses_state_ && workspace.state.size() != size) workspace.state.assign(size, T(0));
    if (history_slots_ > 0 && workspace.history.size() != history_slots_ * size)
      workspace.history.assign(history_slots_ * size, T(0));
  }

  /// Throws std::domain_error, naming `function` and the step, if a coefficient of a row of steps first_step..N−1
  /// is not finite in T (a float tensor cannot carry a coefficient that overflows float: ε prediction at
  /// ā ≈ 1e-301, a noise std of 1e39, which would make the run silently NaN). `sample` checks this itself.
  template <class T>
  void check_coefficients_fit(std::string_view function, std::size_t first_step) const {
    if constexpr (sizeof(T) < sizeof(double)) {
      for (std::size_t r = row_of_step(first_step); r < rows_.size(); ++r) {
        const affine_step& c = coefficients_[r];
        const row_extras& e = rows_[r].extras;
        const double values[] = {c.sample_coeff(), c.model_coeff(), c.noise_std, c.x0_weight, c.eps_weight,
                                 c.sample_weight, c.pred.x0_from_sample, c.pred.x0_from_model,
                                 e.state_weight, e.store_sample, e.store_model, e.store_x0};
        for (double v : values)
          if (!std::isfinite(static_cast<T>(v)))
            detail::throw_domain(function, "a coefficient of " + step_where(rows_[r].step),
                                 "overflows the tensor's element type (use double tensors for this schedule)", v);
      }
    }
  }

  /// Row r of the plan on x, given the model output m the network returned at rows()[r].model_time for this x:
  ///   x ← core_r(x, m, P(x̂0), ε̂, z) + w_S·S + Σ_j w_j·H[slot_j]   (step/solver_row.hpp),
  /// storing D into the ring and S as the row says, on `workspace.state` / `workspace.history` (see
  /// prepare_workspace), with z from `noise` at (sample b, step rows()[r].step, element) when the row adds noise.
  /// This is exactly the update `sample` applies after its model call (the same function, hence the same bits):
  /// the entry point for a caller that runs its own loop, e.g. serving::batch, which steps many requests with one
  /// network call. Rows must be applied in order 0, 1, ... (or from row_of_step(first_step)) on one workspace.
  /// x holds options().num_samples samples; `noise` is drawn inside the pass, so it must not throw (philox_normal
  /// after its limits were checked, a noexcept callable, given_noise checked up front) for x to stay consistent.
  /// A learned-variance DDPM (output_factor() = 2) takes m = [m_b; v_b] per sample. Throws std::invalid_argument
  /// (std::out_of_range for r ≥ rows().size()), naming "<sampler>::apply_row", for a bad row index or buffer
  /// size, before anything is written. No allocation.
  template <TensorElement T, class Noise = no_noise>
  void apply_row(std::size_t r, std::span<T> x, std::span<const T> m, Noise&& noise,
                 sampler_workspace<T>& workspace, std::span<T> x0_out = {}) const {
    const auto fn = [this] { return std::string(name_) + "::apply_row"; };  // built only when it throws
    using noise_t = std::remove_cvref_t<Noise>;
    static_assert(std::is_same_v<noise_t, no_noise> || NoiseSource<noise_t, T>,
                  "skipstep::sampler::apply_row: noise must be no_noise or a NoiseSource");
    if (r >= rows_.size())
      detail::throw_out_of_range(fn(), "r", "must be < rows().size() = " + std::to_string(rows_.size()), r);
    if (x.empty() || x.size() % options_.num_samples != 0)
      detail::throw_invalid(fn(), "x.size()",
                            "must be a positive multiple of num_samples = " + std::to_string(options_.num_samples),
                            x.size());
    if (m.size() != output_factor() * x.size())
      detail::throw_invalid(fn(), "m.size()",
                            "must equal " + std::to_string(output_factor()) + " * x.size() = " +
                                std::to_string(output_factor() * x.size()),
                            m.size());
    if (!x0_out.empty() && x0_out.size() != x.size())
      detail::throw_invalid(fn(), "x0_out.size()", "must be 0 or x.size() = " + std::to_string(x.size()),
                            x0_out.size());
    if (uses_state_ && workspace.state.size() != x.size())
      detail::throw_invalid(fn(), "workspace.state.size()",
                            "must equal x.size() = " + std::to_string(x.size()) + " (see prepare_workspace)",
                            workspace.state.size());
    if (workspace.history.size() < history_slots_ * x.size())
      detail::throw_invalid(fn(), "workspace.history.size()",
                            "must hold history_slots() * x.size() = " + std::to_string(history_slots_ * x.size()) +
                                " (see prepare_workspace)",
                            workspace.history.size());
    const std::size_t per = x.size() / options_.num_samples;
    if (options_.processing.mode == x0_processing::kind::dynamic_threshold && workspace.scratch.size() < per)
      detail::throw_invalid(fn(), "workspace.scratch.size()",
                            "must hold one sample (" + std::to_string(per) + " elements) for dynamic thresholding",
                            workspace.scratch.size());
    std::array<T*, max_history_slots> history{};
    for (std::size_t k = 0; k < history_slots_; ++k) history[k] = workspace.history.data() + k * x.size();
    if constexpr (!std::is_same_v<noise_t, no_noise>) {
      if (row_draws_noise(r)) {
        if constexpr (detail::is_given_noise<noise_t>) detail::check_noise_covers(fn(), noise, options_.num_samples, per);
        run_row(r, x, m, noise, history.data(), workspace, x0_out);
        return;
      }
    } else {
      if (row_draws_noise(r))
        detail::throw_invalid(fn(), "noise", "is no_noise but step " + std::to_string(rows_[r].step) + " adds noise",
                              "no_noise");
    }
    no_noise none;
    run_row(r, x, m, none, history.data(), workspace, x0_out);
  }

 protected:
  /// The per-step data a sampler runs on.
  struct plan {
    const char* name;                          ///< the sampler's name in errors ("ddim_sampler").
    std::vector<step_transition> transitions;  ///< one per step.
    std::vector<affine_step> coefficients;     ///< one per row: each row's affine core.
    /// Learned-variance DDPM only: the posterior of every step, and the variance type.
    std::vector<ddpm_posterior> posteriors = {};
    variance_type learned_variance = variance_type::fixed_small;  ///< learned or learned_range, with posteriors.
    std::vector<solver_row> rows = {};  ///< empty: one plain row per step at its timestep.
    std::size_t history_slots = 0;      ///< history buffers the rows use.
  };

  /// Samplers are built by the derived classes, which compute the plan.
  sampler(plan p, sampler_options options)
      : name_(p.name),
        sample_name_(std::string(p.name) + "::sample"),
        transitions_(std::move(p.transitions)),
        coefficients_(std::move(p.coefficients)),
        rows_(std::move(p.rows)),
        posteriors_(std::move(p.posteriors)),
        learned_variance_(p.learned_variance),
        history_slots_(p.history_slots),
        options_(options) {
    if (options_.num_samples == 0)
      detail::throw_invalid(name_, "options.num_samples", "must be >= 1", 0);
    options_.processing.validate(name_);
    if (rows_.empty()) {  // one plain row per step, at the step's integer timestep
      rows_.resize(transitions_.size());
      for (std::size_t i = 0; i < rows_.size(); ++i)
        rows_[i] = solver_row{i, static_cast<double>(transitions_[i].timestep), true, {}};
    }
    if (coefficients_.size() != rows_.size())
      detail::throw_invalid(name_, "plan", "must have one affine core per row (" + std::to_string(rows_.size()) + ")",
                            coefficients_.size());
    if (history_slots_ > max_history_slots)
      detail::throw_invalid(name_, "plan history slots", "must be <= " + std::to_string(max_history_slots),
                            history_slots_);
    step_first_row_.assign(transitions_.size() + 1, rows_.size());
    for (std::size_t r = rows_.size(); r-- > 0;) {
      const solver_row& row = rows_[r];
      if (row.step >= transitions_.size() || (r > 0 && row.step < rows_[r - 1].step))
        detail::throw_invalid(name_, "plan row " + std::to_string(r) + " step", "must be a valid, non-decreasing step",
                              row.step);
      step_first_row_[row.step] = r;
      uses_state_ = uses_state_ || row.extras.uses_state();
      if (row.extras.save_state && row.extras.combine_state)
        detail::throw_invalid(name_, "plan row " + std::to_string(r) + " state",
                              "must be saved (S <- x) or combined, not both", "save_state and combine_state");
      for (std::size_t j = 0; j < row.extras.history_reads; ++j)
        if (row.extras.history[j].slot >= history_slots_)
          detail::throw_invalid(name_, "plan row " + std::to_string(r) + " history slot",
                                "must be < " + std::to_string(history_slots_), row.extras.history[j].slot);
      if (row.extras.store_slot >= static_cast<int>(history_slots_))
        detail::throw_invalid(name_, "plan row " + std::to_string(r) + " store slot",
                              "must be < " + std::to_string(history_slots_), row.extras.store_slot);
    }
  }

  /// The most history buffers a plan may use.
  static constexpr std::size_t max_history_slots = 8;


  /// "step 3 (t = 700)", the position of step i in error messages.
  [[nodiscard]] std::string step_where(std::size_t i) const {
    return "step " + std::to_string(i) + " (t = " + std::to_string(transitions_[i].timestep) + ")";
  }

  /// True when row r adds noise.
  [[nodiscard]] bool row_draws_noise(std::size_t r) const noexcept {
    return transitions_[rows_[r].step].noise_allowed && coefficients_[r].noise_std != 0.0;
  }

 private:
  /// Row r's update (see apply_row): the solver-row kernels, or for a plain row the single-step kernels (threaded
  /// over workspace.pool when it has one), or the learned-variance step. `history` points at the ring's buffers.
  template <class T, class Source>
  void run_row(std::size_t r, std::span<T> xs, std::span<const T> m, Source& source, T* const* history,
               sampler_workspace<T>& workspace, std::span<T> x0_out) const {
    const solver_row& row = rows_[r];
    const std::size_t i = row.step;
    if (!row.extras.is_plain())
      detail::apply_row_range(coefficients_[r], row.extras, xs.data(), m.data(),
                              row.extras.uses_state() ? workspace.state.data() : nullptr, history,
                              xs.size() / options_.num_samples, options_.processing, source, i,
                              x0_out.empty() ? nullptr : x0_out.data(), workspace.scratch.data(), 0,
                              options_.num_samples);
    else if (!posteriors_.empty())
      learned_variance_step(i, xs, m, source, x0_out, std::span<T>(workspace.scratch));
    else if (workspace.pool != nullptr)
      parallel_apply_step(*workspace.pool, coefficients_[r], xs, m, options_.processing, options_.num_samples,
                          source, i, x0_out, std::span<T>(workspace.scratch));
    else
      apply_step(coefficients_[r], xs, m, options_.processing, options_.num_samples, source, i, x0_out,
                 std::span<T>(workspace.scratch));
  }

  /// Learned-variance DDPM step (model output per sample: [m_b; v_b]): each sample b is stepped on its own, with
  /// noise stream b scaled elementwise by posterior.learned_noise_std(type, v).
  template <class T, class Noise>
  void learned_variance_step(std::size_t i, std::span<T> xs, std::span<const T> out, Noise& noise,
                             std::span<T> x0_out, std::span<T> scratch) const {
    const std::size_t per = xs.size() / options_.num_samples;
    const ddpm_posterior& post = posteriors_[i];
    for (std::size_t b = 0; b < options_.num_samples; ++b) {
      const std::span<const T> m = out.subspan(2 * b * per, per);
      const std::span<const T> v = out.subspan(2 * b * per + per, per);
      const std::span<T> x = xs.subspan(b * per, per);
      const std::span<T> x0 = x0_out.empty() ? x0_out : x0_out.subspan(b * per, per);
      if constexpr (!std::is_same_v<std::remove_cvref_t<Noise>, no_noise>) {
        auto scaled = [&](std::span<T> z, noise_position at) {
          at.sample = b;
          detail::draw_noise<T>(noise, z, at);
          for (std::size_t k = 0; k < z.size(); ++k)
            z[k] = static_cast<T>(static_cast<double>(z[k]) *
                                  post.learned_noise_std(learned_variance_,
                                                         static_cast<double>(v[at.first_element + k])));
        };
        apply_step(coefficients_[i], x, m, options_.processing, 1, scaled, i, x0, scratch);
      } else {
        apply_step(coefficients_[i], x, m, options_.processing, 1, no_noise{}, i, x0, scratch);
      }
    }
  }

  const char* name_;
  std::string sample_name_;  ///< "ddim_sampler::sample", the function named by run-time errors.
  std::vector<step_transition> transitions_;
  std::vector<affine_step> coefficients_;
  std::vector<solver_row> rows_;
  std::vector<ddpm_posterior> posteriors_;  ///< non-empty only for a learned-variance DDPM sampler.
  variance_type learned_variance_;
  std::size_t history_slots_ = 0;
  bool uses_state_ = false;
  std::vector<std::size_t> step_first_row_;
  sampler_options options_;
};

/// DDIM sampler (Song et al. 2021) with a sigma policy: eta{0} deterministic DDIM, eta{1} DDPM posterior,
/// larger_variance (σ̂), sigma_list or any callable of step_context.
class ddim_sampler : public sampler {
 public:
  template <class Real, SigmaPolicy Policy = eta>
  /// Computes every step's coefficients: levels from `timesteps` and the convention, σ from `policy`. Throws
  /// std::invalid_argument / std::domain_error naming the step for an invalid configuration.
  ddim_sampler(const noise_schedule<Real>& schedule, const timestep_schedule& timesteps,
               Policy policy = eta{0.0}, sampler_options options = {})
      : sampler(build(schedule, timesteps, policy, options), options) {}

 private:
  template <class Real, class Policy>
  static plan build(const noise_schedule<Real>& schedule, const timestep_schedule& timesteps,
                    const Policy& policy, const sampler_options& options) {
    auto transitions = detail::with_context("skipstep::ddim_sampler",
                                            [&] { return ddim_transitions(schedule, timesteps, options.convention); });
    std::vector<affine_step> coefficients(transitions.size());
    for (std::size_t i = 0; i < transitions.size(); ++i) {
      const step_transition& tr = transitions[i];
      const step_context ctx{tr.alpha_cumprod_from, tr.alpha_cumprod_to, i,
                             transitions.size(),    tr.timestep,         tr.target_timestep};
      coefficients[i] = detail::with_context(detail::step_label("ddim_sampler", i, tr), [&] {
        sigma_choice sigma = detail::evaluate_sigma(policy, ctx);
        if (!tr.noise_allowed)
          sigma.noise_std = 0.0;
        return ddim_step(options.prediction, tr.alpha_cumprod_from, tr.alpha_cumprod_to, sigma);
      });
    }
    return {"ddim_sampler", std::move(transitions), std::move(coefficients)};
  }
};

/// Ancestral DDPM sampler (Ho et al. 2020, Algorithm 2) over any timestep list (respaced DDPM), with any variance
/// type. With `learned` / `learned_range` (Nichol & Dhariwal 2021) the model outputs, per sample, its prediction
/// followed by the same number of variance values ([m_b; v_b], diffusers' channel split of a 2C-channel output):
/// output_factor() is 2 and make_workspace sizes the model output accordingly. Such steps run sample by sample on
/// one thread.
class ddpm_sampler : public sampler {
 public:
  template <class Real>
  /// Computes every step's posterior coefficients and noise std (per element, from the model, for learned types).
  ddpm_sampler(const noise_schedule<Real>& schedule, const timestep_schedule& timesteps,
               variance_type variance = variance_type::fixed_small, sampler_options options = {})
      : sampler(build(schedule, timesteps, variance, options), options) {}

 private:
  template <class Real>
  static plan build(const noise_schedule<Real>& schedule, const timestep_schedule& timesteps,
                    variance_type variance, const sampler_options& options) {
    const bool learned = variance == variance_type::learned || variance == variance_type::learned_range;
    auto transitions = detail::with_context("skipstep::ddpm_sampler",
                                            [&] { return ddpm_transitions(schedule, timesteps, options.convention); });
    std::vector<affine_step> coefficients(transitions.size());
    for (std::size_t i = 0; i < transitions.size(); ++i) {
      const step_transition& tr = transitions[i];
      coefficients[i] = detail::with_context(detail::step_label("ddpm_sampler", i, tr), [&] {
        return ddpm_step(options.prediction, tr.alpha_cumprod_from, tr.alpha_cumprod_to, variance,
                         tr.noise_allowed);
      });
    }
    if (!learned) return {"ddpm_sampler", std::move(transitions), std::move(coefficients)};
    std::vector<ddpm_posterior> posteriors(transitions.size());
    for (std::size_t i = 0; i < transitions.size(); ++i)
      posteriors[i] = ddpm_posterior_at(transitions[i].alpha_cumprod_from, transitions[i].alpha_cumprod_to);
    return {"ddpm_sampler", std::move(transitions), std::move(coefficients), std::move(posteriors), variance};
  }
};

/// DDIM inversion (Song et al. 2021 §4.3; Mokady et al. 2023): runs the deterministic DDIM step upwards, from
/// a clean sample to noise, over the same timestep list a ddim_sampler walks down.
class ddim_inverse_sampler : public sampler {
 public:
  template <class Real>
  /// Computes every inversion step's coefficients (processing: none or clip).
  ddim_inverse_sampler(const noise_schedule<Real>& schedule, const timestep_schedule& timesteps,
                       sampler_options options = {})
      : sampler(build(schedule, timesteps, options), options) {}

 private:
  template <class Real>
  static plan build(const noise_schedule<Real>& schedule, const timestep_schedule& timesteps,
                    const sampler_options& options) {
    if (options.processing.mode == x0_processing::kind::dynamic_threshold)
      detail::throw_invalid("ddim_inverse_sampler", "options.processing", "supports none or clip",
                            "dynamic_threshold");
    auto transitions = detail::with_context("skipstep::ddim_inverse_sampler", [&] {
      return inversion_transitions(schedule, timesteps, options.convention);
    });
    std::vector<affine_step> coefficients(transitions.size());
    for (std::size_t i = 0; i < transitions.size(); ++i)
      coefficients[i] =
          detail::with_context(detail::step_label("ddim_inverse_sampler", i, transitions[i]), [&] {
            return ddim_step(options.prediction, transitions[i].alpha_cumprod_from,
                             transitions[i].alpha_cumprod_to, sigma_choice{});
          });
    return {"ddim_inverse_sampler", std::move(transitions), std::move(coefficients)};
  }
};

/// The forward process q(x_t | x_0) (Ho et al. 2020, eq. 4; diffusers `add_noise`): out = √ā_t·x0 +
/// √(1−ā_t)·noise.
template <class Real, class T>
void add_noise(const noise_schedule<Real>& schedule, std::span<const T> x0, std::span<const T> noise,
               std::int64_t t, std::span<T> out) {
  if (t < 0 || static_cast<std::size_t>(t) >= schedule.num_train_timesteps())
    detail::throw_invalid("add_noise", "t",
                          "must be in [0, T = " + std::to_string(schedule.num_train_timesteps()) + ")", t);
  if (noise.size() != x0.size())
    detail::throw_invalid("add_noise", "noise.size()", "must equal x0.size() = " + std::to_string(x0.size()),
                          noise.size());
  if (out.size() != x0.size())
    detail::throw_invalid("add_noise", "out.size()", "must equal x0.size() = " + std::to_string(x0.size()),
                          out.size());
  const auto a = static_cast<T>(schedule.sqrt_alpha_cumprod(static_cast<std::size_t>(t)));
  const auto b = static_cast<T>(schedule.sqrt_one_minus_alpha_cumprod(static_cast<std::size_t>(t)));
  for (std::size_t i = 0; i < x0.size(); ++i)
    out[i] = a * x0[i] + b * noise[i];
}

/// img2img (diffusers StableDiffusionImg2ImgPipeline.get_timesteps): with strength s in [0, 1] a run of N
/// steps starts at step N − min(⌊N·s⌋, N); the input is noised to that step's timestep with add_noise first.
[[nodiscard]] inline std::size_t first_step_for_strength(std::size_t num_steps, double strength) {
  if (!(strength >= 0.0 && strength <= 1.0))
    detail::throw_invalid("first_step_for_strength", "strength", "must be in [0, 1]", strength);
  // ⌊N·s⌋ in double, clamped before the conversion (N·1.0 may round above N, and 2^64 does not fit a size_t).
  const double product = static_cast<double>(num_steps) * strength;
  const std::size_t init = product >= static_cast<double>(num_steps) ? num_steps : static_cast<std::size_t>(product);
  return num_steps - init;
}

}  // namespace skipstep
