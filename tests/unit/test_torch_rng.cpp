// torch's CPU generator against the stored torch output (tests/data/torch_rng by default, or
// $SKIPSTEP_TORCH_RNG_DIR): every file of the folder is discovered and recognised by its content, never by
// name, and every stored value is compared bit for bit (sha256_le where only a digest and the first/last
// values are stored). Prints
//   torch rng: V values compared, M mismatches
// V = stored values compared + values covered only by a compared sha256_le; M = mismatching values +
// mismatching digests (+ files of an unknown kind). Then diffusers' noise order (diffusers_torch_noise) on
// the same data and on the torch_generator cases of the diffusers reference data, and its order and argument
// rules.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include "check_error.hpp"
#include "sha256.hpp"
#include "skipstep/interop/diffusers_torch_noise.hpp"
#include "skipstep/interop/torch_generator.hpp"
#include "skipstep/parallel.hpp"
#include "skipstep/step/ddim.hpp"

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;  // key order matters: the randint ranges were drawn in file order
using skipstep::diffusers_torch_noise;
using skipstep::torch_dtype;
using skipstep::torch_generator;

namespace {

#ifndef SKIPSTEP_DEFAULT_TORCH_RNG_DIR
#define SKIPSTEP_DEFAULT_TORCH_RNG_DIR "tests/data/torch_rng"
#endif
#ifndef SKIPSTEP_DEFAULT_REFERENCE_DIR
#define SKIPSTEP_DEFAULT_REFERENCE_DIR "tests/data/diffusers"
#endif

fs::path env_or(const char* name, const char* fallback) {
  if (const char* env = std::getenv(name); env && *env)
    return env;
  return fallback;
}

fs::path torch_rng_dir() {
  return env_or("SKIPSTEP_TORCH_RNG_DIR", SKIPSTEP_DEFAULT_TORCH_RNG_DIR);
}

json load(const fs::path& p) {
  std::ifstream in(p);
  REQUIRE(in.good());
  return json::parse(in);
}

/// Every data file of the folder (sorted), the index (which lists files rather than holding values) excluded.
std::vector<fs::path> data_files(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".json")
      files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

bool is_index(const json& j) {
  return j.contains("files") && !j.contains("draws");
}

torch_dtype parse_dtype(const std::string& name) {
  if (name == "float16")
    return torch_dtype::float16;
  if (name == "float32")
    return torch_dtype::float32;
  if (name == "float64")
    return torch_dtype::float64;
  FAIL("unknown dtype " << name);
  return torch_dtype::float32;
}

std::size_t numel_of(const json& shape) {
  std::size_t n = 1;
  for (const auto& d : shape)
    n *= d.get<std::size_t>();
  return n;
}

/// A drawn tensor as bit patterns (float16: 16 bits, float32: 32, float64: 64).
struct drawn_tensor {
  torch_dtype dtype = torch_dtype::float32;
  std::vector<std::uint64_t> bits;
};

std::size_t byte_width(torch_dtype d) {
  return d == torch_dtype::float16 ? 2 : d == torch_dtype::float32 ? 4 : 8;
}

/// torch.randn(n, generator=g, dtype) as bits.
drawn_tensor randn_bits(torch_generator& g, torch_dtype dtype, std::size_t n) {
  drawn_tensor t{dtype, std::vector<std::uint64_t>(n)};
  switch (dtype) {
    case torch_dtype::float16: {
      std::vector<std::uint16_t> v(n);
      g.randn_float16(v);
      std::copy(v.begin(), v.end(), t.bits.begin());
      break;
    }
    case torch_dtype::float32: {
      std::vector<float> v(n);
      g.randn(v);
      for (std::size_t i = 0; i < n; ++i)
        t.bits[i] = std::bit_cast<std::uint32_t>(v[i]);
      break;
    }
    case torch_dtype::float64: {
      std::vector<double> v(n);
      g.randn(v);
      for (std::size_t i = 0; i < n; ++i)
        t.bits[i] = std::bit_cast<std::uint64_t>(v[i]);
      break;
    }
  }
  return t;
}

/// Values held as doubles (exact images of `dtype` values) as bits of `dtype`.
drawn_tensor bits_of(std::span<const double> values, torch_dtype dtype) {
  drawn_tensor t{dtype, std::vector<std::uint64_t>(values.size())};
  for (std::size_t i = 0; i < values.size(); ++i) {
    const double v = values[i];
    t.bits[i] = dtype == torch_dtype::float64   ? std::bit_cast<std::uint64_t>(v)
                : dtype == torch_dtype::float32 ? std::bit_cast<std::uint32_t>(static_cast<float>(v))
                                                : skipstep::detail::float_to_half_bits(static_cast<float>(v));
  }
  return t;
}

std::string sha256_le(const drawn_tensor& t) {
  const std::size_t w = byte_width(t.dtype);
  std::vector<std::uint8_t> bytes;
  bytes.reserve(t.bits.size() * w);
  for (const std::uint64_t b : t.bits)
    for (std::size_t k = 0; k < w; ++k)
      bytes.push_back(static_cast<std::uint8_t>(b >> (8 * k)));
  return skipstep_test::sha256_hex(bytes);
}

std::string hex(std::uint64_t bits, torch_dtype dtype) {
  std::string s(2 * byte_width(dtype), '0');
  for (std::size_t i = s.size(); i-- > 0; bits >>= 4)
    s[i] = "0123456789abcdef"[bits & 0xFu];
  return s;
}

/// Counts of the comparisons, and the first failures for the log.
struct tally {
  std::uint64_t compared = 0;
  std::uint64_t mismatches = 0;
  std::vector<std::string> failures;
  void fail(const std::string& what) {
    ++mismatches;
    if (failures.size() < 20)
      failures.push_back(what);
  }
  void check(bool ok, const std::string& what) {
    ++compared;
    if (!ok)
      fail(what);
  }
};

/// Compares one stored tensor entry (values, or head/tail, and sha256_le) with `t`.
void compare_entry(const json& entry, const drawn_tensor& t, tally& tl, const std::string& where) {
  const std::size_t n = t.bits.size();
  if (entry.contains("numel") && entry.at("numel").get<std::size_t>() != n) {
    tl.fail(where + ": numel " + std::to_string(n) + " != stored " + entry.at("numel").dump());
    return;
  }
  std::size_t direct = 0;
  auto compare_run = [&](const json& stored, std::size_t first, const char* key) {
    if (first + stored.size() > n) {
      tl.fail(where + ": " + key + " longer than the tensor");
      return;
    }
    for (std::size_t i = 0; i < stored.size(); ++i) {
      const std::string expected = stored[i].get<std::string>();
      const std::string got = hex(t.bits[first + i], t.dtype);
      tl.check(got == expected,
               where + ": element " + std::to_string(first + i) + " is " + got + ", torch " + expected);
    }
    direct += stored.size();
  };
  const bool full = entry.contains("values");
  if (full)
    compare_run(entry.at("values"), 0, "values");
  if (entry.contains("head"))
    compare_run(entry.at("head"), 0, "head");
  if (entry.contains("tail"))
    compare_run(entry.at("tail"), n - std::min(n, entry.at("tail").size()), "tail");
  if (entry.contains("sha256_le")) {
    if (sha256_le(t) != entry.at("sha256_le").get<std::string>())
      tl.fail(where + ": sha256_le differs");
    if (!full)
      tl.compared += n > direct ? n - direct : 0;  // the values only the digest covers
  } else if (!full) {
    tl.fail(where + ": neither values nor sha256_le stored");
  }
}

/// Compares the SHA-256 of t's little-endian bytes with a stored digest.
void check_digest(const drawn_tensor& t, const json& digest, tally& tl, const std::string& where) {
  tl.check(sha256_le(t) == digest.get<std::string>(), where + ": sha256_le differs");
}

std::uint64_t seed_of(const json& j) {
  return j.at("seed").get<std::uint64_t>();
}

/// A draw's dtype: its own "dtype", else the file's.
torch_dtype dtype_of(const json& file, const json& draw) {
  return parse_dtype(draw.value("dtype", file.value("dtype", std::string("(none)"))));
}

/// randn_<dtype>_seed<S>-style: a fresh generator per draw entry.
void check_fresh_draws(const json& f, tally& tl, const std::string& name) {
  for (std::size_t k = 0; k < f.at("draws").size(); ++k) {
    const json& d = f.at("draws")[k];
    torch_generator g(seed_of(f));
    const torch_dtype dtype = dtype_of(f, d);
    compare_entry(d, randn_bits(g, dtype, numel_of(d.at("shape"))), tl, name + " draw " + std::to_string(k));
  }
}

/// randn_sequence-style: consecutive draws on one generator, with the cached normal after each.
void check_sequence(const json& f, tally& tl, const std::string& name) {
  torch_generator g(seed_of(f));
  for (std::size_t k = 0; k < f.at("draws").size(); ++k) {
    const json& d = f.at("draws")[k];
    const torch_dtype dtype = dtype_of(f, d);
    const std::string where = name + " draw " + std::to_string(k);
    compare_entry(d, randn_bits(g, dtype, numel_of(d.at("shape"))), tl, where);
    if (d.contains("cached_normal_after"))
      tl.check(g.has_cached_normal() == d.at("cached_normal_after").get<bool>(),
               where + ": cached normal after");
  }
}

/// randn_generator_list-style: diffusers' randn_tensor with a list of generators, through
/// diffusers_torch_noise.
void check_generator_list(const json& f, tally& tl, const std::string& name) {
  const auto seeds = f.at("seeds").get<std::vector<std::uint64_t>>();
  const auto shape = f.at("shape").get<std::vector<std::size_t>>();
  const torch_dtype dtype = parse_dtype(f.at("dtype").get<std::string>());
  auto source = diffusers_torch_noise<double>::from_seeds(seeds, shape, dtype);
  std::vector<double> x(numel_of(f.at("shape")));
  source.draw_initial(x, 1.0, dtype);
  compare_entry(f, bits_of(x, dtype), tl, name);
}

/// uniform_int-style: rand float32, rand float64, randint ranges on one generator (file order), and raw
/// words.
void check_uniform_int(const json& f, tally& tl, const std::string& name) {
  torch_generator g(seed_of(f));
  const std::regex first_words(R"(mt19937_first_(\d+)_u32)"), word_range(R"(mt19937_u32_(\d+)_to_(\d+))");
  const std::regex range_key(R"(\[(-?\d+),(-?\d+)\))");
  for (const auto& [key, value] : f.items()) {
    std::smatch m;
    if (key.find("rand_float32") != std::string::npos) {
      std::vector<float> u(value.size());
      g.rand(u);
      drawn_tensor t{torch_dtype::float32, {}};
      for (const float v : u)
        t.bits.push_back(std::bit_cast<std::uint32_t>(v));
      compare_entry(json{{"values", value}}, t, tl, name + " " + key);
    } else if (key.find("rand_float64") != std::string::npos) {
      std::vector<double> u(value.size());
      g.rand(u);
      drawn_tensor t{torch_dtype::float64, {}};
      for (const double v : u)
        t.bits.push_back(std::bit_cast<std::uint64_t>(v));
      compare_entry(json{{"values", value}}, t, tl, name + " " + key);
    } else if (key.find("randint_int64") != std::string::npos) {
      for (const auto& [range, expected] : value.items()) {
        REQUIRE(std::regex_match(range, m, range_key));
        std::vector<std::int64_t> r(expected.size());
        g.randint(r, std::stoll(m[1].str()), std::stoll(m[2].str()));
        for (std::size_t i = 0; i < r.size(); ++i)
          tl.check(
              r[i] == expected[i].get<std::int64_t>(),
              name + " randint " + range + " element " + std::to_string(i) + " is " + std::to_string(r[i]));
      }
    } else if (std::regex_match(key, m, first_words) || std::regex_match(key, m, word_range)) {
      torch_generator raw(seed_of(f));
      std::mt19937 standard(static_cast<std::uint32_t>(seed_of(f)));  // the engine torch's equals
      const std::uint64_t first = m.size() == 3 ? std::stoull(m[1].str()) : 0;
      for (std::uint64_t i = 0; i < first; ++i) {
        (void)raw.random();
        standard();
      }
      for (std::size_t i = 0; i < value.size(); ++i) {
        const std::uint32_t expected = value[i].get<std::uint32_t>();
        const std::uint32_t got = raw.random();
        tl.check(got == expected, name + " " + key + " word " + std::to_string(first + i));
        tl.check(static_cast<std::uint32_t>(standard()) == expected, name + " " + key + " std::mt19937 word");
      }
    }
  }
}

}  // namespace

