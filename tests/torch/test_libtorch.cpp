// The LibTorch backend (skipstep/backend/libtorch.hpp): torch::Tensor as a skipstep tensor, torch_predictor around
// a TorchScript module made here (no trained file), every bad input, and (tag [parity], run by the ctest entry
// test_libtorch_parity) one DDIM cell of the committed Fashion-MNIST model against a plain PyTorch loop.
#include <skipstep/backend/libtorch.hpp>  // first: the header must compile on its own (header_check skips it)

#include <ATen/Parallel.h>
#include <catch2/catch.hpp>

#include <skipstep/skipstep.hpp>
#include <skipstep/schedule/sigma_grid.hpp>
#include <skipstep/solver/euler.hpp>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "../unit/check_error.hpp"

namespace {

/// forward(x, t) = 0.5·x + 0.001·t (per sample), as TorchScript.
torch::jit::script::Module affine_module() {
  torch::jit::script::Module m("affine");
  m.define(R"JIT(
def forward(self, x, t):
    return x * 0.5 + t.to(x.dtype).view(-1, 1, 1, 1) * 0.001
)JIT");
  return m;
}

template <class T>
std::vector<T> read_raw(const std::string& path, std::size_t count) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::vector<T> v(count);
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(count * sizeof(T)));
  if (static_cast<std::size_t>(in.gcount()) != count * sizeof(T)) throw std::runtime_error("short file " + path);
  return v;
}

}  // namespace

TEST_CASE("torch::Tensor is a float32 skipstep tensor over its own storage", "[libtorch]") {
  torch::Tensor t = torch::arange(12, torch::kFloat).reshape({3, 4});
  const std::span<float> e = skipstep::elements(t);
  REQUIRE(e.size() == 12);
  CHECK(e.data() == t.data_ptr<float>());
  e[5] = 42.0f;
  CHECK(t[1][1].item<float>() == 42.0f);
  // A dimension of extent 1 may have any stride (the dense_strides rule of every backend).
  torch::Tensor one = torch::zeros({4, 1}).as_strided({4, 1}, {1, 7});
  CHECK(skipstep::elements(std::as_const(one)).size() == 4);
  // float64 through torch_tensor<double>.
  skipstep::torch_tensor<double> d{torch::zeros({5}, torch::kDouble)};
  CHECK(skipstep::elements(d).size() == 5);
}

TEST_CASE("torch tensors that are not contiguous CPU float32 / float64 are rejected by name", "[libtorch][errors]") {
  torch::Tensor t = torch::zeros({3, 4});
  torch::Tensor transposed = t.t();
  CHECK_ERROR(skipstep::elements(transposed), std::invalid_argument, "tensor_traits<torch::Tensor>",
              "tensor.strides()", "[1, 4]");
  torch::Tensor every_other = torch::zeros({8}).slice(0, 0, 8, 2);
  CHECK_ERROR(skipstep::elements(every_other), std::invalid_argument, "tensor_traits<torch::Tensor>",
              "tensor.strides()", "[2]");
  torch::Tensor dbl = torch::zeros({3}, torch::kDouble);
  CHECK_ERROR(skipstep::elements(dbl), std::invalid_argument, "tensor_traits<torch::Tensor>", "tensor.dtype()",
              "Double");
  torch::Tensor i64 = torch::zeros({3}, torch::kLong);
  CHECK_ERROR(skipstep::elements(i64), std::invalid_argument, "tensor_traits<torch::Tensor>", "tensor.dtype()",
              "Long");
  skipstep::torch_tensor<double> wrong{torch::zeros({3}, torch::kFloat)};
  CHECK_ERROR(skipstep::elements(wrong), std::invalid_argument, "tensor_traits<torch_tensor>", "tensor.dtype()",
              "Float");
  // The meta device (shapes without storage) stands in for CUDA on a CPU-only machine.
  torch::Tensor meta = torch::empty({3}, torch::TensorOptions().device(torch::kMeta));
  CHECK_ERROR(skipstep::elements(meta), std::invalid_argument, "tensor_traits<torch::Tensor>", "tensor.device()",
              "meta");
  torch::Tensor undefined;
  CHECK_ERROR(skipstep::elements(undefined), std::invalid_argument, "tensor_traits<torch::Tensor>", "tensor",
              "undefined");
  torch::Tensor sparse = torch::zeros({2, 2}).to_sparse();
  CHECK_ERROR(skipstep::elements(sparse), std::invalid_argument, "tensor_traits<torch::Tensor>", "tensor.layout()",
              "Sparse");
}

