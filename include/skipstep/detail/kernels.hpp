/// @file
/// The element loops of a sampler step (DESIGN.md §7), kept out of line so that each is compiled as a small function
/// of its own: the vectorizer sees a clean restrict loop and the register allocator nothing else (inlined into the
/// large apply_step, GCC 12 kept a spill store inside the fused loop and lost ~25% in cache). One call per step
/// (deterministic) or per 256-element noise block (noisy) is noise next to the loop.
///
/// No FMA is introduced by the code: whether `a*x + b*m` contracts is the user's -ffp-contract choice, the same for
/// every backend, since all of them reach these functions through a std::span.
#pragma once

#include <cstddef>

#if defined(__GNUC__) || defined(__clang__)
#define SKIPSTEP_KERNEL_NOINLINE __attribute__((noinline))
#elif defined(_MSC_VER)
#define SKIPSTEP_KERNEL_NOINLINE __declspec(noinline)
#else
#define SKIPSTEP_KERNEL_NOINLINE
#endif

#if defined(__GNUC__) || defined(__clang__) || defined(_MSC_VER)
#define SKIPSTEP_RESTRICT __restrict
#else
#define SKIPSTEP_RESTRICT
#endif

namespace skipstep::detail {

/// x[i] ← a·x[i] + b·m[i], i < n: the fused deterministic step (one read of x and m, one write of x).
template <class T>
SKIPSTEP_KERNEL_NOINLINE void fused_step_kernel(T* SKIPSTEP_RESTRICT x, const T* SKIPSTEP_RESTRICT m, std::size_t n,
                                                T a, T b) noexcept {
  for (std::size_t i = 0; i < n; ++i) x[i] = a * x[i] + b * m[i];
}

/// x[i] ← a·x[i] + b·m[i] + s·z[i], i < n: the fused noisy step over one noise block.
template <class T>
SKIPSTEP_KERNEL_NOINLINE void fused_noisy_step_kernel(T* SKIPSTEP_RESTRICT x, const T* SKIPSTEP_RESTRICT m,
                                                      const T* SKIPSTEP_RESTRICT z, std::size_t n, T a, T b,
                                                      T s) noexcept {
  for (std::size_t i = 0; i < n; ++i) x[i] = a * x[i] + b * m[i] + s * z[i];
}

/// The fused deterministic step that also writes x̂0 (for a callback): x0[i] ← px·x[i] + pm·m[i], then
/// x[i] ← a·x[i] + b·m[i]. The new sample is computed exactly as by fused_step_kernel, so observing x̂0 never
/// changes the numbers.
template <class T>
SKIPSTEP_KERNEL_NOINLINE void fused_step_x0_kernel(T* SKIPSTEP_RESTRICT x, const T* SKIPSTEP_RESTRICT m,
                                                   T* SKIPSTEP_RESTRICT x0, std::size_t n, T a, T b, T px,
                                                   T pm) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    const T xv = x[i], mv = m[i];
    x0[i] = px * xv + pm * mv;
    x[i] = a * xv + b * mv;
  }
}

/// The fused noisy step over one noise block that also writes x̂0 (see fused_step_x0_kernel).
template <class T>
SKIPSTEP_KERNEL_NOINLINE void fused_noisy_step_x0_kernel(T* SKIPSTEP_RESTRICT x, const T* SKIPSTEP_RESTRICT m,
                                                         const T* SKIPSTEP_RESTRICT z, T* SKIPSTEP_RESTRICT x0,
                                                         std::size_t n, T a, T b, T s, T px, T pm) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    const T xv = x[i], mv = m[i];
    x0[i] = px * xv + pm * mv;
    x[i] = a * xv + b * mv + s * z[i];
  }
}

/// What a solver row stores into a history slot (see fused_row_kernel).
enum class row_store {
  none,      ///< nothing.
  separate,  ///< D into a slot the row does not read.
  in_place,  ///< D into the slot of a history term the row reads (read first, then overwritten).
};

/// What a solver row does with its saved state S (see fused_row_kernel).
enum class row_state {
  keep,     ///< S is left as it is (it may still be read, with ReadState).
  save,     ///< S ← x (the value before the update).
  combine,  ///< S ← u_x·x + u_m·m + u_S·S + Σ_j u_j·h_j + u_p·p (old values; UniPC's corrected sample).
};

/// The scalars of fused_row_kernel, already folded in double and cast to T.
template <class T>
struct fused_row_weights {
  T sample;              ///< a, the weight of x.
  T model;               ///< b, the weight of m.
  T state;               ///< w_S, the weight of the saved state S.
  T history[4];          ///< w_j, the weights of the read-only history streams h0..h3.
  T in_place;            ///< w_p, the weight of the slot the row reads and then overwrites with D.
  T store_sample;        ///< d_a, the weight of x in D.
  T store_model;         ///< d_b, the weight of m in D.
  T noise;               ///< σ_z, the weight of z.
  T state_sample;        ///< u_x (with u_0·px folded in), the weight of x in the new S (row_state::combine).
  T state_model;         ///< u_m (with u_0·pm folded in), the weight of m in the new S.
  T state_state;         ///< u_S, the weight of the old S in the new S.
  T state_history[4];    ///< u_j, the weights of h0..h3 in the new S.
  T state_in_place;      ///< u_p, the weight of p (before it is overwritten) in the new S.
};

