// Loads a diffusers scheduler_config.json (a model folder's scheduler/scheduler_config.json) and prints the resolved
// plan: class, model times, ā or σ per step, init_noise_sigma, and which keys were defaulted, ignored or unknown.
//
//   example_diffusers_config CONFIG.json [--steps N] [--mu X | --image-seq-len L] [--strength S]
//
// Without --steps: 50 (the pipelines' default), 4 for LCM.
// A dynamic-shift flow config (Flux) needs μ: --mu, or --image-seq-len (default 4096, a 1024×1024 Flux image).
#include <skipstep/interop/diffusers_config.hpp>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

namespace {

void print_list(const char* what, const std::vector<std::string>& keys) {
  std::printf("%s (%zu):", what, keys.size());
  for (const std::string& k : keys) std::printf(" %s", k.c_str());
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s CONFIG.json [--steps N] [--mu X | --image-seq-len L] [--strength S]\n", argv[0]);
    return 2;
  }
  try {
    const std::string path = argv[1];
    skipstep::load_options options;
    for (int i = 2; i + 1 < argc; i += 2) {
      const std::string flag = argv[i], value = argv[i + 1];
      if (flag == "--steps") options.num_inference_steps = std::stoul(value);
      else if (flag == "--mu") options.mu = std::stod(value);
      else if (flag == "--image-seq-len") options.image_seq_len = std::stoul(value);
      else if (flag == "--strength") options.strength = std::stod(value);
      else {
        std::fprintf(stderr, "unknown option %s\n", flag.c_str());
        return 2;
      }
    }
    // The pipeline's usual step count when none is given: probe the class without building.
    skipstep::load_options probe = options;
    probe.build = false;
    probe.num_inference_steps = 4;
    probe.image_seq_len = options.image_seq_len.value_or(4096);
    const skipstep::loaded_scheduler peek = skipstep::load_scheduler_config(std::filesystem::path(path), probe);
    if (!options.num_inference_steps)
      options.num_inference_steps = peek.class_name == "LCMScheduler" ? 4 : 50;
    if (!options.mu && !options.image_seq_len) options.image_seq_len = 4096;

    const skipstep::loaded_scheduler s = skipstep::load_scheduler_config(std::filesystem::path(path), options);
    const skipstep::sampler& plan = s.get();
    std::printf("%s: %s, %zu steps, %zu model evaluations\n", path.c_str(), s.class_name.c_str(), plan.num_steps(),
                plan.rows().size());
    std::printf("init_noise_sigma %.9g; x_T for skipstep = diffusers' latents x %.9g\n", s.init_noise_sigma,
                s.state_from_diffusers_start);
    if (s.first_step) std::printf("img2img: start at step %zu\n", s.first_step);
    std::printf("%5s %14s %16s %6s\n", "row", "model time", s.sigmas.empty() ? "alpha_cumprod" : (s.flow ? "flow s" : "sigma~"),
                "noise");
    for (std::size_t k = 0; k < plan.rows().size(); ++k) {
      const std::size_t step = plan.rows()[k].step;
      const double level = !s.sigmas.empty() ? s.sigmas.at(step) : s.alphas_cumprod.at(step);
      std::printf("%5zu %14.6f %16.9g %6s\n", k, plan.rows()[k].model_time, level,
                  plan.coefficients()[k].noise_std != 0.0 ? "yes" : "");
    }
    std::printf("%5s %14s %16.9g\n", "end", "", !s.sigmas.empty() ? s.sigmas.back() : s.alphas_cumprod.back());
    print_list("defaulted keys", s.defaulted_keys);
    print_list("ignored keys", s.ignored_keys);
    print_list("unknown keys (diffusers ignores them too)", s.unknown_keys);
    for (const std::string& n : s.notes) std::printf("note: %s\n", n.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
