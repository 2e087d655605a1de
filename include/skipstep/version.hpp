/// @file
/// @brief skipstep's version, as macros usable in the preprocessor and as constants.
///
/// Kept in sync with `project(skipstep VERSION ...)` in the top-level CMakeLists.txt: configuring fails if
/// the two disagree.
#pragma once

/// Major version (incompatible API changes; 0 while the API settles).
#define SKIPSTEP_VERSION_MAJOR 0
/// Minor version (features; in 0.x also API changes).
#define SKIPSTEP_VERSION_MINOR 1
/// Patch version (fixes).
#define SKIPSTEP_VERSION_PATCH 0

/// Single comparable number: major * 10000 + minor * 100 + patch (0.1.0 -> 100).
#define SKIPSTEP_VERSION \
  (SKIPSTEP_VERSION_MAJOR * 10000 + SKIPSTEP_VERSION_MINOR * 100 + SKIPSTEP_VERSION_PATCH)

#define SKIPSTEP_DETAIL_STRINGIZE_IMPL(x) #x
#define SKIPSTEP_DETAIL_STRINGIZE(x) SKIPSTEP_DETAIL_STRINGIZE_IMPL(x)

/// The version as a string literal, e.g. "0.1.0".
#define SKIPSTEP_VERSION_STRING                     \
  SKIPSTEP_DETAIL_STRINGIZE(SKIPSTEP_VERSION_MAJOR) \
  "." SKIPSTEP_DETAIL_STRINGIZE(SKIPSTEP_VERSION_MINOR) "." SKIPSTEP_DETAIL_STRINGIZE(SKIPSTEP_VERSION_PATCH)

namespace skipstep {

/// The version the code was compiled against, as constants (the same values as the macros above).
/// (Not a struct with `major`/`minor` members: glibc's <sys/sysmacros.h> defines macros of those names.)
inline constexpr int version_major = SKIPSTEP_VERSION_MAJOR;
/// Minor version, as a constant.
inline constexpr int version_minor = SKIPSTEP_VERSION_MINOR;
/// Patch version, as a constant.
inline constexpr int version_patch = SKIPSTEP_VERSION_PATCH;

/// The version as a C string, e.g. "0.1.0".
inline constexpr const char* version_string = SKIPSTEP_VERSION_STRING;

}  // namespace skipstep