/// A solver row without x̂0 processing, fused: one pass over memory, i < n,
///   x[i] ← a·x[i] + b·m[i] + w_S·S[i] + Σ_{j<Reads} w_j·h_j[i] + w_p·p[i] + σ_z·z[i],
///   then p[i] ← D (Store = in_place) or d[i] ← D (separate), D = d_a·x[i] + d_b·m[i] (old x), and S[i] ← x[i] (old)
///   with State = save, or S[i] ← u_x·x[i] + u_m·m[i] + u_S·S[i] + Σ_j u_j·h_j[i] + u_p·p[i] (all old values) with
///   State = combine,
/// each term present only when its compile-time flag is (ReadState: w_S·S; Noise: σ_z·z over one noise block). `p`
/// and `d` are the same pointer `out` (the history slot D goes to). Every stream is a distinct buffer, hence the
/// restrict pointers; the row dispatcher (apply_row_range) checks that no read-only history is the slot written.
template <std::size_t Reads, row_store Store, bool ReadState, row_state State, bool Noise, class T>
SKIPSTEP_KERNEL_NOINLINE void fused_row_kernel(T* SKIPSTEP_RESTRICT x, const T* SKIPSTEP_RESTRICT m,
                                               T* SKIPSTEP_RESTRICT state, const T* SKIPSTEP_RESTRICT h0,
                                               const T* SKIPSTEP_RESTRICT h1, const T* SKIPSTEP_RESTRICT h2,
                                               const T* SKIPSTEP_RESTRICT h3, T* SKIPSTEP_RESTRICT out,
                                               const T* SKIPSTEP_RESTRICT z, std::size_t n,
                                               const fused_row_weights<T> c) noexcept {
  static_assert(Reads <= 4, "fused_row_kernel: at most 4 read-only history streams");
  constexpr bool reads_state = ReadState || State == row_state::combine;
  for (std::size_t i = 0; i < n; ++i) {
    // Every input is loaded once, before any store (the store slot p may be one the row reads).
    const T xv = x[i], mv = m[i];
    const T sv = reads_state ? state[i] : T{};
    const T pv = Store == row_store::in_place ? out[i] : T{};
    const T h0v = Reads > 0 ? h0[i] : T{}, h1v = Reads > 1 ? h1[i] : T{};
    const T h2v = Reads > 2 ? h2[i] : T{}, h3v = Reads > 3 ? h3[i] : T{};
    T v = c.sample * xv + c.model * mv;
    if constexpr (ReadState) v += c.state * sv;
    if constexpr (Reads > 0) v += c.history[0] * h0v;
    if constexpr (Reads > 1) v += c.history[1] * h1v;
    if constexpr (Reads > 2) v += c.history[2] * h2v;
    if constexpr (Reads > 3) v += c.history[3] * h3v;
    if constexpr (Store == row_store::in_place) v += c.in_place * pv;
    if constexpr (Noise) v += c.noise * z[i];
    T next{};
    if constexpr (State == row_state::combine) {  // from the old S, h_j and p
      next = c.state_sample * xv + c.state_model * mv + c.state_state * sv;
      if constexpr (Reads > 0) next += c.state_history[0] * h0v;
      if constexpr (Reads > 1) next += c.state_history[1] * h1v;
      if constexpr (Reads > 2) next += c.state_history[2] * h2v;
      if constexpr (Reads > 3) next += c.state_history[3] * h3v;
      if constexpr (Store == row_store::in_place) next += c.state_in_place * pv;
    }
    // x first: in this order GCC 12 keeps x and m in registers for D instead of loading them again.
    x[i] = v;
    if constexpr (Store != row_store::none) out[i] = c.store_sample * xv + c.store_model * mv;
    if constexpr (State == row_state::save) state[i] = xv;
    if constexpr (State == row_state::combine) state[i] = next;
  }
}

/// x0[i] ← px·x[i] + pm·m[i], i < n: x̂0 for a callback, before a fused row overwrites x (the value the general row
/// loop computes without processing).
template <class T>
SKIPSTEP_KERNEL_NOINLINE void x0_kernel(const T* SKIPSTEP_RESTRICT x, const T* SKIPSTEP_RESTRICT m,
                                        T* SKIPSTEP_RESTRICT x0, std::size_t n, T px, T pm) noexcept {
  for (std::size_t i = 0; i < n; ++i) x0[i] = px * x[i] + pm * m[i];
}

}  // namespace skipstep::detail

#undef SKIPSTEP_RESTRICT
#undef SKIPSTEP_KERNEL_NOINLINE