TEST_CASE("torch CPU generator reproduces every stored torch value bit for bit", "[torch_rng]") {
  const fs::path dir = torch_rng_dir();
  INFO("torch_rng directory: " << dir);
  REQUIRE(fs::is_directory(dir));
  tally tl;
  for (const fs::path& file : data_files(dir)) {
    const json f = load(file);
    const std::string name = file.filename().string();
    if (is_index(f))
      continue;
    const std::string what = f.value("what", std::string());
    if (f.contains("draws") && what.find("fresh generator") != std::string::npos)
      check_fresh_draws(f, tl, name);
    else if (f.contains("draws"))
      check_sequence(f, tl, name);
    else if (f.contains("seeds") && f.contains("per_item_shape"))
      check_generator_list(f, tl, name);
    else if (f.contains("seed") && what.find("torch.rand") != std::string::npos)
      check_uniform_int(f, tl, name);
    else
      tl.fail(name + ": unknown kind of file");
  }
  for (const std::string& s : tl.failures)
    std::cout << "  mismatch: " << s << "\n";
  std::cout << "torch rng: " << tl.compared << " values compared, " << tl.mismatches << " mismatches"
            << std::endl;
  CHECK(tl.compared > 0);
  CHECK(tl.mismatches == 0);
}

TEST_CASE("diffusers_torch_noise replays one-generator sequences: x_T, then one whole draw per step",
          "[torch_rng]") {
  // Every stored sequence whose draws share one shape and dtype is a pipeline run: draw 0 is x_T, draw k the
  // noise of step k - 1. Blocks are requested like the sampler does (256 elements), in reverse order within a
  // step.
  std::size_t used = 0;
  for (const fs::path& file : data_files(torch_rng_dir())) {
    const json f = load(file);
    if (is_index(f) || !f.contains("draws") ||
        f.value("what", std::string()).find("fresh") != std::string::npos)
      continue;
    const json& draws = f.at("draws");
    bool uniform = draws.size() >= 2;
    for (const json& d : draws)
      uniform = uniform && d.at("shape") == draws[0].at("shape") &&
                d.value("dtype", std::string()) == draws[0].value("dtype", std::string());
    if (!uniform)
      continue;
    ++used;
    const auto shape = draws[0].at("shape").get<std::vector<std::size_t>>();
    const torch_dtype dtype = dtype_of(f, draws[0]);
    diffusers_torch_noise<double> source(torch_generator(seed_of(f)), shape, dtype);
    const std::size_t n = numel_of(draws[0].at("shape")), batch = source.batch_size(),
                      per = source.sample_size();
    tally tl;
    std::vector<double> x(n);
    source.draw_initial(x, 1.0, dtype);
    compare_entry(draws[0], bits_of(x, dtype), tl, file.filename().string() + " x_T");
    for (std::size_t k = 1; k < draws.size(); ++k) {
      std::vector<double> z(n);
      for (std::size_t s = batch; s-- > 0;)
        for (std::size_t j = (per - 1) / 256 * 256 + 256; j >= 256; j -= 256) {
          const std::size_t begin = j - 256, len = std::min<std::size_t>(256, per - begin);
          source(std::span<double>(z.data() + s * per + begin, len),
                 skipstep::noise_position{s, k - 1, begin});
        }
      compare_entry(draws[k], bits_of(z, dtype), tl,
                    file.filename().string() + " step " + std::to_string(k - 1));
    }
    INFO(file.filename().string() << ": " << (tl.failures.empty() ? std::string() : tl.failures.front()));
    CHECK(tl.compared > 0);
    CHECK(tl.mismatches == 0);
  }
  CHECK(used > 0);
}

