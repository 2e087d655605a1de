/// @file
/// skipstep_fashion_mnist: the DDIM paper's table (Song et al. 2021, Table 1) on a *learned* ε — a DDPM U-Net
/// trained on Fashion-MNIST (models/fashion_mnist/train.py), run through LibTorch from C++ — with FID in the feature
/// space of a classifier trained on the same data, its noise floor, wall times and the sampler's share of the time.
/// Run by ./scripts/demo-real; --help lists the options.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <xtensor/xadapt.hpp>
#include <xtensor/xnpy.hpp>
#include <zlib.h>

#include "metric.hpp"
#include "model.hpp"

#ifndef SKIPSTEP_FASHION_MNIST_MODELS
#define SKIPSTEP_FASHION_MNIST_MODELS "models/fashion_mnist"
#endif
#ifndef SKIPSTEP_FASHION_MNIST_DEFAULT_OUT
#define SKIPSTEP_FASHION_MNIST_DEFAULT_OUT "fashion-mnist-output"
#endif

namespace fm = fashion_mnist;
namespace fs = std::filesystem;

namespace {

struct policy {
  bool larger_variance;
  double eta;
};
const std::vector<policy> all_policies{{false, 0.0}, {false, 0.2}, {false, 0.5}, {false, 1.0}, {true, 0.0}};

std::string policy_tag(const policy& p) {
  if (p.larger_variance) return "sigmahat";
  std::ostringstream s;
  s << "eta" << p.eta;
  return s.str();
}

struct config {
  std::size_t n = 400;        ///< samples per cell, S < 1000
  std::size_t n1000 = 100;    ///< samples per cell, S = 1000
  std::size_t batch = 250;
  std::size_t workers = 2;
  std::uint64_t seed = 2026;
  std::vector<std::size_t> steps{10, 20, 50, 100, 1000};
  std::vector<policy> policies = all_policies;
  std::vector<fm::skip_type> skips{fm::skip_type::uniform, fm::skip_type::quadratic};
  bool quick = false;
  bool figure = true;
  bool bench = true;
  std::string models = SKIPSTEP_FASHION_MNIST_MODELS;
  std::string data = "/usr/share/datasets/fashion-mnist";
  fs::path out = SKIPSTEP_FASHION_MNIST_DEFAULT_OUT;
  std::string dump_npy;
};

const char* usage =
    "usage: skipstep_fashion_mnist [--quick] [--n N] [--n1000 N] [--batch B] [--workers W] [--seed S]\n"
    "                              [--models DIR] [--data DIR] [--out DIR] [--dump-npy DIR] [--no-figure]\n"
    "                              [--no-bench] [--steps LIST] [--policies LIST] [--skips LIST]\n"
    "  Samples S in {10,20,50,100,1000} x {eta 0, 0.2, 0.5, 1, sigma-hat} x {uniform, quadratic skip} with the\n"
    "  trained Fashion-MNIST DDPM (DDIM sampler, T = 1000, linear betas) and prints FID in the classifier's feature\n"
    "  space against the 10000 test images, with the noise floor (N real training images vs the test set) and the\n"
    "  seed spread, wall times, speed-ups and skipstep's share of the sampling time.\n"
    "  --n N        samples per cell for S < 1000 (default 400; --quick 50)\n"
    "  --n1000 N    samples per cell for S = 1000 (default 100; --quick 10). S = 1000 is the same timestep list for\n"
    "               both skips (every t), so it is sampled once and shown in both tables\n"
    "  --batch B    images per network call (default 250)\n"
    "  --workers W  std::threads running batches side by side, one intra-op thread each (default 2)\n"
    "  --seed S     x_T and noise: philox_normal(S) at stream = sample index (default 2026)\n"
    "  --models DIR eps_unet.pt and classifier.pt (default: the repository's models/fashion_mnist)\n"
    "  --data DIR   the Fashion-MNIST idx files (default /usr/share/datasets/fashion-mnist, Debian\n"
    "               dataset-fashion-mnist)\n"
    "  --out DIR    results.json and the PNG grids (default build/fashion-mnist-output)\n"
    "  --dump-npy DIR  every cell's samples as <skip>_S<S>_<eta0|eta0.2|eta0.5|eta1|sigmahat>.npy (N x 28 x 28\n"
    "               float32, clipped to [-1, 1]) plus results.json\n"
    "  --no-figure  no PNG (gnuplot); --no-bench: no forward benchmark\n"
    "  --steps LIST     a subset of the rows, comma-separated, each in 1..1000 (default 10,20,50,100,1000)\n"
    "  --policies LIST  a subset of eta0,eta0.2,eta0.5,eta1,sigmahat (default: all)\n"
    "  --skips LIST     a subset of uniform,quadratic (default: both)\n"
    "  The seed spread is measured on quadratic (else the first skip) S = 20 (else the first S), the first\n"
    "  policy.\n";

/// "a,b,c" -> {"a", "b", "c"}; an empty list or an empty item is refused, naming the option.
std::vector<std::string> split_list(const std::string& option, const std::string& list) {
  std::vector<std::string> items;
  std::string item;
  std::istringstream in(list);
  while (std::getline(in, item, ',')) {
    if (item.empty()) throw std::invalid_argument("skipstep_fashion_mnist: " + option + ": empty item in '" + list + "'");
    items.push_back(item);
  }
  if (items.empty() || list.back() == ',')
    throw std::invalid_argument("skipstep_fashion_mnist: " + option + ": empty item in '" + list + "'");
  return items;
}

config parse(int argc, char** argv) {
  config c;
  bool n_set = false, n1000_set = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument("skipstep_fashion_mnist: " + a + " needs a value");
      return argv[++i];
    };
    // A whole number >= 0, all of v (std::stoull alone accepts "5x" and wraps "-1").
    auto whole_number = [&](const std::string& v) -> unsigned long long {
      std::size_t used = 0;
      unsigned long long x = 0;
      try {
        if (!v.empty() && v.front() != '-') x = std::stoull(v, &used);
      } catch (const std::logic_error&) {
        used = 0;
      }
      if (used == 0 || used != v.size())
        throw std::invalid_argument("skipstep_fashion_mnist: " + a + " needs a whole number >= 0 (got '" + v + "')");
      return x;
    };
    auto count = [&](const std::string& v) {
      const unsigned long long x = whole_number(v);
      if (x == 0) throw std::invalid_argument("skipstep_fashion_mnist: " + a + " must be > 0 (got " + v + ")");
      return static_cast<std::size_t>(x);
    };
    if (a == "--help" || a == "-h") {
      std::cout << usage;
      std::exit(0);
    } else if (a == "--quick") {
      c.quick = true;
    } else if (a == "--n" || a == "--n1000") {
      const std::string v = value();
      const std::size_t n = count(v);
      if (n < 2) throw std::invalid_argument("skipstep_fashion_mnist: " + a + " must be >= 2 (got " + v + "): a "
                                             "cell's covariance needs two samples");
      (a == "--n" ? c.n : c.n1000) = n;
      (a == "--n" ? n_set : n1000_set) = true;
    } else if (a == "--batch") {
      c.batch = count(value());
    } else if (a == "--workers") {
      c.workers = count(value());
    } else if (a == "--seed") {
      c.seed = whole_number(value());
    } else if (a == "--models") {
      c.models = value();
    } else if (a == "--data") {
      c.data = value();
    } else if (a == "--out") {
      c.out = value();
    } else if (a == "--dump-npy") {
      c.dump_npy = value();
    } else if (a == "--no-figure") {
      c.figure = false;
    } else if (a == "--no-bench") {
      c.bench = false;
    } else if (a == "--steps") {
      c.steps.clear();
      for (const std::string& v : split_list(a, value())) {
        const std::size_t s = count(v);
        if (s > fm::num_train_timesteps)
          throw std::invalid_argument("skipstep_fashion_mnist: --steps: " + v + " is more than T = 1000");
        if (std::find(c.steps.begin(), c.steps.end(), s) != c.steps.end())
          throw std::invalid_argument("skipstep_fashion_mnist: --steps: " + v + " is listed twice");
        c.steps.push_back(s);
      }
    } else if (a == "--policies") {
      c.policies.clear();
      for (const std::string& v : split_list(a, value())) {
        const auto it = std::find_if(all_policies.begin(), all_policies.end(),
                                     [&](const policy& p) { return policy_tag(p) == v; });
        if (it == all_policies.end())
          throw std::invalid_argument("skipstep_fashion_mnist: --policies: unknown policy " + v +
                                      " (eta0, eta0.2, eta0.5, eta1, sigmahat)");
        if (std::any_of(c.policies.begin(), c.policies.end(), [&](const policy& p) { return policy_tag(p) == v; }))
          throw std::invalid_argument("skipstep_fashion_mnist: --policies: " + v + " is listed twice");
        c.policies.push_back(*it);
      }
    } else if (a == "--skips") {
      c.skips.clear();
      for (const std::string& v : split_list(a, value())) {
        if (v != "uniform" && v != "quadratic")
          throw std::invalid_argument("skipstep_fashion_mnist: --skips: unknown skip " + v + " (uniform, quadratic)");
        const fm::skip_type k = v == "uniform" ? fm::skip_type::uniform : fm::skip_type::quadratic;
        if (std::find(c.skips.begin(), c.skips.end(), k) != c.skips.end())
          throw std::invalid_argument("skipstep_fashion_mnist: --skips: " + v + " is listed twice");
        c.skips.push_back(k);
      }
    } else {
      throw std::invalid_argument("skipstep_fashion_mnist: unknown option " + a + " (see --help)");
    }
  }
  if (c.quick) {
    if (!n_set) c.n = 50;
    if (!n1000_set) c.n1000 = 10;
  }
  return c;
}

