// Shared by the error tests: CHECK_ERROR asserts the exception type and that its message names the function, the
// argument and the value (the library's error contract).
#pragma once

#include <catch2/catch.hpp>

#include <limits>

#define CHECK_ERROR(expr, Type, function, argument, value)                                                      \
  do {                                                                                                          \
    CHECK_THROWS_AS(expr, Type);                                                                                \
    CHECK_THROWS_WITH(expr, Catch::Matchers::Contains(function) && Catch::Matchers::Contains(argument) &&       \
                                Catch::Matchers::Contains(value));                                              \
  } while (false)

namespace skipstep_test {
inline constexpr double nan_v = std::numeric_limits<double>::quiet_NaN();
inline constexpr double inf_v = std::numeric_limits<double>::infinity();
}  // namespace skipstep_test