TEST_CASE("torch_predictor feeds the sampler's buffer to a TorchScript module without a copy", "[libtorch]") {
  const std::vector<std::int64_t> shape{2, 1, 2, 2};
  const torch::Tensor* seen = nullptr;
  torch::Tensor seen_t;
  auto module = affine_module();
  // A callable around the module records what it was given.
  auto recording = [&](const torch::Tensor& x, const torch::Tensor& t) {
    seen = &x;
    seen_t = t;
    CHECK(c10::InferenceMode::is_enabled());
    return module.forward({x, t}).toTensor();
  };
  skipstep::torch_predictor p(recording, shape);
  std::vector<float> x(8);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i);
  std::vector<float> out(8);
  p(x, 300, std::span<float>(out));
  REQUIRE(seen != nullptr);
  CHECK(seen_t.sizes() == c10::IntArrayRef({2}));
  CHECK(seen_t.scalar_type() == torch::kLong);
  CHECK(seen_t[1].item<std::int64_t>() == 300);
  for (std::size_t i = 0; i < x.size(); ++i) CHECK(out[i] == Approx(0.5 * x[i] + 0.3));

  // The TorchScript module directly, with a torch::Tensor sample: the module sees the sample's own memory.
  skipstep::torch_predictor direct(affine_module(), shape);
  torch::Tensor xt = torch::ones({2, 1, 2, 2});
  std::vector<float> out2(8);
  direct(xt, 10, std::span<float>(out2));
  for (float v : out2) CHECK(v == Approx(0.51));
  auto pointer_check = [&](const torch::Tensor& x, const torch::Tensor&) {
    CHECK(x.data_ptr<float>() == xt.data_ptr<float>());
    return x.clone();
  };
  skipstep::torch_predictor no_copy(pointer_check, shape);
  no_copy(xt, 10, std::span<float>(out2));

  // A double sample with a float32 module: converted both ways.
  std::vector<double> xd(8, 2.0), outd(8);
  skipstep::torch_predictor(affine_module(), shape)(xd, 0, std::span<double>(outd));
  for (double v : outd) CHECK(v == Approx(1.0));
}

TEST_CASE("torch_predictor drives a sampler end to end", "[libtorch]") {
  const auto schedule = skipstep::noise_schedule<double>::linear(1000);
  skipstep::sampler_options options;
  options.num_samples = 2;
  const skipstep::ddim_sampler sampler(schedule, skipstep::timestep_schedule::uniform(1000, 10), skipstep::eta{0.0},
                                       options);
  skipstep::torch_predictor p(affine_module(), {2, 1, 2, 2});
  torch::Tensor x = torch::ones({2, 1, 2, 2});
  const auto result = sampler.sample(p, x);
  CHECK(result.steps_run == 10);
  CHECK(std::isfinite(x[0][0][0][0].item<float>()));
  // Same run over a std::vector: identical bits (the adaptor is a view, whatever the sample's container).
  std::vector<float> xv(8, 1.0f);
  sampler.sample(p, xv);
  const std::span<const float> xe = skipstep::elements(std::as_const(x));
  for (std::size_t i = 0; i < 8; ++i) CHECK(xv[i] == xe[i]);
}