/// An idx file of uint8 images (gzip), as floats in [-1, 1].
std::vector<float> load_images(const std::string& path, std::size_t& count) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error("skipstep_fashion_mnist: cannot open " + path +
                                   " (Debian: apt-get install dataset-fashion-mnist, or --data DIR)");
  unsigned char header[16];
  if (gzread(f, header, 16) != 16) throw std::runtime_error("skipstep_fashion_mnist: short header in " + path);
  auto be = [&](int k) {
    return (std::size_t(header[k]) << 24) | (std::size_t(header[k + 1]) << 16) | (std::size_t(header[k + 2]) << 8) |
           std::size_t(header[k + 3]);
  };
  if (be(0) != 0x803 || be(8) != 28 || be(12) != 28)
    throw std::runtime_error("skipstep_fashion_mnist: " + path + " is not a 28x28 idx3 image file");
  count = be(4);
  std::vector<unsigned char> raw(count * fm::image_size);
  if (gzread(f, raw.data(), static_cast<unsigned>(raw.size())) != static_cast<int>(raw.size()))
    throw std::runtime_error("skipstep_fashion_mnist: short data in " + path);
  gzclose(f);
  std::vector<float> x(raw.size());
  for (std::size_t i = 0; i < raw.size(); ++i) x[i] = static_cast<float>(raw[i]) / 127.5f - 1.0f;
  return x;
}