TEST_CASE("diffusers_torch_noise reproduces the diffusers torch_generator cases' x_T and every draw",
          "[torch_rng]") {
  // The torch_generator group of the diffusers reference data (recognised by rng.algorithm): x_T and each
  // step's draw (dtype, step index, generator list, init_noise_sigma from the file), the generators' words
  // used and cached normals after each draw.
  const fs::path dir = env_or("SKIPSTEP_REFERENCE_DIR", SKIPSTEP_DEFAULT_REFERENCE_DIR) / "cases";
  REQUIRE(fs::is_directory(dir));
  std::size_t used = 0;
  for (const fs::path& file : data_files(dir)) {
    const json c = load(file);
    if (!c.contains("rng") || c.at("rng").value("algorithm", std::string()) != "torch-cpu-generator/1")
      continue;
    ++used;
    const std::string name = c.at("case").get<std::string>();
    INFO(name);
    const json& draws = c.at("torch_draws");
    const auto seeds = c.at("rng").at("seeds").get<std::vector<std::uint64_t>>();
    const auto shape = c.at("shape").get<std::vector<std::size_t>>();
    const torch_dtype latent_dtype = parse_dtype(draws[0].at("dtype").get<std::string>());
    const torch_dtype noise_dtype =
        draws.size() > 1 ? parse_dtype(draws[1].at("dtype").get<std::string>()) : torch_dtype::float32;
    const std::uint64_t first_step = draws.size() > 1 ? draws[1].at("step").get<std::uint64_t>() : 0;
    auto source = diffusers_torch_noise<double>::from_seeds(seeds, shape, noise_dtype, first_step);
    REQUIRE(source.num_generators() == seeds.size());
    const std::size_t n = numel_of(c.at("shape"));
    tally tl;
    auto check_generators = [&](const json& d, const std::string& where) {
      for (std::size_t g = 0; g < seeds.size(); ++g) {
        if (d.contains("cached_normal_after"))
          tl.check(source.generator(g).has_cached_normal() == d.at("cached_normal_after")[g].get<bool>(),
                   where + ": cached normal of generator " + std::to_string(g));
        if (d.contains("mt19937_u32_consumed_after"))
          tl.check(
              source.generator(g).words_used() == d.at("mt19937_u32_consumed_after")[g].get<std::uint64_t>(),
              where + ": words used by generator " + std::to_string(g));
      }
    };
    // x_T: the latents times init_noise_sigma (a float32 product), and the unscaled latents of draw 0.
    std::vector<double> x(n), latents(n);
    source.draw_initial(x, c.at("init_noise_sigma").get<double>(), latent_dtype);
    const auto stored_x = c.at("x_T").get<std::vector<double>>();
    for (std::size_t i = 0; i < n; ++i)
      tl.check(std::bit_cast<std::uint64_t>(x[i]) == std::bit_cast<std::uint64_t>(stored_x[i]),
               "x_T element " + std::to_string(i));
    check_generators(draws[0], "draw 0");
    auto unscaled = diffusers_torch_noise<double>::from_seeds(seeds, shape, latent_dtype);
    unscaled.draw_initial(latents, 1.0, latent_dtype);
    check_digest(bits_of(latents, latent_dtype), draws[0].at("sha256_le"), tl, "draw 0");
    for (std::size_t k = 1; k < draws.size(); ++k) {
      const json& d = draws[k];
      REQUIRE(parse_dtype(d.at("dtype").get<std::string>()) == noise_dtype);
      const auto step = d.at("step").get<std::uint64_t>();
      std::vector<double> z(n);
      for (std::size_t s = 0; s < source.batch_size(); ++s)
        for (std::size_t j = 0; j < source.sample_size(); j += 256) {
          const std::size_t len = std::min<std::size_t>(256, source.sample_size() - j);
          source(std::span<double>(z.data() + s * source.sample_size() + j, len),
                 skipstep::noise_position{s, step, j});
        }
      const auto stored = d.at("values").get<std::vector<double>>();
      REQUIRE(stored.size() == n);
      for (std::size_t i = 0; i < n; ++i)
        tl.check(std::bit_cast<std::uint64_t>(z[i]) == std::bit_cast<std::uint64_t>(stored[i]),
                 "draw " + std::to_string(k) + " element " + std::to_string(i));
      check_digest(bits_of(z, noise_dtype), d.at("sha256_le"), tl, "draw " + std::to_string(k));
      check_generators(d, "draw " + std::to_string(k));
    }
    INFO((tl.failures.empty() ? std::string() : tl.failures.front()));
    CHECK(tl.compared > 0);
    CHECK(tl.mismatches == 0);
  }
  CHECK(used > 0);
}

