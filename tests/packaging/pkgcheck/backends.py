"""Backend versions this machine does not have: a fake Eigen 5.0.0 CMake package and a fake xtensor >= 0.26
header layout, each forwarding to the installed headers."""
import shutil
from pathlib import Path

from .common import run, tail


EIGEN5_CONFIG = '''# FAKE Eigen3 5.0.0 package (run_packaging_checks): Debian's Eigen 3.4 headers under Eigen 5's version number.
if(NOT TARGET Eigen3::Eigen)
  add_library(Eigen3::Eigen INTERFACE IMPORTED)
  set_target_properties(Eigen3::Eigen PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "@EIGEN_INCLUDE@")
endif()
set(EIGEN3_VERSION_STRING "5.0.0")
set(SKIPSTEP_TEST_FAKE_EIGEN5 TRUE)
'''

# Eigen 5's Eigen3ConfigVersion.cmake: a version range is honoured (min <= 5.0.0, and below / up to the max), a single
# version must have the same major version (SameMajorVersion), so `find_package(Eigen3 3.4)` rejects 5.0.0.
EIGEN5_VERSION = '''set(PACKAGE_VERSION "5.0.0")
set(PACKAGE_VERSION_COMPATIBLE FALSE)
if(PACKAGE_FIND_VERSION_RANGE)
  if(PACKAGE_FIND_VERSION_MIN VERSION_LESS_EQUAL PACKAGE_VERSION AND
     ((PACKAGE_FIND_VERSION_RANGE_MAX STREQUAL "INCLUDE" AND PACKAGE_VERSION VERSION_LESS_EQUAL PACKAGE_FIND_VERSION_MAX)
      OR (PACKAGE_FIND_VERSION_RANGE_MAX STREQUAL "EXCLUDE" AND PACKAGE_VERSION VERSION_LESS PACKAGE_FIND_VERSION_MAX)))
    set(PACKAGE_VERSION_COMPATIBLE TRUE)
  endif()
elseif(NOT PACKAGE_FIND_VERSION OR
       (PACKAGE_FIND_VERSION_MAJOR STREQUAL "5" AND PACKAGE_FIND_VERSION VERSION_LESS_EQUAL PACKAGE_VERSION))
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
endif()
if(PACKAGE_FIND_VERSION STREQUAL PACKAGE_VERSION)
  set(PACKAGE_VERSION_EXACT TRUE)
endif()
'''


def group_eigen5(ctx, checks):
    eigen_inc = Path("/usr/include/eigen3")
    if not checks.check("eigen5: Eigen headers available to emulate Eigen 5 with", (eigen_inc / "Eigen/Core").is_file(),
                        f"{eigen_inc}/Eigen/Core missing"):
        return
    fake = ctx.work / "fake-eigen5"
    cfgdir = fake / "share/eigen3/cmake"
    shutil.rmtree(fake, ignore_errors=True)
    cfgdir.mkdir(parents=True)
    (cfgdir / "Eigen3Config.cmake").write_text(EIGEN5_CONFIG.replace("@EIGEN_INCLUDE@", str(eigen_inc)))
    (cfgdir / "Eigen3ConfigVersion.cmake").write_text(EIGEN5_VERSION)

    # Control: the fake behaves like Eigen 5 (a plain 3.4 request fails, the range succeeds).
    ctrl = ctx.work / "eigen5_control"
    shutil.rmtree(ctrl, ignore_errors=True)
    ctrl.mkdir(parents=True)
    (ctrl / "CMakeLists.txt").write_text(f'''cmake_minimum_required(VERSION 3.21)
project(eigen5_control LANGUAGES NONE)
find_package(Eigen3 3.4 QUIET NO_MODULE PATHS "{fake}" NO_DEFAULT_PATH)
message(STATUS "plain-3.4-found=${{Eigen3_FOUND}}")
unset(Eigen3_DIR CACHE)
find_package(Eigen3 3.4...<6 QUIET NO_MODULE PATHS "{fake}" NO_DEFAULT_PATH)
message(STATUS "range-found=${{Eigen3_FOUND}} version=${{Eigen3_VERSION}}")
''')
    rc, out = run([ctx.cmake, "-S", ctrl, "-B", ctrl / "build"], ctx.logs / "eigen5.log")
    checks.check("eigen5: the fake rejects find_package(Eigen3 3.4) and accepts 3.4...<6, like Eigen 5",
                 rc == 0 and "plain-3.4-found=0" in out and "range-found=1 version=5.0.0" in out, tail(out))

    proj = ctx.work / "eigen5_consumer"
    shutil.rmtree(proj, ignore_errors=True)
    proj.mkdir(parents=True)
    (proj / "CMakeLists.txt").write_text('''cmake_minimum_required(VERSION 3.21)
project(eigen5_consumer LANGUAGES CXX)
find_package(skipstep CONFIG REQUIRED COMPONENTS eigen)
if(NOT SKIPSTEP_TEST_FAKE_EIGEN5 OR NOT Eigen3_VERSION VERSION_EQUAL 5.0.0)
  message(FATAL_ERROR "skipstep found Eigen ${Eigen3_VERSION} at ${Eigen3_DIR}, not the fake Eigen 5.0.0")
endif()
message(STATUS "skipstep found Eigen3 ${Eigen3_VERSION} at ${Eigen3_DIR}")
add_executable(app main.cpp)
target_link_libraries(app PRIVATE skipstep::eigen)
''')
    (proj / "main.cpp").write_text(r'''#include <skipstep/backend/eigen.hpp>
#include <skipstep/skipstep.hpp>
#include <cmath>
#include <cstdio>
int main() {
  const auto s = skipstep::noise_schedule<>::linear(1000);
  Eigen::VectorXd x = Eigen::VectorXd::Constant(3, 2.0);
  skipstep::ddim_sampler(s, skipstep::timestep_schedule::leading(1000, 10)).sample(
      [&](const Eigen::VectorXd& xt, std::int64_t t) -> Eigen::VectorXd {
        const double a = s.alpha_cumprod(static_cast<std::size_t>(t));
        return (xt.array() - std::sqrt(a) * 0.5) / std::sqrt(1.0 - a);
      }, x);
  const double e = (x.array() - 0.5).abs().maxCoeff();
  std::printf("eigen5 consumer: skipstep::eigen on the fake Eigen 5.0.0, error %.1e\n", e);
  return e < 1e-9 ? 0 : 1;
}
''')
    ok, out = ctx.build_project(checks, "eigen5: find_package(skipstep COMPONENTS eigen) with Eigen3 5.0.0 first",
                                proj, proj / "build", [f"-DCMAKE_PREFIX_PATH={fake};{ctx.stage}"], run_exe="app")
    if ok:
        checks.check("eigen5: skipstep's two-step find picked the 5.0.0 package",
                     f"found Eigen3 5.0.0 at {cfgdir}" in out, tail(out, 5))