std::vector<int> load_labels(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error("skipstep_fashion_mnist: cannot open " + path);
  unsigned char header[8];
  if (gzread(f, header, 8) != 8) throw std::runtime_error("skipstep_fashion_mnist: short header in " + path);
  const std::size_t n = (std::size_t(header[4]) << 24) | (std::size_t(header[5]) << 16) |
                        (std::size_t(header[6]) << 8) | std::size_t(header[7]);
  std::vector<unsigned char> raw(n);
  if (gzread(f, raw.data(), static_cast<unsigned>(n)) != static_cast<int>(n))
    throw std::runtime_error("skipstep_fashion_mnist: short data in " + path);
  gzclose(f);
  return {raw.begin(), raw.end()};
}

std::string policy_label(const policy& p) {
  if (p.larger_variance) return "σ̂";
  std::ostringstream s;
  s << "η=" << p.eta;
  return s.str();
}
std::string skip_name(fm::skip_type k) { return k == fm::skip_type::uniform ? "uniform" : "quadratic"; }

struct cell_result {
  fm::skip_type skip;
  std::size_t steps;
  policy pol;
  std::size_t n;
  double fid;
  double kid;
  fm::cell_timing timing;
  std::vector<float> samples;
};

double mean(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / double(v.size()); }
double stdev(const std::vector<double>& v) {
  const double m = mean(v);
  double s = 0.0;
  for (double x : v) s += (x - m) * (x - m);
  return v.size() > 1 ? std::sqrt(s / double(v.size() - 1)) : 0.0;
}

std::string fmt(double v, int prec) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(prec) << v;
  return s.str();
}

/// A tile of rows × cols samples (each 28 × 28) as one (rows·29 − 1) × (cols·29 − 1) float image in [0, 1], a
/// one-pixel white gap between samples, written as raw float32 for gnuplot's `binary array`.
void write_tile(const fs::path& file, const float* samples, std::size_t rows, std::size_t cols) {
  const std::size_t h = rows * 29 - 1, w = cols * 29 - 1;
  std::vector<float> img(h * w, 1.0f);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c) {
      const float* s = samples + (r * cols + c) * fm::image_size;
      for (std::size_t y = 0; y < 28; ++y)
        for (std::size_t x = 0; x < 28; ++x) {
          const float v = std::clamp((s[y * 28 + x] + 1.0f) / 2.0f, 0.0f, 1.0f);
          // gnuplot's binary array puts the first row at the bottom: flip so that row 0 is the top.
          img[(h - 1 - (r * 29 + y)) * w + c * 29 + x] = 1.0f - v;  // dark clothes on white, as printed
        }
    }
  std::ofstream out(file, std::ios::binary);
  out.write(reinterpret_cast<const char*>(img.data()), static_cast<std::streamsize>(img.size() * sizeof(float)));
}

