// interop/diffusers_config.hpp: the loader of diffusers' scheduler_config.json. Every row of the README's error table
// is a test here ("README error table: ..."), and every shipped model config (tests/data/model_configs) must load
// and give the plan its model's pipeline runs. The reference runner (tests/reference) builds all 237 reference
// cases through the same loader and checks them against diffusers' output.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "skipstep/interop/diffusers_config.hpp"
#include "skipstep/interop/diffusers_torch_noise.hpp"

using namespace skipstep;
using nlohmann::json;

#ifndef SKIPSTEP_MODEL_CONFIG_DIR
#define SKIPSTEP_MODEL_CONFIG_DIR "tests/data/model_configs"
#endif

namespace {

std::filesystem::path model_config(const char* name) { return std::filesystem::path(SKIPSTEP_MODEL_CONFIG_DIR) / name; }

load_options steps(std::size_t n) {
  load_options o;
  o.num_inference_steps = n;
  return o;
}

bool has(const std::vector<std::string>& v, const std::string& k) { return std::find(v.begin(), v.end(), k) != v.end(); }

}  // namespace

TEST_CASE("README error table: an unknown _class_name lists the supported classes", "[diffusers_config][errors]") {
  const json cfg = {{"_class_name", "KarrasVeScheduler"}};
  CHECK_THROWS_AS(load_scheduler_config(cfg, steps(10)), std::invalid_argument);
  CHECK_THROWS_WITH(load_scheduler_config(cfg, steps(10)),
                    Catch::StartsWith("skipstep::load_scheduler_config: _class_name \"KarrasVeScheduler\"") &&
                        Catch::Contains("supported classes: DDIMInverseScheduler, DDIMScheduler, DDPMScheduler") &&
                        Catch::Contains("UniPCMultistepScheduler"));
  CHECK_THROWS_WITH(load_scheduler_config(json{{"beta_start", 0.1}}, steps(10)),
                    Catch::Contains("key \"_class_name\" must name the scheduler class (got none)"));
  CHECK(supported_scheduler_classes().size() == 15);
}

TEST_CASE("README error table: an unsupported value names the key, the value and what is supported",
          "[diffusers_config][errors]") {
  CHECK_THROWS_WITH(
      parse_scheduler_config(R"({"_class_name": "DDPMScheduler", "beta_schedule": "sigmoid"})", steps(10)),
      Catch::StartsWith("skipstep::parse_scheduler_config: DDPMScheduler key \"beta_schedule\" = \"sigmoid\" is not "
                        "supported by skipstep; supported: \"linear\", \"scaled_linear\", \"squaredcos_cap_v2\""));
  CHECK_THROWS_WITH(load_scheduler_config(json{{"_class_name", "DPMSolverMultistepScheduler"},
                                               {"variance_type", "learned_range"}},
                                          steps(10)),
                    Catch::Contains("key \"variance_type\" = \"learned_range\"") && Catch::Contains("supported: null"));
  CHECK_THROWS_WITH(load_scheduler_config(json{{"_class_name", "UniPCMultistepScheduler"}, {"use_dynamic_shifting", true}},
                                          steps(10)),
                    Catch::Contains("\"use_dynamic_shifting\" = true") && Catch::Contains("supported: false"));
  CHECK_THROWS_WITH(load_scheduler_config(json{{"_class_name", "EulerDiscreteScheduler"},
                                               {"use_karras_sigmas", true}, {"use_beta_sigmas", true}},
                                          steps(10)),
                    Catch::Contains("at most one of use_karras_sigmas"));
  CHECK_THROWS_WITH(load_scheduler_config(json{{"_class_name", "DEISMultistepScheduler"}, {"algorithm_type", "foo"}},
                                          steps(10)),
                    Catch::Contains("\"algorithm_type\" = \"foo\"") && Catch::Contains("supported: \"deis\""));
  CHECK_THROWS_WITH(load_scheduler_config(json{{"_class_name", "PNDMScheduler"}, {"prediction_type", "sample"}},
                                          steps(10)),
                    Catch::Contains("\"prediction_type\" = \"sample\"") &&
                        Catch::Contains("supported: \"epsilon\", \"v_prediction\""));
}