XTENSOR_FORWARDER = '''// FAKE xtensor >= 0.26 layout (run_packaging_checks): forwards to the installed 0.24 header.
#pragma once
#define SKIPSTEP_TEST_FAKE_XTENSOR_026 1
#include <xtensor/{name}>
'''


def group_xtensor026(ctx, checks):
    old = Path("/usr/include/xtensor/xarray.hpp")
    if not checks.check("xtensor026: xtensor headers available to emulate the new layout with", old.is_file()):
        return
    fake = ctx.work / "fake-xtensor026" / "include"
    shutil.rmtree(fake.parent, ignore_errors=True)
    (fake / "xtensor/containers").mkdir(parents=True)
    for name in ("xarray.hpp", "xtensor.hpp", "xadapt.hpp"):
        (fake / "xtensor/containers" / name).write_text(XTENSOR_FORWARDER.format(name=name))
    src = ctx.work / "xtensor026_main.cpp"
    src.write_text(r'''#include <skipstep/backend/xtensor.hpp>
#include <skipstep/skipstep.hpp>
#ifndef SKIPSTEP_TEST_FAKE_XTENSOR_026
#error "skipstep/backend/xtensor.hpp did not include <xtensor/containers/...> although it exists"
#endif
#include <cmath>
#include <cstdio>
int main() {
  const auto s = skipstep::noise_schedule<>::linear(1000);
  xt::xarray<double> x = {{1.0, -1.0}, {0.0, 3.0}};
  skipstep::ddim_sampler(s, skipstep::timestep_schedule::leading(1000, 10)).sample(
      [&](const xt::xarray<double>& xt_, std::int64_t t) -> xt::xarray<double> {
        const double a = s.alpha_cumprod(static_cast<std::size_t>(t));
        return (xt_ - std::sqrt(a) * 0.5) / std::sqrt(1.0 - a);
      }, x);
  double e = 0;
  for (double v : x) e = std::fmax(e, std::abs(v - 0.5));
  std::printf("xtensor026 program: new-layout branch, error %.1e\n", e);
  return e < 1e-9 ? 0 : 1;
}
''')
    exe = ctx.work / "xtensor026_main"
    cmd = [ctx.cxx or "c++", "-std=c++20", "-Wall", "-Wextra", f"-I{fake}", f"-I{ctx.stage / 'include'}", str(src),
           "-o", str(exe)]
    rc, out = run(cmd, ctx.logs / "xtensor026.log")
    if checks.check("xtensor026: <skipstep/backend/xtensor.hpp> compiles through <xtensor/containers/*.hpp>", rc == 0,
                    tail(out)):
        rc, out = run([exe], ctx.logs / "xtensor026.log")
        print("    " + out.strip())
        checks.check("xtensor026: the program runs", rc == 0, out)