TEST_CASE("diffusers_torch_noise serves steps in order only and rejects bad requests", "[torch_rng]") {
  using skipstep::noise_position;
  const std::vector<std::size_t> shape{2, 3, 4};
  diffusers_torch_noise<float> source(torch_generator(7), shape, torch_dtype::float32);
  std::vector<float> block(12);
  // The first draw must be first_step (0): step 1 first would skip step 0.
  CHECK_ERROR(source(block, noise_position{0, 1, 0}), std::invalid_argument, "diffusers_torch_noise",
              "at.step", "got 1");
  CHECK_FALSE(source.has_step());
  source(block, noise_position{1, 0, 0});
  const std::vector<float> step0(source.current_noise().begin(), source.current_noise().end());
  // Same step again: served from the buffer, nothing drawn.
  const std::uint64_t words = source.generator(0).words_used();
  source(std::span<float>(block).first(5), noise_position{0, 0, 7});
  CHECK(source.generator(0).words_used() == words);
  CHECK(std::equal(block.begin(), block.begin() + 5, step0.begin() + 7));
  CHECK_ERROR(source(block, noise_position{0, 2, 0}), std::invalid_argument, "diffusers_torch_noise",
              "at.step",
              "got 2");  // skips step 1
  source(block, noise_position{0, 1, 0});
  CHECK_ERROR(source(block, noise_position{0, 0, 0}), std::invalid_argument, "diffusers_torch_noise",
              "at.step",
              "got 0");  // revisits step 0
  std::vector<float> x_t(24);
  CHECK_ERROR(source.draw_initial(x_t), std::invalid_argument, "draw_initial", "call order",
              "got 1");  // x_T after a step
  CHECK_ERROR(source(block, noise_position{2, 1, 0}), std::invalid_argument, "diffusers_torch_noise",
              "at.sample", "got 2");
  CHECK_ERROR(source(block, noise_position{0, 1, 1}), std::invalid_argument, "diffusers_torch_noise",
              "at.first_element", "got 1");
  // A later first step (img2img): the first draw must be that step.
  diffusers_torch_noise<double> late(torch_generator(7), shape, torch_dtype::float64, 5);
  std::vector<double> z(12);
  CHECK_ERROR(late(z, noise_position{0, 0, 0}), std::invalid_argument, "diffusers_torch_noise", "at.step",
              "got 0");
  late(z, noise_position{0, 5, 0});
  CHECK(late.current_step() == 5);
  CHECK(late.next_step() == 6);
}

