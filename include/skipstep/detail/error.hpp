/// @file
/// Error reporting helpers: every exception names the function, the argument and the offending value.
#pragma once

#include <array>
#include <charconv>
#include <cstddef>
#include <concepts>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace skipstep::detail {

/// A value as text; floating-point values in their shortest round-trip form (0.95, not 0.94999999999999996).
template <class Value>
[[nodiscard]] std::string format_value(const Value& value) {
  if constexpr (std::floating_point<Value>) {
    std::array<char, 64> buffer{};
    const auto result = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value);
    return std::string(buffer.data(), result.ptr);
  } else {
    std::ostringstream out;
    out << value;
    return out.str();
  }
}

/// Formats "skipstep::<function>: <argument> <requirement> (got <value>)".
template <class Value>
[[nodiscard]] std::string describe(std::string_view function, std::string_view argument,
                                   std::string_view requirement, const Value& value) {
  std::string out = "skipstep::";
  out.append(function).append(": ").append(argument).append(" ").append(requirement);
  return out.append(" (got ").append(format_value(value)).append(")");
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

/// Throws std::out_of_range naming function, argument and value (an index past the end of a table).
template <class Value>
[[noreturn]] void throw_out_of_range(std::string_view function, std::string_view argument,
                                     std::string_view requirement, const Value& value) {
  throw std::out_of_range(describe(function, argument, requirement, value));
}

/// Checks an index into a table of `size` entries: std::out_of_range "skipstep::<function>: <argument> must be <
/// <size_name> = <size> (got <index>)" otherwise (the caller's names, not the standard library's _M_range_check).
inline void check_index(std::string_view function, std::string_view argument, std::size_t index, std::size_t size,
                        std::string_view size_name) {
  if (index >= size)
    throw_out_of_range(function, argument, "must be < " + std::string(size_name) + " = " + std::to_string(size), index);
}

/// `message` with its leading "skipstep::<function>: " (the inner layer's function) replaced by `context`: the
/// caller called `context`'s function, so that is the one the message names.
[[nodiscard]] inline std::string in_context(std::string_view context, std::string_view message) {
  constexpr std::string_view prefix = "skipstep::";
  std::string out(context);
  if (message.starts_with(prefix)) {
    const std::size_t end = message.find(": ");
    if (end != std::string_view::npos) message.remove_prefix(end + 2);
  }
  return out.append(": ").append(message);
}

/// Runs f(); an std::invalid_argument or std::domain_error it throws is rethrown, same type, with `context`
/// ("skipstep::ddim_sampler: step 3 (t = 700)") in place of the inner function's name.
template <class F>
decltype(auto) with_context(std::string_view context, F&& f) {
  try {
    return f();
  } catch (const std::domain_error& e) {
    throw std::domain_error(in_context(context, e.what()));
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(in_context(context, e.what()));
  }
}

}  // namespace skipstep::detail
