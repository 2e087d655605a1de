/// @file
/// skipstep_demo (run by ./scripts/demo): DDIM's speed/quality trade-off measured on Gaussian mixtures whose
/// noise predictor is known exactly: the DDIM paper's Table 1 experiment (Song et al. 2021).
/// `skipstep_demo --help` lists the options.
#include <exception>
#include <iostream>
#include <stdexcept>
#include <string_view>
#include <vector>

#include "config.hpp"
#include "run.hpp"

int main(int argc, char** argv) {
  const std::string_view program = argc > 0 ? argv[0] : "skipstep_demo";
  skipstep_demo::parsed_command_line parsed;
  try {
    const std::vector<std::string_view> args(argv + (argc > 0 ? 1 : 0), argv + argc);
    parsed = skipstep_demo::parse_command_line(args);
  } catch (const std::invalid_argument& e) {
    std::cerr << e.what() << "\n";
    return 2;
  }
  if (parsed.show_help) {
    std::cout << skipstep_demo::usage_text(program);
    return 0;
  }
  try {
    return skipstep_demo::run_demo(parsed.config);
  } catch (const std::exception& e) {
    std::cerr << "skipstep_demo: error: " << e.what() << "\n";
    return 1;
  }
}