TEST_CASE("diffusers_torch_noise follows randn_tensor's generator-list rules", "[torch_rng]") {
  using skipstep::noise_position;
  const std::vector<std::size_t> shape{3, 5};
  // A list shorter than the batch: diffusers raises IndexError; we name the argument and its value.
  CHECK_ERROR(
      diffusers_torch_noise<float>::from_seeds(std::vector<std::uint64_t>{1, 2}, shape, torch_dtype::float32),
      std::invalid_argument, "diffusers_torch_noise", "generators.size()", "got 2");
  CHECK_ERROR(diffusers_torch_noise<float>(std::vector<torch_generator>{}, shape, torch_dtype::float32),
              std::invalid_argument, "diffusers_torch_noise", "generators.size()", "got 0");
  CHECK_ERROR(
      diffusers_torch_noise<float>(torch_generator(1), std::vector<std::size_t>{}, torch_dtype::float32),
      std::invalid_argument, "diffusers_torch_noise", "shape.size()", "got 0");
  CHECK_ERROR(
      diffusers_torch_noise<float>(torch_generator(1), std::vector<std::size_t>{2, 0}, torch_dtype::float32),
      std::invalid_argument, "diffusers_torch_noise", "shape[1]", "got 0");
  std::vector<float> short_x(14);
  CHECK_ERROR(
      diffusers_torch_noise<float>(torch_generator(1), shape, torch_dtype::float32).draw_initial(short_x),
      std::invalid_argument, "draw_initial", "out.size()", "got 14");

  // A list of one generator is one generator: one randn of all 15 numbers.
  auto single =
      diffusers_torch_noise<float>::from_seeds(std::vector<std::uint64_t>{5}, shape, torch_dtype::float32);
  torch_generator direct(5);
  std::vector<float> x(15), expected(15);
  single.draw_initial(x);
  direct.randn(expected);
  CHECK(x == expected);

  // A list: item i is its own randn of 5 on generator i (scalar path, odd: each leaves a cached normal, which
  // that generator's next step draw starts with); a generator beyond the batch is never used.
  auto list = diffusers_torch_noise<float>::from_seeds(std::vector<std::uint64_t>{5, 6, 7, 8}, shape,
                                                       torch_dtype::float32);
  list.draw_initial(x);
  std::vector<float> z(5);
  list(z, noise_position{1, 0, 0});
  for (std::size_t i = 0; i < 3; ++i) {
    torch_generator g(5 + i);
    std::vector<float> item(5), next(5);
    g.randn(item);
    CHECK(g.has_cached_normal());
    g.randn(next);
    CHECK(std::equal(item.begin(), item.end(), x.begin() + static_cast<std::ptrdiff_t>(5 * i)));
    CHECK(std::equal(next.begin(), next.end(),
                     list.current_noise().begin() + static_cast<std::ptrdiff_t>(5 * i)));
    CHECK(list.generator(i).words_used() == g.words_used());
  }
  CHECK(list.generator(3).words_used() == 0);
}

