// Your own tensor type: any buffer with contiguous floating-point elements becomes a skipstep tensor once
// skipstep::tensor_traits<T> gives its value_type and a std::span over its elements (mutable and const).
//
// This example also uses the allocation-free path: a *writing* predictor f(x, t, out) fills a span owned by a
// reusable sampler_workspace, so the sampling loop itself never allocates. The predictor is the exact noise
// predictor of a toy data set where every image equals a gradient; DDIM with eta = 0.5 adds noise at every step
// but the last, and still ends on the gradient, which is checked.
#include <skipstep/skipstep.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <span>
#include <vector>

/// A minimal image buffer, height x width x channels floats, row-major.
struct image {
  std::size_t height = 0, width = 0, channels = 0;
  std::vector<float> pixels;
};

namespace skipstep {
template <>
struct tensor_traits<image> {
  using value_type = float;
  static std::span<float> elements(image& im) noexcept { return im.pixels; }
  static std::span<const float> elements(const image& im) noexcept { return im.pixels; }
};
}  // namespace skipstep

static_assert(skipstep::Tensor<image>, "image must be a skipstep tensor");

int main() {
  const std::size_t h = 4, w = 4, c = 3;
  std::vector<float> gradient(h * w * c);
  for (std::size_t i = 0; i < gradient.size(); ++i) gradient[i] = static_cast<float>(i) / static_cast<float>(gradient.size()) - 0.5f;

  const auto schedule = skipstep::noise_schedule<>::cosine(1000);
  const skipstep::ddim_sampler sampler(schedule, skipstep::timestep_schedule::trailing(1000, 20), skipstep::eta{0.5});

  // Writing predictor: out has as many elements as x, in the same order.
  auto network = [&](const image& x, std::int64_t t, std::span<float> out) {
    const double a = schedule.alpha_cumprod(static_cast<std::size_t>(t));
    const auto sa = static_cast<float>(std::sqrt(a)), s1a = static_cast<float>(std::sqrt(1.0 - a));
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = (x.pixels[i] - sa * gradient[i]) / s1a;
  };

  image x{h, w, c, std::vector<float>(h * w * c)};
  skipstep::sampler_workspace workspace(x);  // buffers for images of this size, reusable across runs
  const skipstep::philox_normal noise(2024);
  for (std::uint64_t run = 0; run < 3; ++run) {  // three images, each from its own noise stream
    noise.fill(skipstep::elements(x), /*stream=*/1000 + run, /*step=*/0);
    sampler.sample(network, x, [&](std::span<float> out, skipstep::noise_position at) {
      noise.fill(out, /*stream=*/run, at.step, at.first_element);
    }, workspace);
    float error = 0.0f;
    for (std::size_t i = 0; i < gradient.size(); ++i) error = std::fmax(error, std::abs(x.pixels[i] - gradient[i]));
    std::printf("custom_tensor: image %llu (%zux%zux%zu), max |x - gradient| = %.2g\n",
                static_cast<unsigned long long>(run), x.height, x.width, x.channels, error);
    if (!(error < 1e-4f)) return 1;
  }
  return 0;
}
