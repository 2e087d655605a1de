/// @file
/// Error reporting helpers: every exception names the function, the argument and the offending value.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace skipstep::detail {

/// Formats "skipstep::<function>: <argument> <requirement> (got <value>)".
template <class Value>
[[nodiscard]] std::string describe(std::string_view function, std::string_view argument,
                                   std::string_view requirement, const Value& value) {
  std::ostringstream out;
  out.precision(17);
  out << "skipstep::" << function << ": " << argument << ' ' << requirement << " (got " << value << ')';
  return out.str();
}

/// Throws std::invalid_argument naming function, argument and value.
template <class Value>
[[noreturn]] void throw_invalid(std::string_view function, std::string_view argument, std::string_view requirement,
                                const Value& value) {
  throw std::invalid_argument(describe(function, argument, requirement, value));
}

/// Throws std::domain_error naming function, argument and value (a legal-looking input with no finite result).
template <class Value>
[[noreturn]] void throw_domain(std::string_view function, std::string_view argument, std::string_view requirement,
                               const Value& value) {
  throw std::domain_error(describe(function, argument, requirement, value));
}

}  // namespace skipstep::detail