TEST_CASE("torch_generator: seeding, argument checks and the float helpers", "[torch_rng]") {
  torch_generator g(std::uint64_t{1} << 32);
  CHECK(g.initial_seed() == (std::uint64_t{1} << 32));
  torch_generator zero(0);
  CHECK(g.random64() == zero.random64());  // only the low 32 bits of the seed are used
  CHECK(g.words_used() == 2);
  g.manual_seed(3);
  CHECK(g.words_used() == 0);
  std::vector<std::int64_t> r(3);
  CHECK_ERROR(g.randint(r, 5, 5), std::invalid_argument, "torch_generator::randint", "high", "got 5");

  // The FMA emulation used without hardware FMA is correctly rounded: compare with std::fma on random
  // operands of the magnitudes the kernel sees and on products whose sum cancels.
  std::mt19937 rng(12345);
  std::uniform_real_distribution<float> unit(-2.0f, 2.0f);
  std::size_t differing = 0;
  for (int i = 0; i < 200000; ++i) {
    const float a = unit(rng), b = unit(rng);
    const float c = i % 2 == 0 ? unit(rng) : -(a * b) * (1.0f + unit(rng) * 1e-6f);
    if (std::bit_cast<std::uint32_t>(skipstep::detail::torch_cpu::fused_multiply_add_emulated(a, b, c)) !=
        std::bit_cast<std::uint32_t>(std::fma(a, b, c)))
      ++differing;
  }
  CHECK(differing == 0);

  // binary16: every finite pattern survives the round trip; a value halfway between two neighbours goes to
  // the even one.
  using skipstep::detail::float_to_half_bits;
  using skipstep::detail::half_bits_to_float;
  std::size_t bad = 0;
  for (std::uint32_t h = 0; h < 0x10000u; ++h) {
    const auto bits = static_cast<std::uint16_t>(h);
    if ((bits & 0x7C00u) == 0x7C00u)
      continue;  // Inf / NaN
    if (float_to_half_bits(half_bits_to_float(bits)) != bits)
      ++bad;
    if ((bits & 0x7FFFu) == 0x7BFFu)
      continue;  // the largest finite value has no finite neighbour above
    const double mid = (static_cast<double>(half_bits_to_float(bits)) +
                        static_cast<double>(half_bits_to_float(static_cast<std::uint16_t>(bits + 1)))) /
                       2;
    const auto even = static_cast<std::uint16_t>((bits & 1u) == 0 ? bits : bits + 1);
    if (float_to_half_bits(static_cast<float>(mid)) != even)
      ++bad;
  }
  CHECK(bad == 0);
  CHECK(float_to_half_bits(65520.0f) == 0x7C00u);
  CHECK(float_to_half_bits(std::numeric_limits<float>::quiet_NaN()) == 0x7E00u);
}