std::string gp_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += (c == '\'') ? std::string("''") : std::string(1, c);
  return q + "'";
}

/// A labelled grid of tiles: one panel per entry (title, file of a rows × cols tile), `per_row` panels a row.
/// Drawn by gnuplot (Debian gnuplot-nox, pngcairo), as the exact-oracle demo draws its figure.
bool draw_grid(const fs::path& png, const std::string& title,
               const std::vector<std::pair<std::string, fs::path>>& panels, std::size_t rows, std::size_t cols,
               std::size_t per_row, int panel_px) {
  const std::size_t h = rows * 29 - 1, w = cols * 29 - 1;
  const std::size_t grid_rows = (panels.size() + per_row - 1) / per_row;
  const int width = static_cast<int>(per_row) * panel_px, height = static_cast<int>(grid_rows) * (panel_px + 24) + 40;
  const fs::path gp = png.parent_path() / (png.stem().string() + ".gp");
  std::ofstream s(gp);
  s << "set terminal pngcairo size " << width << "," << height << " enhanced font 'DejaVu Sans,11'\n";
  s << "set output " << gp_quote(png.string()) << "\n";
  s << "set palette gray\nunset colorbox\nunset key\nunset tics\nunset border\nset size ratio -1\n";
  s << "set multiplot layout " << grid_rows << "," << per_row << " title " << gp_quote(title)
    << " margins 0.01,0.99,0.01," << fmt(1.0 - 40.0 / height, 3) << " spacing 0.01,"
    << fmt(24.0 / height, 3) << "\n";
  for (const auto& [label, file] : panels) {
    s << "set title " << gp_quote(label) << "\n";
    s << "plot " << gp_quote(file.string()) << " binary array=(" << w << "," << h
      << ") format='%float32' with image pixels\n";
  }
  s << "unset multiplot\n";
  s.close();
  const std::string cmd = "gnuplot " + gp_quote(gp.string()) + " 2>" + gp_quote((gp.string() + ".log"));
  return std::system(cmd.c_str()) == 0;
}

}  // namespace