TEST_CASE("README error table: a bad type names the key and the expected type", "[diffusers_config][errors]") {
  CHECK_THROWS_WITH(load_scheduler_config(json{{"_class_name", "DDIMScheduler"}, {"beta_start", "x"}}, steps(10)),
                    Catch::StartsWith("skipstep::load_scheduler_config: DDIMScheduler key \"beta_start\" must be a "
                                      "number (got \"x\")"));
  CHECK_THROWS_WITH(load_scheduler_config(json{{"_class_name", "DDIMScheduler"}, {"clip_sample", "yes"}}, steps(10)),
                    Catch::Contains("key \"clip_sample\" must be a boolean (got \"yes\")"));
  CHECK_THROWS_WITH(load_scheduler_config(json{{"_class_name", "DDIMScheduler"}, {"steps_offset", -1}}, steps(10)),
                    Catch::Contains("key \"steps_offset\" must be a non-negative integer (got -1)"));
  CHECK_THROWS_WITH(load_scheduler_config(json{{"_class_name", "UniPCMultistepScheduler"}, {"disable_corrector", 3}},
                                          steps(10)),
                    Catch::Contains("\"disable_corrector\" must be a list of step indices (got 3)"));
  CHECK_THROWS_WITH(load_scheduler_config(json::array(), steps(10)), Catch::Contains("must be a JSON object (got array)"));
}

TEST_CASE("README error table: a missing file names the path", "[diffusers_config][errors]") {
  const std::filesystem::path missing = "no/such/scheduler_config.json";
  CHECK_THROWS_AS(load_scheduler_config(missing, steps(10)), std::runtime_error);
  CHECK_THROWS_WITH(load_scheduler_config(missing, steps(10)),
                    "skipstep::load_scheduler_config: cannot open \"no/such/scheduler_config.json\"");
}

TEST_CASE("README error table: malformed JSON names the path (or the text) and the position", "[diffusers_config][errors]") {
  const auto path = std::filesystem::temp_directory_path() / "skipstep_malformed_scheduler_config.json";
  {
    std::ofstream out(path);
    out << "{\"_class_name\": \"DDIMScheduler\",\n \"beta_start\": }\n";
  }
  CHECK_THROWS_AS(load_scheduler_config(path, steps(10)), std::invalid_argument);
  CHECK_THROWS_WITH(load_scheduler_config(path, steps(10)),
                    Catch::StartsWith("skipstep::load_scheduler_config: \"" + path.string() + "\" is not valid JSON") &&
                        Catch::Contains("line 2"));
  std::filesystem::remove(path);
  CHECK_THROWS_WITH(parse_scheduler_config("{\"_class_name\": ", steps(10)),
                    Catch::StartsWith("skipstep::parse_scheduler_config: the config text is not valid JSON") &&
                        Catch::Contains("column"));
}

TEST_CASE("README error table: missing or invalid call options name the option", "[diffusers_config][errors]") {
  CHECK_THROWS_WITH(load_scheduler_config(json{{"_class_name", "EulerDiscreteScheduler"}}),
                    "skipstep::load_scheduler_config: EulerDiscreteScheduler: options.num_inference_steps must be "
                    "given (got none)");
  CHECK_THROWS_WITH(load_scheduler_config(model_config("flux1_dev_dynamic_shift.json"), steps(28)),
                    Catch::Contains("options.mu (or options.image_seq_len) must be given with use_dynamic_shifting"));
  load_options o = steps(10);
  o.timesteps = {900, 500};
  CHECK_THROWS_WITH(load_scheduler_config(json{{"_class_name", "DDIMScheduler"}}, o),
                    Catch::Contains("options.timesteps is not accepted by this class"));
  o = steps(10);
  o.strength = 1.5;
  CHECK_THROWS_WITH(load_scheduler_config(json{{"_class_name", "DDIMScheduler"}}, o),
                    Catch::Contains("options.strength must be in [0, 1] (got 1.5)"));
  // A sampler's own refusal reaches the caller under the function the caller called.
  CHECK_THROWS_WITH(load_scheduler_config(json{{"_class_name", "DDIMScheduler"}}, steps(1001)),
                    Catch::StartsWith("skipstep::load_scheduler_config: "));
  CHECK_THROWS_AS(load_scheduler_config(json{{"_class_name", "DDIMScheduler"}, {"rescale_betas_zero_snr", true},
                                              {"timestep_spacing", "trailing"}},
                                        steps(10)),
                  std::domain_error);  // zero terminal SNR with epsilon prediction (README, differences table)
}