TEST_CASE("torch_predictor rejects bad shapes, bad outputs and NaN by name", "[libtorch][errors]") {
  const std::vector<std::int64_t> shape{2, 1, 2, 2};
  std::vector<float> x(8, 1.0f), out(8);
  CHECK_ERROR(skipstep::torch_predictor(affine_module(), {}), std::invalid_argument, "torch_predictor",
              "sample_shape", "[]");
  CHECK_ERROR(skipstep::torch_predictor(affine_module(), {2, 0}), std::invalid_argument, "torch_predictor",
              "sample_shape", "[2, 0]");
  skipstep::torch_predictor_options bad_dtype;
  bad_dtype.model_dtype = torch::kInt;
  CHECK_ERROR(skipstep::torch_predictor(affine_module(), shape, bad_dtype), std::invalid_argument,
              "torch_predictor", "options.model_dtype", "Int");
  {
    skipstep::torch_predictor p(affine_module(), shape);
    std::vector<float> small(6);
    CHECK_ERROR(p(small, 0, std::span<float>(out)), std::invalid_argument, "torch_predictor", "x.size()", "6");
  }
  {
    auto wrong_shape = [](const torch::Tensor& xx, const torch::Tensor&) { return xx.reshape({2, 4}); };
    skipstep::torch_predictor p(wrong_shape, shape);
    CHECK_ERROR(p(x, 0, std::span<float>(out)), std::invalid_argument, "torch_predictor", "module output shape",
                "[2, 4]");
  }
  {
    torch::jit::script::Module m("halves");
    m.define("def forward(self, x, t):\n    return x[0:1]\n");
    skipstep::torch_predictor p(m, shape);
    CHECK_ERROR(p(x, 0, std::span<float>(out)), std::invalid_argument, "torch_predictor", "module output shape",
                "[1, 1, 2, 2]");
  }
  {
    auto integer = [](const torch::Tensor& xx, const torch::Tensor&) { return xx.to(torch::kInt); };
    skipstep::torch_predictor p(integer, shape);
    CHECK_ERROR(p(x, 0, std::span<float>(out)), std::invalid_argument, "torch_predictor", "module output dtype",
                "Int");
  }
  {
    torch::jit::script::Module m("nan_at_5");
    m.define("def forward(self, x, t):\n    y = x.clone()\n    y.view(-1)[5] = float('nan')\n    return y\n");
    skipstep::torch_predictor p(m, shape);
    CHECK_ERROR(p(x, 7, std::span<float>(out)), std::domain_error, "torch_predictor",
                "module output element 5 at t = 7", "nan");
    // Through a sampler: the step's context is not lost (the predictor's message passes through).
    const auto schedule = skipstep::noise_schedule<double>::linear(1000);
    skipstep::sampler_options options;
    options.num_samples = 2;
    const skipstep::ddim_sampler sampler(schedule, skipstep::timestep_schedule::uniform(1000, 4), skipstep::eta{0.0},
                                         options);
    CHECK_THROWS_AS(sampler.sample(p, x), std::domain_error);
  }
  {
    torch::jit::script::Module m("not_a_tensor");
    m.define("def forward(self, x, t):\n    return 3\n");
    skipstep::torch_predictor p(m, shape);
    CHECK_ERROR(p(x, 0, std::span<float>(out)), std::invalid_argument, "torch_predictor", "module output", "Int");
  }
}

