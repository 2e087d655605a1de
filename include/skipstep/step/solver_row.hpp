/// @file
/// One row of a solver's table (DESIGN.md §8): a model evaluation and the update that follows it. Every solver is a
/// list of rows with coefficients computed once in double; the update is one pass over memory,
///   x ← core(x, m, P(x̂0), ε̂, z) + w_S·S + Σ_j w_j·H[slot_j],
/// where core is the affine_step of the single-step samplers, S a saved state (the sample a multi-stage step
/// started from) and H a ring of history buffers (past x̂0 or ε̂ of multistep solvers). Before x is overwritten the
/// row may store D = d_x·x + d_m·m + d_0·P(x̂0) into a history slot and the old x into S, or (a predictor-corrector
/// such as UniPC, whose next step starts from a corrected sample) replace S by a combination of the same inputs,
///   S ← u_x·x + u_m·m + u_0·P(x̂0) + u_S·S + Σ_j u_j·H[slot_j],
/// every input read before anything is written (element by element, so a store slot may be one the row reads).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <type_traits>

#include "skipstep/detail/kernels.hpp"
#include "skipstep/step/affine_step.hpp"
#include "skipstep/step/noise_source.hpp"
#include "skipstep/step/x0_transform.hpp"

namespace skipstep {

/// History buffers a row can read (DPM-Solver++ 3M reads 2, iPNDM 3).
inline constexpr std::size_t max_history_reads = 4;

/// A term w·H[slot] of a row's update.
struct history_term {
  std::uint8_t slot = 0;      ///< the history buffer.
  double weight = 0.0;        ///< its coefficient in the update of x.
  double state_weight = 0.0;  ///< u_j, its coefficient in the new S (rows with combine_state only).
};

/// The part of a row beyond its affine core (see the file comment). Default: nothing beyond the core.
struct row_extras {
  double state_weight = 0.0;                                 ///< w_S, the weight of the saved state S.
  std::uint8_t history_reads = 0;                            ///< how many history terms follow.
  std::array<history_term, max_history_reads> history = {};  ///< Σ_j w_j·H[slot_j].
  int store_slot = -1;                                       ///< H[store_slot] ← D before the update (−1: none).
  double store_sample = 0.0;                                 ///< d_x.
  double store_model = 0.0;                                  ///< d_m.
  double store_x0 = 0.0;                                     ///< d_0 (the processed x̂0).
  bool save_state = false;                                   ///< S ← x (the value before the update).
  /// S ← u_x·x + u_m·m + u_0·P(x̂0) + u_S·S + Σ_j u_j·H[slot_j] instead (not with save_state): the weights below and
  /// the history terms' state_weight.
  bool combine_state = false;
  double state_from_sample = 0.0;  ///< u_x.
  double state_from_model = 0.0;   ///< u_m.
  double state_from_x0 = 0.0;      ///< u_0 (the processed x̂0).
  double state_from_state = 0.0;   ///< u_S (the old S).