TEST_CASE("torch float32 block kernels: the AVX2 + FMA kernel equals the portable reference bit for bit",
          "[torch_rng]") {
  using namespace skipstep::detail::torch_cpu;
  if (best_block_kernel() != block_kernel::avx2_fma)
    WARN("no AVX2 + FMA kernel on this build/CPU: portable only");
  // Uniforms as torch makes them (24 bits), plus the extremes of the grid: 0 and 1 - 2^-24 for u1 and u2.
  constexpr std::size_t blocks = 1 << 16;
  std::vector<float> portable(16 * blocks);
  std::mt19937 rng(2024);
  for (float& u : portable)
    u = static_cast<float>(rng() & 0xFFFFFFu) * 0x1p-24f;
  for (std::size_t j = 0; j < 16; ++j) {
    portable[j] = 0.0f;
    portable[16 + j] = 1.0f - 0x1p-24f;
    portable[32 + j] = static_cast<float>(j) / 16.0f;  // angles on octant boundaries
  }
  std::vector<float> fast = portable;
  normal_blocks16(portable.data(), blocks, block_kernel::portable);
  normal_blocks16(fast.data(), blocks, block_kernel::avx2_fma);
  std::size_t differing = 0;
  for (std::size_t i = 0; i < portable.size(); ++i)
    differing += std::bit_cast<std::uint32_t>(portable[i]) != std::bit_cast<std::uint32_t>(fast[i]);
  CHECK(differing == 0);
}