// Run by the ctest entry test_libtorch_parity after parity_reference.py wrote $SKIPSTEP_PARITY_DIR.
TEST_CASE("parity: skipstep's DDIM cell equals a plain PyTorch loop on the trained model", "[.][parity]") {
  const char* dir_env = std::getenv("SKIPSTEP_PARITY_DIR");
  REQUIRE(dir_env != nullptr);
  const std::string dir = dir_env;
  constexpr std::size_t T = 1000, S = 20, B = 16, D = 28 * 28;
  at::set_num_threads(1);  // the Python side runs with torch.set_num_threads(1) too
  std::string model_path;
  std::getline(std::ifstream(dir + "/model.txt"), model_path);
  torch::jit::script::Module model = torch::jit::load(model_path);
  model.eval();

  const auto ts = read_raw<std::int64_t>(dir + "/timesteps.i64", S);
  const auto timesteps = skipstep::timestep_schedule::uniform(T, S);
  for (std::size_t i = 0; i < S; ++i) REQUIRE(timesteps.timesteps()[i] == ts[i]);
  const auto noise = read_raw<float>(dir + "/noise.f32", S * B * D);
  const auto reference = read_raw<float>(dir + "/reference.f32", B * D);
  const auto x_T = read_raw<float>(dir + "/x_T.f32", B * D);

  torch::Tensor x = torch::empty({static_cast<std::int64_t>(B), 1, 28, 28});
  std::memcpy(x.data_ptr<float>(), x_T.data(), B * D * sizeof(float));
  const auto schedule = skipstep::noise_schedule<double>::linear(T);
  skipstep::sampler_options options;
  options.num_samples = B;
  const skipstep::ddim_sampler sampler(schedule, timesteps, skipstep::eta{0.5}, options);
  // The noise of step i for sample b is z[i][b], the Python loop's torch.randn draws.
  auto from_file = [&](std::span<float> out, skipstep::noise_position at) {
    const float* src = noise.data() + (at.step * B + at.sample) * D + at.first_element;
    std::copy(src, src + out.size(), out.begin());
  };
  skipstep::torch_predictor predictor(model, {static_cast<std::int64_t>(B), 1, 28, 28});
  sampler.sample(predictor, x, from_file);

  const std::span<const float> got = skipstep::elements(std::as_const(x));
  std::size_t differing = 0;
  double max_abs = 0.0;
  for (std::size_t j = 0; j < got.size(); ++j) {
    if (std::memcmp(&got[j], &reference[j], sizeof(float)) != 0) ++differing;
    max_abs = std::max(max_abs, std::abs(static_cast<double>(got[j]) - reference[j]));
  }
  std::cout << "parity (uniform S = 20, eta = 0.5, B = 16, 1x28x28): " << differing << " of " << got.size()
            << " elements differ from the PyTorch loop, max |C++ - PyTorch| = " << max_abs
            << (differing == 0 ? " (bit-identical)" : "") << "\n";
  CHECK(differing == 0);
}

TEST_CASE("torch_predictor passes fractional model times (σ grids, flow) with a floating time dtype", "[libtorch]") {
  // Euler on a σ grid evaluates the network at fractional times (σ → t interpolated in the training table).
  const auto schedule = skipstep::noise_schedule<double>::linear(1000);
  const skipstep::euler_sampler euler(skipstep::make_sigma_grid(schedule, 8));
  REQUIRE_FALSE(euler.has_integral_model_times());
  std::vector<double> seen;
  auto recording = [&](const torch::Tensor& x, const torch::Tensor& t) {
    seen.push_back(t[0].item<double>());
    return 0.5 * x;
  };
  skipstep::torch_predictor_options continuous;
  continuous.time_dtype = c10::ScalarType::Double;
  skipstep::torch_predictor p(recording, {1, 4}, continuous);
  std::vector<float> x(4, 1.0f);
  euler.sample(p, x);
  REQUIRE(seen.size() == euler.rows().size());
  for (std::size_t r = 0; r < seen.size(); ++r) CHECK(seen[r] == euler.rows()[r].model_time);
  // torch.long times: a fractional time is refused by name, not truncated.
  skipstep::torch_predictor integral(recording, {1, 4});
  std::vector<float> y(4, 1.0f), out(4);
  CHECK_ERROR(integral(y, 523.7, std::span<float>(out)), std::invalid_argument, "torch_predictor", "t", "523.7");
  CHECK_THROWS_AS(euler.sample(integral, y), std::invalid_argument);
}