  /// True when the row is its affine core alone (the single-step kernels run it).
  [[nodiscard]] bool is_plain() const noexcept {
    return state_weight == 0.0 && history_reads == 0 && store_slot < 0 && !save_state && !combine_state;
  }
  /// True when the row reads or writes S.
  [[nodiscard]] bool uses_state() const noexcept { return state_weight != 0.0 || save_state || combine_state; }
};

/// One model evaluation of a solver's plan: which step it belongs to, the model time the network sees (fractional
/// on σ grids), and what the update does beyond its affine core (the core is the sampler's coefficients()[row]).
struct solver_row {
  std::size_t step = 0;     ///< the step (noise stream address, callback) this evaluation belongs to.
  double model_time = 0.0;  ///< the time passed to the network.
  bool ends_step = true;    ///< the step is complete after this row (the callback runs).
  row_extras extras = {};   ///< state and history terms (none for single-step samplers).
};

namespace detail {

/// Calls f(std::integral_constant<std::size_t, R>{}) for the run-time count r ≤ max_history_reads.
template <class F>
void with_read_count(std::size_t r, F&& f) {
  static_assert(max_history_reads == 4, "with_read_count: extend the switch");
  switch (r) {
    case 0: f(std::integral_constant<std::size_t, 0>{}); break;
    case 1: f(std::integral_constant<std::size_t, 1>{}); break;
    case 2: f(std::integral_constant<std::size_t, 2>{}); break;
    case 3: f(std::integral_constant<std::size_t, 3>{}); break;
    default: f(std::integral_constant<std::size_t, 4>{}); break;
  }
}

/// Calls f(std::true_type{}) or f(std::false_type{}).
template <class F>
void with_flag(bool b, F&& f) {
  if (b)
    f(std::true_type{});
  else
    f(std::false_type{});
}

/// Calls f(std::integral_constant<row_store, s>{}).
template <class F>
void with_store(row_store s, F&& f) {
  switch (s) {
    case row_store::none: f(std::integral_constant<row_store, row_store::none>{}); break;
    case row_store::separate: f(std::integral_constant<row_store, row_store::separate>{}); break;
    case row_store::in_place: f(std::integral_constant<row_store, row_store::in_place>{}); break;
  }
}

/// Calls f(std::integral_constant<row_state, s>{}).
template <class F>
void with_state(row_state s, F&& f) {
  switch (s) {
    case row_state::keep: f(std::integral_constant<row_state, row_state::keep>{}); break;
    case row_state::save: f(std::integral_constant<row_state, row_state::save>{}); break;
    case row_state::combine: f(std::integral_constant<row_state, row_state::combine>{}); break;
  }
}

/// A fused_row_kernel instantiation.
template <class T>
using fused_row_fn = void (*)(T*, const T*, T*, const T*, const T*, const T*, const T*, T*, const T*, std::size_t,
                              fused_row_weights<T>) noexcept;

/// The fused_row_kernel for `reads` read-only history streams, the store, the state read and the state update,
/// with or without noise (independent of the noise source's type, so that every source shares the same
/// instantiations). Combined states are instantiated only for the shape a predictor-corrector row has (it reads S
/// and stores D); nullptr for the others, which take the general loop.
template <class T, bool Noisy>
fused_row_fn<T> select_fused_row_kernel(std::size_t reads, row_store store, bool read_state, row_state state) {
  fused_row_fn<T> kernel = nullptr;
  with_read_count(reads, [&](auto r) {
    with_store(store, [&](auto st) {
      with_flag(read_state, [&](auto rs) {
        with_state(state, [&](auto ss) {
          constexpr std::size_t R = decltype(r)::value;
          constexpr row_store S = decltype(st)::value;
          constexpr bool RS = decltype(rs)::value;
          constexpr row_state U = decltype(ss)::value;
          if constexpr (R + (S == row_store::in_place ? 1 : 0) <= max_history_reads &&
                        (U != row_state::combine || (RS && S != row_store::none)))
            kernel = &fused_row_kernel<R, S, RS, U, Noisy, T>;
        });
      });
    });
  });
  return kernel;
}

/// The row without x̂0 processing as one fused pass (fused_row_kernel): x̂0 and ε̂ are linear in (x, m), so
///   x ← a·x + b·m + w_S·S + Σ_j w_j·H[slot_j] + σ_z·z,   D = d_a·x + d_b·m,
/// with a = w0·px + we·ε_x + wx, b = w0·pm + we·ε_m, d_a = d_x + d_0·px, d_b = d_m + d_0·pm folded once in double
/// (ε_x, ε_m: ε̂'s coefficients, re-derived from x̂0 with use_clipped_model_output), specialised at compile time on
/// the number of read-only history streams, on whether D overwrites a slot the row reads, goes to another slot or
/// nowhere, on whether S is read, and on whether S is kept, saved or combined (the combination folded the same way:
/// u_x + u_0·px, u_m + u_0·pm). x̂0 for a callback is written by a pass before (it does not change the new
/// sample). Returns false, doing nothing, when the row needs the general loop (x̂0 processing, a history slot read
/// twice where one of the reads is the slot written, or a combined state in a row that does not read S or store D).
template <class T, class Noise>
bool apply_fused_row_range(const affine_step& c, const row_extras& e, T* xs, const T* ms, T* state,
                           T* const* history, std::size_t per_sample, const x0_processing& processing, Noise& noise,
                           std::size_t step_index, T* x0_out, std::size_t sample_begin, std::size_t sample_end) {
  if (processing.mode != x0_processing::kind::none) return false;  // general loop
  using noise_t = std::remove_cvref_t<Noise>;
  constexpr bool has_noise_source = !std::is_same_v<noise_t, no_noise>;
  const bool draw = has_noise_source && c.noise_std != 0.0;
  T* const out = e.store_slot >= 0 ? history[e.store_slot] : nullptr;
  std::array<const T*, max_history_reads> h{};
  fused_row_weights<T> w{};
  std::size_t reads = 0;
  bool in_place = false;
  for (std::size_t j = 0; j < e.history_reads; ++j) {
    T* const buffer = history[e.history[j].slot];
    if (buffer == out) {
      if (in_place) return false;
      in_place = true;
      w.in_place = static_cast<T>(e.history[j].weight);
      w.state_in_place = static_cast<T>(e.history[j].state_weight);
    } else {
      h[reads] = buffer;
      w.state_history[reads] = static_cast<T>(e.history[j].state_weight);
      w.history[reads++] = static_cast<T>(e.history[j].weight);
    }
  }
  const double px = c.pred.x0_from_sample, pm = c.pred.x0_from_model;
  const bool reeps = processing.use_clipped_model_output;
  const double ex = reeps ? c.reeps_from_sample + c.reeps_from_x0 * px : c.pred.eps_from_sample;
  const double em = reeps ? c.reeps_from_x0 * pm : c.pred.eps_from_model;
  w.sample = static_cast<T>(c.x0_weight * px + c.eps_weight * ex + c.sample_weight);
  w.model = static_cast<T>(c.x0_weight * pm + c.eps_weight * em);
  w.state = static_cast<T>(e.state_weight);
  w.store_sample = static_cast<T>(e.store_sample + e.store_x0 * px);
  w.store_model = static_cast<T>(e.store_model + e.store_x0 * pm);
  w.noise = static_cast<T>(c.noise_std);
  w.state_sample = static_cast<T>(e.state_from_sample + e.state_from_x0 * px);
  w.state_model = static_cast<T>(e.state_from_model + e.state_from_x0 * pm);
  w.state_state = static_cast<T>(e.state_from_state);
  const bool combine = state != nullptr && e.combine_state;
  // A combined state reads S whatever w_S is (the kernel's ReadState term then adds 0·S).
  const bool read_state = state != nullptr && (e.state_weight != 0.0 || combine);
  const row_state state_update =
      state == nullptr ? row_state::keep
                       : (combine ? row_state::combine : (e.save_state ? row_state::save : row_state::keep));
  const row_store store = out == nullptr ? row_store::none : (in_place ? row_store::in_place : row_store::separate);
  const fused_row_fn<T> quiet = select_fused_row_kernel<T, false>(reads, store, read_state, state_update);
  if (quiet == nullptr) return false;  // a combined state without a store: general loop

  const std::size_t first = sample_begin * per_sample, count = (sample_end - sample_begin) * per_sample;
  if (x0_out != nullptr)
    x0_kernel(xs + first, ms + first, x0_out + first, count, static_cast<T>(px), static_cast<T>(pm));
  const auto at = [](auto* p, std::size_t k) { return p == nullptr ? p : p + k; };
  const auto pass = [&](fused_row_fn<T> kernel, std::size_t k, std::size_t len, const T* z) {
    kernel(xs + k, ms + k, at(state, k), at(h[0], k), at(h[1], k), at(h[2], k), at(h[3], k), at(out, k), z, len, w);
  };
  if (!draw) {
    pass(quiet, first, count, nullptr);
  } else if constexpr (has_noise_source) {
    const fused_row_fn<T> kernel = select_fused_row_kernel<T, true>(reads, store, read_state, state_update);
    std::array<T, noise_block> z{};
    for (std::size_t s = sample_begin; s < sample_end; ++s)
      for (std::size_t j = 0; j < per_sample; j += noise_block) {
        const std::size_t len = std::min(noise_block, per_sample - j);
        draw_noise<T>(noise, std::span<T>(z.data(), len), noise_position{s, step_index, j});
        pass(kernel, s * per_sample + j, len, z.data());
      }
  }
  return true;
}

/// A row with extras over one range of samples (whole samples; processing per sample as in apply_step_range): the
/// fused pass without x̂0 processing (apply_fused_row_range), else the general per-element loop.
/// `history` points at the ring's buffers (each as large as x); `state` at S. No allocation.
template <class T, class Noise>
void apply_row_range(const affine_step& c, const row_extras& e, T* xs, const T* ms, T* state, T* const* history,
                     std::size_t per_sample, const x0_processing& processing, Noise& noise, std::size_t step_index,
                     T* x0_out, T* scratch, std::size_t sample_begin, std::size_t sample_end) {
  if (apply_fused_row_range(c, e, xs, ms, state, history, per_sample, processing, noise, step_index, x0_out,
                            sample_begin, sample_end))
    return;
  // General form (x̂0 processing): x̂0 first, then its processing, then the combination, element by element.
  using noise_t = std::remove_cvref_t<Noise>;
  constexpr bool has_noise_source = !std::is_same_v<noise_t, no_noise>;
  const bool draw = has_noise_source && c.noise_std != 0.0;
  const T zs = static_cast<T>(c.noise_std);
  const T px = static_cast<T>(c.pred.x0_from_sample), pm = static_cast<T>(c.pred.x0_from_model);
  const T ex = static_cast<T>(c.pred.eps_from_sample), em = static_cast<T>(c.pred.eps_from_model);
  const T rx = static_cast<T>(c.reeps_from_sample), r0 = static_cast<T>(c.reeps_from_x0);
  const T w0 = static_cast<T>(c.x0_weight), we = static_cast<T>(c.eps_weight), wx = static_cast<T>(c.sample_weight);
  const T ws = static_cast<T>(e.state_weight);
  const T dx = static_cast<T>(e.store_sample), dm = static_cast<T>(e.store_model), d0 = static_cast<T>(e.store_x0);
  const std::size_t reads = e.history_reads;
  std::array<const T*, max_history_reads> h{};
  std::array<T, max_history_reads> hw{}, hs{};
  for (std::size_t j = 0; j < reads; ++j) {
    h[j] = history[e.history[j].slot];
    hw[j] = static_cast<T>(e.history[j].weight);
    hs[j] = static_cast<T>(e.history[j].state_weight);
  }
  const bool combine = e.combine_state && state != nullptr;
  const T ux = static_cast<T>(e.state_from_sample), um = static_cast<T>(e.state_from_model);
  const T u0 = static_cast<T>(e.state_from_x0), us = static_cast<T>(e.state_from_state);
  T* const store = e.store_slot >= 0 ? history[e.store_slot] : nullptr;
  const bool reeps = processing.use_clipped_model_output;
  std::array<T, noise_block> z{};
  for (std::size_t s = sample_begin; s < sample_end; ++s) {
    const auto [lo, hi, scale, divide] = sample_x0_bounds<T>(processing, px, pm, xs, ms, s, per_sample, scratch);
    for (std::size_t j = 0; j < per_sample; j += noise_block) {
      const std::size_t len = std::min(noise_block, per_sample - j);
      if constexpr (has_noise_source) {
        if (draw) draw_noise<T>(noise, std::span<T>(z.data(), len), noise_position{s, step_index, j});
      }
      for (std::size_t i = 0; i < len; ++i) {
        const std::size_t k = s * per_sample + j + i;
        const T xv = xs[k], mv = ms[k];
        T x0 = px * xv + pm * mv;
        if (processing.mode != x0_processing::kind::none) {
          x0 = std::clamp(x0, lo, hi);
          if (divide) x0 = x0 / scale;
        }
        const T eps = reeps ? rx * xv + r0 * x0 : ex * xv + em * mv;
        T out = w0 * x0 + we * eps + wx * xv;
        if (state != nullptr) {
          // Only a row that weighs S reads it: a row that just saves S (weight 0) must not turn a stale S left by
          // an earlier run of the workspace (NaN or inf) into 0·S = NaN.
          if (e.state_weight != 0.0) out += ws * state[k];
          if (e.save_state) state[k] = xv;
        }
        for (std::size_t r = 0; r < reads; ++r) out += hw[r] * h[r][k];
        if (combine) {  // the old S and H[·][k] are read here, before the store below overwrites a slot
          T next = ux * xv + um * mv + u0 * x0 + us * state[k];
          for (std::size_t r = 0; r < reads; ++r) next += hs[r] * h[r][k];
          state[k] = next;
        }
        if (draw) out += zs * z[i];
        if (store != nullptr) store[k] = dx * xv + dm * mv + d0 * x0;
        if (x0_out != nullptr) x0_out[k] = x0;
        xs[k] = out;
      }
    }
  }
}

}  // namespace detail
}  // namespace skipstep