TEST_CASE("missing keys take diffusers' defaults for the class; metadata and unknown keys are reported",
          "[diffusers_config]") {
  const auto l = load_scheduler_config(json{{"_class_name", "DDIMScheduler"}, {"_diffusers_version", "0.30.0"},
                                            {"my_key", 1}},
                                       steps(10));
  CHECK(l.class_name == "DDIMScheduler");
  CHECK(has(l.defaulted_keys, "beta_schedule"));
  CHECK(has(l.defaulted_keys, "clip_sample"));
  CHECK(has(l.ignored_keys, "_diffusers_version"));
  CHECK(has(l.unknown_keys, "my_key"));
  CHECK(l.options.processing.mode == x0_processing::kind::clip);  // DDIM's clip_sample defaults to true
  CHECK(l.options.convention == step_convention::diffusers);
  const std::vector<std::int64_t> leading{900, 800, 700, 600, 500, 400, 300, 200, 100, 0};
  CHECK(std::vector<std::int64_t>(l.timesteps->timesteps().begin(), l.timesteps->timesteps().end()) == leading);
  CHECK(l.alphas_cumprod.size() == 11);
  CHECK(l.alphas_cumprod.back() == 1.0);  // set_alpha_to_one defaults to true
  // Heun's betas default to 0.00085 / 0.012, LCM's schedule to scaled_linear.
  const auto heun = load_scheduler_config(json{{"_class_name", "HeunDiscreteScheduler"}}, steps(10));
  CHECK(heun.schedule->betas()[0] == Approx(0.00085).epsilon(1e-12));
  const auto lcm = load_scheduler_config(json{{"_class_name", "LCMScheduler"}}, steps(4));
  CHECK(lcm.integer_timesteps == std::vector<std::int64_t>{999, 759, 499, 259});
  // DDPM without num_inference_steps: the training chain (set_timesteps never called).
  const auto ddpm = load_scheduler_config(json{{"_class_name", "DDPMScheduler"}, {"num_train_timesteps", 100}});
  CHECK(ddpm.get().num_steps() == 100);
}