TEST_CASE("diffusers_torch_noise under parallel_apply_step gives the serial run's bits", "[torch_rng]") {
  // The pool requests a step's blocks concurrently and in any order; the first one draws the whole tensor.
  using namespace skipstep;
  const affine_step noisy = ddim_step(prediction_type::epsilon, 0.3, 0.6, sigma_choice{0.4, 0.4});
  const std::vector<std::size_t> shape{2, 4, 128, 128};  // 131072 elements: above parallel_step_min_elements
  const std::size_t n = 2 * 4 * 128 * 128;
  for (const std::size_t threads : {2u, 3u}) {
    thread_pool pool(threads);
    auto serial_noise = diffusers_torch_noise<float>::from_seeds(std::vector<std::uint64_t>{3, 4}, shape,
                                                                 torch_dtype::float32);
    auto parallel_noise = diffusers_torch_noise<float>::from_seeds(std::vector<std::uint64_t>{3, 4}, shape,
                                                                   torch_dtype::float32);
    std::vector<float> serial(n), parallel(n), model(n, 0.25f);
    serial_noise.draw_initial(serial);
    parallel_noise.draw_initial(parallel);
    for (std::size_t step = 0; step < 3; ++step) {
      apply_step<float>(noisy, serial, model, x0_processing::none(), 2, serial_noise, step);
      parallel_apply_step<float>(pool, noisy, std::span<float>(parallel), model, x0_processing::none(), 2,
                                 parallel_noise, step);
    }
    CHECK(serial == parallel);
    CHECK(parallel_noise.generator(1).words_used() == serial_noise.generator(1).words_used());
  }
}
