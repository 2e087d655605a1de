// torch_cuda_generator (interop/torch_cuda_generator.hpp) against values torch printed on CUDA GPUs, as published
// in public code and documentation (4 decimals): seed 42, torch.randn(2, 5, device="cuda") (FlashInfer's
// logits_processor docstring) and a (1, 19) draw; seed 42, torch.randn((1823, 781), device="cuda") rows 0-2 and 7-9
// (first and last three columns, a Triton softmax tutorial's output); seed 0, torch.randn(8, 8, device="cuda") (a
// CUDA-mode lecture's printed input). The prints carry 4 decimals, so each value must be within 5e-5 (print
// rounding) plus the float32 rounding of the value (|v|·2^-24); the test reports the largest deviation seen. Beyond
// that, what is checked is the layout and counting rule from the torch / curand sources (no GPU here).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "check_error.hpp"
#include "skipstep/interop/torch_cuda_generator.hpp"

using namespace skipstep;

namespace {

double worst = 0.0;   // the largest |ours − printed| over every published value
std::size_t compared = 0;

void check_printed(const std::vector<float>& ours, std::size_t index, double printed) {
  REQUIRE(index < ours.size());
  const double dev = std::abs(static_cast<double>(ours[index]) - printed);
  worst = std::max(worst, dev);
  ++compared;
  CAPTURE(index, printed, ours[index]);
  CHECK(dev <= 5e-5 + std::abs(printed) * 0x1p-24);
}

}  // namespace

TEST_CASE("torch CUDA generator: published torch.randn values, seed 42", "[torch][cuda_rng]") {
  const double first19[] = {0.1940,  2.1614,  -0.1721, 0.8491, -1.9244, 0.6530,  -0.6494, -0.8175, 0.5280, -1.2753,
                            -1.6621, -0.3033, -0.0926, 0.1992, -1.1204, 1.8577, -0.7145, 0.6881,  0.7968};
  torch_cuda_generator g(42);
  std::vector<float> small(19);
  g.randn(small);
  for (std::size_t i = 0; i < 19; ++i) check_printed(small, i, first19[i]);
  CHECK(g.offset() == 4);

  // (1823, 781): rows 0, 1, 2, 7, 8, 9, columns 0-2 and 778-780 (the print of arr[0:10]).
  const struct {
    std::size_t row;
    double v[6];
  } rows[] = {{0, {0.1940, 2.1614, -0.1721, -0.8353, -1.6443, 0.1315}},
              {1, {-0.1797, 0.9744, -2.0136, 0.0543, 0.2508, -0.2370}},
              {2, {1.1266, 1.5895, 0.1072, -0.4797, 1.4313, 1.7260}},
              {7, {1.9695, 0.5996, 0.5583, -0.0692, 2.9254, 0.9274}},
              {8, {-1.7301, 1.2562, -1.2144, -0.4262, -2.0327, -1.0277}},
              {9, {-0.2987, 0.1946, 1.1640, -0.2081, -1.0439, 0.7082}}};
  torch_cuda_generator big(42);
  std::vector<float> x(std::size_t{1823} * 781);
  big.randn(x);
  for (const auto& r : rows) {
    const std::size_t cols[] = {0, 1, 2, 778, 779, 780};
    for (std::size_t k = 0; k < 6; ++k) check_printed(x, r.row * 781 + cols[k], r.v[k]);
  }
}

TEST_CASE("torch CUDA generator: published torch.randn values, seed 0", "[torch][cuda_rng]") {
  const double printed[64] = {
      -0.9247, -0.4253, -2.6438, 0.1452,  -0.1209, -0.5797, -0.6229, -0.3284, -1.0745, -0.3631, -1.6711,
      2.2655,  0.3117,  -0.1842, 1.2866,  1.1820,  -0.1271, 1.2169,  1.4353,  1.0605,  -0.4941, -1.4244,
      -0.7244, -1.2973, 0.0697,  -0.0074, 1.8969,  0.6878,  -0.0779, -0.8373, 1.3506,  -0.2879, -0.5965,
      -0.3283, -0.9086, -0.8059, -0.7407, -0.0504, 0.5435,  1.5150,  0.0141,  0.4532,  1.6349,  0.7124,
      -0.1806, 1.0252,  -1.4622, -0.7554, -0.1836, 0.3824,  0.3918,  -0.0830, 0.8971,  -1.1123, 0.1116,
      0.4863,  -0.5499, -0.3231, -0.5469, 0.9049,  0.2837,  0.1210,  0.4730,  -1.0823};
  torch_cuda_generator g(0);
  std::vector<float> x(64);
  g.randn(x);
  for (std::size_t i = 0; i < 64; ++i) check_printed(x, i, printed[i]);
  std::printf("torch cuda rng: %zu published values compared, max |deviation| %.3g (4-decimal prints: <= 5e-5)\n",
              compared, worst);
}

TEST_CASE("torch CUDA generator: the launch layout and the offset rule of the sources", "[torch][cuda_rng]") {
  // Element i of a draw no larger than the launch is component 0 of Philox counter (offset/4, 0, i, 0); a second
  // call continues at offset + 4. With a device limit, element li > threads takes component (li / threads) mod 4
  // of the same thread's block, and the offset advances by 4 per loop iteration.
  torch_cuda_generator a(7), b(7);
  std::vector<float> first(300), second(300), both(600);
  a.randn(first);
  a.randn(second);
  CHECK(a.offset() == 8);
  b.set_offset(4);
  std::vector<float> second_again(300);
  b.randn(second_again);
  CHECK(second_again == second);

  const device_grid one_sm{1, 512};  // 2 blocks of 256: 512 threads
  torch_cuda_generator c(7, one_sm), d(7);
  CHECK(c.threads_for(10000) == 512);
  std::vector<float> x(4 * 512 + 5), y(512);
  c.randn(x);
  d.randn(y);  // the unbounded launch of 512 elements: component 0 of threads 0..511
  for (std::size_t i = 0; i < 512; ++i) CHECK(x[i] == y[i]);
  CHECK(c.offset() == 8);  // 4·512 + 5 elements: two iterations of 4 components each
  // Components 0 and 1 of one thread are one Box-Muller pair: n0² + n1² = −2 ln u ≥ 0, the same u.
  for (std::size_t i = 0; i < 512; i += 97) {
    const double r2 = static_cast<double>(x[i]) * x[i] + static_cast<double>(x[512 + i]) * x[512 + i];
    CHECK(r2 >= 0.0);
    CHECK(r2 <= 2.0 * 32.0 * std::log(2.0) + 1e-3);  // u ≥ 2^-33: −2 ln u ≤ 66 ln 2
  }
  // float16 is the float32 value rounded once.
  torch_cuda_generator e(7);
  std::vector<std::uint16_t> h(300);
  e.randn_float16(h);
  for (std::size_t i = 0; i < 300; ++i) CHECK(h[i] == detail::float_to_half_bits(first[i]));
}

TEST_CASE("torch CUDA generator: bad arguments", "[torch][cuda_rng][errors]") {
  torch_cuda_generator g(1);
  CHECK_ERROR(g.set_offset(3), std::invalid_argument, "torch_cuda_generator::set_offset", "offset", "3");
  CHECK_ERROR(torch_cuda_generator(1, device_grid{4, 128}), std::invalid_argument, "torch_cuda_generator",
              "device.max_threads_per_sm", "128");
}