TEST_CASE("the shipped model configs load into the plan their pipelines run", "[diffusers_config]") {
  const auto sd15 = load_scheduler_config(model_config("sd15_pndm.json"), steps(50));
  CHECK(sd15.class_name == "PNDMScheduler");
  CHECK(sd15.get().rows().size() == 51);  // PLMS: the second time is evaluated twice
  CHECK(sd15.model_times.front() == 981.0);
  const auto sd21 = load_scheduler_config(model_config("sd21_ddim_v.json"), steps(50));
  CHECK(sd21.options.prediction == prediction_type::v);
  CHECK(sd21.options.processing.is_identity());
  CHECK(has(sd21.unknown_keys, "skip_prk_steps"));
  CHECK(sd21.model_times.front() == 981.0);
  const auto sdxl = load_scheduler_config(model_config("sdxl_euler.json"), steps(50));
  CHECK(sdxl.model_times.front() == 981.0);
  CHECK(sdxl.init_noise_sigma == Approx(13.1585).epsilon(1e-5));  // √(σ_max² + 1) for leading spacing
  CHECK(sdxl.state_from_diffusers_start == Approx(1.0 / std::sqrt(sdxl.sigmas.front() * sdxl.sigmas.front() + 1.0)));
  const auto turbo = load_scheduler_config(model_config("sdxl_turbo_euler_ancestral.json"), steps(1));
  CHECK(turbo.model_times == std::vector<double>{999.0});
  CHECK(turbo.init_noise_sigma == Approx(14.6146).epsilon(1e-5));  // σ_max for trailing spacing
  const auto lcm = load_scheduler_config(model_config("lcm_dreamshaper_v7.json"), steps(4));
  CHECK(lcm.integer_timesteps == std::vector<std::int64_t>{999, 759, 499, 259});
  CHECK(lcm.draws_noise == std::vector<bool>{true, true, true, false});
  const auto sd3 = load_scheduler_config(model_config("sd3_flow_match_shift3.json"), steps(28));
  CHECK(sd3.flow);
  CHECK(sd3.sigmas.front() == 1.0);
  CHECK(sd3.sigmas[sd3.sigmas.size() - 2] == Approx(0.00893).epsilon(1e-3));  // the doubly shifted 1/T
  load_options flux_options = steps(28);
  flux_options.image_seq_len = 4096;  // 1024×1024: μ = max_shift
  const auto flux = load_scheduler_config(model_config("flux1_dev_dynamic_shift.json"), flux_options);
  load_options by_mu = steps(28);
  by_mu.mu = 1.15;
  CHECK(load_scheduler_config(model_config("flux1_dev_dynamic_shift.json"), by_mu).sigmas == flux.sigmas);
  const auto wan = load_scheduler_config(model_config("wan21_unipc_flow.json"), steps(50));
  CHECK(wan.flow);
  CHECK(wan.options.prediction == prediction_type::flow);
  CHECK(wan.unipc.path == grid_path::flow);
  CHECK(wan.model_times.front() == 999.0);
}

TEST_CASE("strength: img2img's first step, or LCM's shortened schedule", "[diffusers_config]") {
  load_options o = steps(50);
  o.strength = 0.6;
  CHECK(load_scheduler_config(model_config("sd21_ddim_v.json"), o).first_step == 20);
  o = steps(4);
  o.strength = 0.5;
  const auto lcm = load_scheduler_config(model_config("lcm_dreamshaper_v7.json"), o);
  CHECK(lcm.first_step == 0);
  CHECK(lcm.integer_timesteps.front() < 999);
}

TEST_CASE("a loaded DDIM and diffusers_torch_noise replay a seeded pipeline run end to end", "[diffusers_config]") {
  // SD 2.1's DDIM with eta = 1 on torch's generator: the noise source is the sampler's, drawing in diffusers' order,
  // and must give the same x as drawing every tensor up front and handing it over step by step.
  load_options o = steps(10);
  o.eta = 1.0;
  const auto l = load_scheduler_config(model_config("sd21_ddim_v.json"), o);
  const std::vector<std::size_t> shape{1, 4, 8, 8};
  auto model = [](const std::vector<float>& x, std::int64_t t) {
    std::vector<float> out(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) out[i] = 0.5f * x[i] + 0.001f * static_cast<float>(t);
    return out;
  };
  diffusers_torch_noise<float> noise(torch_generator(42), shape, l.noise_dtype(torch_dtype::float32));
  std::vector<float> x(256);
  noise.draw_initial(x, l.init_noise_sigma);
  l.get().sample(model, x, noise);

  torch_generator g(42);
  std::vector<float> y(256), z(256);
  g.randn(std::span<float>(y));
  std::vector<std::vector<float>> draws;
  for (std::size_t s = 0; s < l.get().num_steps(); ++s) {
    g.randn(std::span<float>(z));
    draws.push_back(z);
  }
  auto given = [&](std::span<float> out, noise_position at) {
    std::copy_n(draws.at(at.step).begin() + static_cast<std::ptrdiff_t>(at.first_element), out.size(), out.begin());
  };
  l.get().sample(model, y, given);
  CHECK(x == y);
  CHECK(l.draws_noise == std::vector<bool>(10, true));  // set_alpha_to_one = false: the last step is noisy too
}