int main(int argc, char** argv) try {
  const config cfg = parse(argc, argv);
  const auto t_start = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count(); };

  std::size_t n_test = 0, n_train = 0;
  const std::vector<float> test = load_images(cfg.data + "/t10k-images-idx3-ubyte.gz", n_test);
  const std::vector<int> test_labels = load_labels(cfg.data + "/t10k-labels-idx1-ubyte.gz");
  const std::vector<float> train = load_images(cfg.data + "/train-images-idx3-ubyte.gz", n_train);

  fm::networks nets(cfg.models + "/eps_unet.pt", cfg.models + "/classifier.pt", cfg.workers);
  std::cout << "skipstep_fashion_mnist: the DDIM paper's table on a learned eps (" << cfg.models << "/eps_unet.pt, "
            << nets.parameters() << " parameters), DDIM sampler over LibTorch\n"
            << "  N = " << cfg.n << " samples per cell for S < 1000, N = " << cfg.n1000 << " for S = 1000; batch "
            << cfg.batch << ", " << cfg.workers << " worker thread(s) x 1 intra-op thread; seed " << cfg.seed
            << (cfg.quick ? " (--quick)" : "") << "\n";

  nlohmann::json results;
  results["config"] = {{"n", cfg.n},           {"n1000", cfg.n1000},   {"batch", cfg.batch},
                       {"workers", cfg.workers}, {"seed", cfg.seed},     {"quick", cfg.quick},
                       {"models", cfg.models},   {"parameters", nets.parameters()},
                       {"initial_noise", "x_T of sample k = philox_normal(seed) at (stream k, step 4294967295)"},
                       {"sampler_noise", "philox_normal(seed) at (stream = sample index, step = sampler step)"}};

  // Forward cost of the network, measured here (median of timed calls; 2 workers: throughput side by side).
  if (cfg.bench) {
    std::cout << "\nnetwork forward, ms per image (median of timed calls after 3 warm-up calls):\n"
              << "   batch   1 thread   2 intra-op threads   2 workers x 1 thread (throughput)\n";
    nlohmann::json bench = nlohmann::json::array();
    for (std::size_t b : {std::size_t(1), std::size_t(16), std::size_t(64), std::size_t(256)}) {
      const int reps = b == 1 ? 40 : b == 16 ? 20 : 6;
      const double one = nets.forward_ms_per_image(b, 1, 1, reps);
      const double two = nets.forward_ms_per_image(b, 1, 2, reps);
      const double wk = nets.forward_ms_per_image(b, 2, 1, reps);
      std::cout << "  " << std::setw(6) << b << std::setw(11) << fmt(one, 3) << std::setw(21) << fmt(two, 3)
                << std::setw(36) << fmt(wk, 3) << "\n";
      bench.push_back({{"batch", b}, {"ms_per_image_1thread", one}, {"ms_per_image_2intraop", two},
                       {"ms_per_image_2workers", wk}});
    }
    results["forward_benchmark"] = bench;
  }

  // The reference: the classifier's features of the 10000 test images.
  std::vector<double> test_f(n_test * fm::feature_size);
  std::vector<int> predicted;
  nets.features(test, n_test, test_f, &predicted);
  std::size_t correct = 0;
  for (std::size_t i = 0; i < n_test; ++i) correct += predicted[i] == test_labels[i];
  const double accuracy = double(correct) / double(n_test);
  const fm::gaussian_fit ref = fm::fit(test_f, n_test, fm::feature_size);
  const fm::kid_reference kid_ref = fm::make_kid_reference(test_f, n_test, fm::feature_size);
  std::cout << "\nmetric: FID and KID in the classifier's 128-d penultimate feature space against the " << n_test
            << " test images (classifier test accuracy " << fmt(100.0 * accuracy, 2) << "%)\n";
  results["metric"] = {{"reference", "test set, " + std::to_string(n_test) + " images"},
                       {"classifier_test_accuracy", accuracy}};

  struct scores {
    double fid, kid;
  };
  auto score_of = [&](const float* images, std::size_t n) {
    std::vector<double> f(n * fm::feature_size);
    nets.features(std::span<const float>(images, n * fm::image_size), n, f);
    return scores{fm::frechet_distance(fm::fit(f, n, fm::feature_size), ref),
                  fm::kernel_inception_distance(f, n, kid_ref)};
  };
  auto fid_of = [&](const float* images, std::size_t n) { return score_of(images, n).fid; };
  // Noise floor: N real training images (disjoint draws) against the same reference.
  struct floor_draws {
    std::vector<double> fid, kid;
  };
  auto floor_at = [&](std::size_t n) {
    floor_draws v;
    for (std::size_t k = 0; k < 5 && (k + 1) * n <= n_train; ++k) {
      const scores sc = score_of(train.data() + k * n * fm::image_size, n);
      v.fid.push_back(sc.fid);
      v.kid.push_back(1e3 * sc.kid);
    }
    return v;
  };
  const floor_draws floor_draws_n = floor_at(cfg.n), floor_draws_1000 = floor_at(cfg.n1000);
  const std::vector<double>&floor_n = floor_draws_n.fid, &floor_1000 = floor_draws_1000.fid;
  std::cout << "noise floor (N real training images vs the test set, " << floor_n.size()
            << " disjoint draws): FID at N = " << cfg.n << ": " << fmt(mean(floor_n), 2) << " ± "
            << fmt(stdev(floor_n), 2) << "; N = " << cfg.n1000 << ": " << fmt(mean(floor_1000), 2) << " ± "
            << fmt(stdev(floor_1000), 2) << "\n"
            << "  KID x 1000 at N = " << cfg.n << ": " << fmt(mean(floor_draws_n.kid), 2) << " ± "
            << fmt(stdev(floor_draws_n.kid), 2) << "; N = " << cfg.n1000 << ": " << fmt(mean(floor_draws_1000.kid), 2)
            << " ± " << fmt(stdev(floor_draws_1000.kid), 2) << " (unbiased: expectation 0 for real images)\n";
  results["noise_floor"] = {{"n", cfg.n},           {"values", floor_n},
                            {"n1000", cfg.n1000},   {"values_n1000", floor_1000},
                            {"kid_x1000", floor_draws_n.kid}, {"kid_x1000_n1000", floor_draws_1000.kid}};

  // The cells. S = 1000: both skips list every t (checked), sampled once.
  std::vector<cell_result> cells;
  const std::vector<policy>& policies = cfg.policies;
  const std::vector<fm::skip_type>& skips = cfg.skips;
  const bool has_uniform = std::find(skips.begin(), skips.end(), fm::skip_type::uniform) != skips.end();
  std::map<std::string, std::size_t> index;  // "<skip>_S<S>_<tag>" -> cells[]
  auto key = [](fm::skip_type k, std::size_t s, const policy& p) {
    return skip_name(k) + "_S" + std::to_string(s) + "_" + policy_tag(p);
  };
  const bool has_1000 = std::find(cfg.steps.begin(), cfg.steps.end(), fm::num_train_timesteps) != cfg.steps.end();
  const std::size_t shared_1000 = has_1000 && has_uniform && skips.size() == 2 ? policies.size() : 0;
  std::cout << "\nsampling " << cfg.steps.size() * policies.size() * skips.size() - shared_1000 << " cells ...\n";
  for (fm::skip_type skip : skips) {
    for (std::size_t s : cfg.steps) {
      for (const policy& p : policies) {
        if (s == fm::num_train_timesteps && skip == fm::skip_type::quadratic && has_uniform) {
          index[key(skip, s, p)] = index.at(key(fm::skip_type::uniform, s, p));
          continue;
        }
        const std::size_t n = s == fm::num_train_timesteps ? cfg.n1000 : cfg.n;
        cell_result r{skip, s, p, n, 0.0, 0.0, {}, std::vector<float>(n * fm::image_size)};
        const fm::cell_spec spec{skip, s, p.larger_variance, p.eta};
        r.timing = nets.sample(spec, n, cfg.batch, cfg.seed, r.samples);
        const scores sc = score_of(r.samples.data(), n);
        r.fid = sc.fid;
        r.kid = 1e3 * sc.kid;
        std::cout << "  " << std::setw(9) << skip_name(skip) << " S = " << std::setw(4) << s << "  "
                  << std::setw(8) << policy_tag(p) << "  FID " << std::setw(7) << fmt(r.fid, 2) << "  KID x 1000 "
                  << std::setw(7) << fmt(r.kid, 2) << "  "
                  << fmt(r.timing.wall_s, 1) << " s  (t = " << fmt(elapsed(), 0) << " s)\n"
                  << std::flush;
        index[key(skip, s, p)] = cells.size();
        cells.push_back(std::move(r));
      }
    }
  }
  // Seed spread: one cell again with two other seeds (quadratic S = 20 η = 0 unless the lists leave it out).
  const fm::skip_type spread_skip =
      std::find(skips.begin(), skips.end(), fm::skip_type::quadratic) != skips.end() ? fm::skip_type::quadratic
                                                                                      : skips.front();
  const std::size_t spread_steps =
      std::find(cfg.steps.begin(), cfg.steps.end(), std::size_t(20)) != cfg.steps.end() ? 20 : cfg.steps.front();
  const policy spread_policy = policies.front();
  const std::size_t spread_n = spread_steps == fm::num_train_timesteps ? cfg.n1000 : cfg.n;
  const std::string spread_key = key(spread_skip, spread_steps, spread_policy);
  std::vector<double> spread{cells[index.at(spread_key)].fid}, spread_kid{cells[index.at(spread_key)].kid};
  {
    const fm::cell_spec spread_cell{spread_skip, spread_steps, spread_policy.larger_variance, spread_policy.eta};
    std::vector<float> tmp(spread_n * fm::image_size);
    for (std::uint64_t k = 1; k <= 2; ++k) {
      nets.sample(spread_cell, spread_n, cfg.batch, cfg.seed + k, tmp);
      const scores sc = score_of(tmp.data(), spread_n);
      spread.push_back(sc.fid);
      spread_kid.push_back(1e3 * sc.kid);
    }
  }
  std::cout << "seed spread (" << skip_name(spread_skip) << " S = " << spread_steps << " " << policy_label(spread_policy)
            << ", seeds " << cfg.seed << ".." << cfg.seed + 2 << ", N = " << spread_n << "): FID " << fmt(mean(spread), 2)
            << " ± " << fmt(stdev(spread), 2) << ", KID x 1000 " << fmt(mean(spread_kid), 2) << " ± "
            << fmt(stdev(spread_kid), 2) << "\n";
  results["seed_spread"] = {
      {"cell", spread_key}, {"n", spread_n}, {"values", spread}, {"kid_x1000", spread_kid}};

  // The tables: FID, then KID, one row per S and one column per policy.
  auto print_table = [&](const std::string& title, double cell_result::*value, int precision) {
    for (fm::skip_type skip : skips) {
      std::cout << "\n" << skip_name(skip) << " skip: " << title << "\n     S";
      for (const policy& p : policies) std::cout << std::setw(p.larger_variance ? 10 : 9) << policy_label(p);
      // (σ̂ is two bytes wider than it prints: one more column of width)
      std::cout << "\n";
      for (std::size_t s : cfg.steps) {
        std::cout << std::setw(6) << s;
        for (const policy& p : policies)
          std::cout << " " << std::setw(8) << fmt(cells[index.at(key(skip, s, p))].*value, precision);
        std::cout << (s == fm::num_train_timesteps ? "   (N = " + std::to_string(cfg.n1000) + ")" : "") << "\n";
      }
    }
  };
  print_table("FID (lower is better; floor " + fmt(mean(floor_n), 2) + " ± " + fmt(stdev(floor_n), 2) + " at N = " +
                  std::to_string(cfg.n) + ", " + fmt(mean(floor_1000), 2) + " ± " + fmt(stdev(floor_1000), 2) +
                  " at N = " + std::to_string(cfg.n1000) + ")",
              &cell_result::fid, 1);
  print_table("KID x 1000 (unbiased, so rows of different N compare; real images: " +
                  fmt(mean(floor_draws_n.kid), 2) + " ± " + fmt(stdev(floor_draws_n.kid), 2) + " at N = " +
                  std::to_string(cfg.n) + ", " + fmt(mean(floor_draws_1000.kid), 2) + " ± " +
                  fmt(stdev(floor_draws_1000.kid), 2) + " at N = " + std::to_string(cfg.n1000) + ")",
              &cell_result::kid, 2);
  for (fm::skip_type skip : skips) {
    std::cout << "\n" << skip_name(skip)
              << " skip: sampling wall time per image, ms (speed-up vs S = 1000 at the same η)\n     S";
    for (const policy& p : policies) std::cout << std::setw(p.larger_variance ? 17 : 16) << policy_label(p);
    std::cout << "\n";
    for (std::size_t s : cfg.steps) {
      std::cout << std::setw(6) << s;
      for (const policy& p : policies) {
        const cell_result& c = cells[index.at(key(skip, s, p))];
        const double per = 1e3 * c.timing.wall_s / double(c.n);
        std::string cell = fmt(per, 2);
        if (has_1000) {
          const cell_result& c1 = cells[index.at(key(skip, fm::num_train_timesteps, p))];
          const double speedup = (c1.timing.wall_s / double(c1.n)) / (c.timing.wall_s / double(c.n));
          cell += " (" + fmt(speedup, speedup >= 10 ? 0 : 1) + "x)";
        }
        std::cout << " " << std::setw(15) << cell;
      }
      std::cout << "\n";
    }
  }
  // S = 1000 has fewer samples: the other rows' FID on their first n1000 samples, for a comparison at the same N.
  if (has_1000 && cfg.n1000 < cfg.n) {
    std::cout << "\nFID at the same N = " << cfg.n1000 << " (every cell's first " << cfg.n1000
              << " samples; floor " << fmt(mean(floor_1000), 2) << " ± " << fmt(stdev(floor_1000), 2) << ")\n"
              << "  skip        S";
    for (const policy& p : policies) std::cout << std::setw(p.larger_variance ? 10 : 9) << policy_label(p);
    std::cout << "\n";
    nlohmann::json same = nlohmann::json::array();
    for (fm::skip_type skip : skips)
      for (std::size_t s : cfg.steps) {
        if (s == fm::num_train_timesteps && skip == fm::skip_type::quadratic && has_uniform) continue;
        std::cout << "  " << std::setw(9) << skip_name(skip) << std::setw(5) << s;
        for (const policy& p : policies) {
          const cell_result& c = cells[index.at(key(skip, s, p))];
          const double f = c.n == cfg.n1000 ? c.fid : fid_of(c.samples.data(), cfg.n1000);
          std::cout << " " << std::setw(8) << fmt(f, 1);
          same.push_back({{"skip", skip_name(skip)}, {"steps", s}, {"policy", policy_tag(p)}, {"fid", f}});
        }
        std::cout << "\n";
      }
    results["fid_at_n1000"] = same;
  }
  // Where the sampling time went.
  fm::cell_timing sum;
  for (const auto& c : cells) {
    sum.wall_s += c.timing.wall_s;
    sum.sample_s += c.timing.sample_s;
    sum.forward_s += c.timing.forward_s;
    sum.adaptor_s += c.timing.adaptor_s;
    sum.forwards += c.timing.forwards;
  }
  std::cout << "\ntime inside sampler::sample, all cells, summed over workers: " << fmt(sum.sample_s, 1) << " s ("
            << sum.forwards << " network calls): network forward " << fmt(100.0 * sum.forward_s / sum.sample_s, 3)
            << "%, torch_predictor around it (from_blob, checks, output copy) "
            << fmt(100.0 * sum.adaptor_s / sum.sample_s, 3) << "%, skipstep's steps and noise draws "
            << fmt(100.0 * sum.skipstep_s() / sum.sample_s, 3) << "% (steady_clock around each forward and each "
            << "predictor call)\n";
  results["time_share"] = {{"sample_s", sum.sample_s},   {"forward_s", sum.forward_s},
                           {"adaptor_s", sum.adaptor_s}, {"skipstep_s", sum.skipstep_s()},
                           {"forwards", sum.forwards},   {"wall_s", sum.wall_s}};

  nlohmann::json jcells = nlohmann::json::array();
  for (fm::skip_type skip : skips)
    for (std::size_t s : cfg.steps)
      for (const policy& p : policies) {
        const cell_result& c = cells[index.at(key(skip, s, p))];
        jcells.push_back({{"skip", skip_name(skip)},
                          {"steps", s},
                          {"policy", p.larger_variance ? "sigmahat" : "eta"},
                          {"eta", p.larger_variance ? nlohmann::json(nullptr) : nlohmann::json(p.eta)},
                          {"n", c.n},
                          {"fid", c.fid},
                          {"kid_x1000", c.kid},
                          {"wall_s", c.timing.wall_s},
                          {"forward_s", c.timing.forward_s},
                          {"skipstep_s", c.timing.skipstep_s()},
                          {"file", key(skip, s, p) + ".npy"}});
      }
  results["cells"] = jcells;

  const fs::path out_dir = cfg.dump_npy.empty() ? cfg.out : fs::path(cfg.dump_npy);
  fs::create_directories(out_dir);
  if (!cfg.dump_npy.empty()) {
    for (const auto& [name, i] : index) {
      std::vector<float> clipped = cells[i].samples;
      for (float& v : clipped) v = std::clamp(v, -1.0f, 1.0f);
      const std::vector<std::size_t> shape{cells[i].n, 28, 28};
      xt::dump_npy((out_dir / (name + ".npy")).string(), xt::adapt(clipped, shape));
    }
    std::cout << "wrote " << index.size() << " .npy files to " << fs::absolute(out_dir).string() << "\n";
  }
  if (cfg.figure) {
    const fs::path tiles = out_dir / "tiles";
    fs::create_directories(tiles);
    // Each tile shows side × side samples of a cell: no more than the smallest cell holds.
    std::size_t side = std::min<std::size_t>(6, static_cast<std::size_t>(std::sqrt(double(std::min(cfg.n, cfg.n1000)))));
    for (fm::skip_type skip : skips) {
      std::vector<std::pair<std::string, fs::path>> panels;
      for (std::size_t s : cfg.steps)
        for (const policy& p : policies) {
          const cell_result& c = cells[index.at(key(skip, s, p))];
          const fs::path f = tiles / (key(skip, s, p) + ".f32");
          write_tile(f, c.samples.data(), side, side);
          panels.push_back({"S=" + std::to_string(s) + " " + policy_label(p) + "  FID " + fmt(c.fid, 1), f});
        }
      const fs::path png = out_dir / ("samples_" + skip_name(skip) + ".png");
      if (draw_grid(png, skip_name(skip) + " skip (rows S = 10..1000; columns η = 0, 0.2, 0.5, 1, σ̂)", panels,
                    side, side, policies.size(), 190))
        std::cout << "wrote " << fs::absolute(png).string() << "\n";
      else
        std::cout << "gnuplot failed for " << png.string() << " (Debian gnuplot-nox; see the .gp.log beside it)\n";
    }
    // The README's figure: a few cells side by side, and real test images.
    std::vector<std::pair<std::string, fs::path>> panels;
    const fs::path real = tiles / "real_test.f32";
    write_tile(real, test.data(), side, side);
    const std::pair<fm::skip_type, std::pair<std::size_t, std::size_t>> picks[] = {
        {fm::skip_type::quadratic, {10, 0}}, {fm::skip_type::quadratic, {10, 4}}, {fm::skip_type::quadratic, {100, 0}},
        {fm::skip_type::uniform, {1000, 0}}, {fm::skip_type::uniform, {1000, 4}}};
    for (const auto& [skip, sp] : picks) {
      const policy& p = all_policies[sp.second];
      if (!index.contains(key(skip, sp.first, p))) continue;  // a row, policy or skip the lists leave out
      const cell_result& c = cells[index.at(key(skip, sp.first, p))];
      panels.push_back({(sp.first == 1000 ? std::string("") : skip_name(skip).substr(0, 4) + ". ") + "S=" +
                            std::to_string(sp.first) + " " + policy_label(p) + " (" + fmt(c.fid, 1) + ")",
                        tiles / (key(skip, sp.first, p) + ".f32")});
    }
    panels.push_back({"test images", real});
    const fs::path png = out_dir / "samples_readme.png";
    if (draw_grid(png, "DDIM on a learned ε (Fashion-MNIST): samples and FID", panels, side, side, panels.size(), 200))
      std::cout << "wrote " << fs::absolute(png).string() << "\n";
  }
  results["total_wall_s"] = elapsed();
  std::ofstream(out_dir / "results.json") << results.dump(2) << "\n";
  std::cout << "wrote " << fs::absolute(out_dir / "results.json").string() << "\ntotal " << fmt(elapsed(), 0)
            << " s\n";
  return 0;
} catch (const std::exception& e) {
  std::cerr << e.what() << "\n";
  return 1;
}
