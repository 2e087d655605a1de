/// @file
/// The whole demo run: every cell of the grid, the floors, the tables, the figure and the output files.
#pragma once

#include "config.hpp"

namespace skipstep_demo {

/// Runs the demo with `config`; prints tables to stdout and progress to stderr. Returns the process exit
/// code: 0, or 1 when some cell produced non-finite samples.
int run_demo(const demo_config& config);

}  // namespace skipstep_demo