TEST_CASE("Python's -Infinity / Infinity tokens load; NaN, out-of-range numbers and huge counts are refused by name",
          "[diffusers_config][errors]") {
  // diffusers saves lambda_min_clipped = -inf as the bare token -Infinity (Python's json), which JSON forbids.
  const loaded_scheduler dpm = parse_scheduler_config(
      R"({"_class_name": "DPMSolverMultistepScheduler", "lambda_min_clipped": -Infinity, "_note": "-Infinity stays"})",
      steps(10));
  CHECK(dpm.get().num_steps() == 10);
  CHECK_THROWS_WITH(
      parse_scheduler_config(R"({"_class_name": "DPMSolverMultistepScheduler", "lambda_min_clipped": NaN})", steps(10)),
      Catch::Contains("\"lambda_min_clipped\"") && Catch::Contains("not NaN"));
  // A number beyond double (nlohmann's out_of_range) is malformed JSON, named as such, not a raw nlohmann error.
  CHECK_THROWS_AS(parse_scheduler_config(R"({"_class_name": "DDIMScheduler", "beta_end": 1e400})", steps(10)),
                  std::invalid_argument);
  CHECK_THROWS_WITH(parse_scheduler_config(R"({"_class_name": "DDIMScheduler", "beta_end": 1e400})", steps(10)),
                    Catch::StartsWith("skipstep::parse_scheduler_config: the config text is not valid JSON"));
  // Counts: a table beyond 10^7 entries, an offset at or past T (it wrapped to negative model times), orders that
  // would narrow to a valid int, betas that do not match num_train_timesteps.
  CHECK_THROWS_WITH(load_scheduler_config(json{{"_class_name", "DDIMScheduler"},
                                               {"num_train_timesteps", 18446744073709551615ull}},
                                          steps(10)),
                    Catch::Contains("\"num_train_timesteps\"") && Catch::Contains("[1, 10000000]"));
  for (const char* cls : {"PNDMScheduler", "DDIMScheduler", "DPMSolverMultistepScheduler"})
    CHECK_THROWS_WITH(load_scheduler_config(json{{"_class_name", cls}, {"timestep_spacing", "leading"},
                                                 {"steps_offset", 18446744073709551615ull}},
                                            steps(10)),
                      Catch::Contains("\"steps_offset\"") && Catch::Contains("below num_train_timesteps = 1000"));
  CHECK_THROWS_WITH(load_scheduler_config(json{{"_class_name", "UniPCMultistepScheduler"},
                                               {"solver_order", 4294967298ull}},
                                          steps(10)),
                    Catch::Contains("\"solver_order\" = 4294967298") && Catch::Contains("supported: 1, 2 or 3"));
  CHECK_THROWS_WITH(load_scheduler_config(json{{"_class_name", "DDPMScheduler"}, {"num_train_timesteps", 1000},
                                               {"trained_betas", std::vector<double>(500, 0.01)}},
                                          steps(10)),
                    Catch::Contains("\"trained_betas\"") && Catch::Contains("(got 500)"));
}

TEST_CASE("strength below 1 is refused for solvers with history, at load time", "[diffusers_config][errors]") {
  load_options o = steps(20);
  o.strength = 0.6;
  for (const char* cls : {"DPMSolverMultistepScheduler", "UniPCMultistepScheduler", "HeunDiscreteScheduler"})
    CHECK_THROWS_WITH(load_scheduler_config(json{{"_class_name", cls}}, o),
                      Catch::Contains("options.strength = 0.6") && Catch::Contains(cls));
  CHECK(load_scheduler_config(json{{"_class_name", "EulerDiscreteScheduler"}}, o).first_step > 0);
}
