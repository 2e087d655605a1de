// Helper for test_determinism: `skipstep_run_sampler <seed> <output file>` runs the 50-step scenario of
// scenario.hpp and writes the final samples' raw bytes (float32, native byte order) to the file.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "scenario.hpp"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: skipstep_run_sampler <seed> <output file>\n");
    return 2;
  }
  const auto x = skipstep_determinism::run_batch(std::stoull(argv[1]));
  std::FILE* f = std::fopen(argv[2], "wb");
  if (f == nullptr) {
    std::perror(argv[2]);
    return 1;
  }
  const std::size_t written = std::fwrite(x.data(), sizeof(float), x.size(), f);
  const bool ok = std::fclose(f) == 0 && written == x.size();
  return ok ? 0 : 1;
}
