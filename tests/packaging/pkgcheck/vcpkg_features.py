"""The vcpkg features decide which backend targets exist, on a machine that has Eigen and xtensor installed anyway
(Debian's, found by CMake's default search): a core-only install defines neither skipstep::eigen nor
skipstep::xtensor and rejects those components at find time; skipstep[eigen] defines skipstep::eigen only; the full
install (the `stage` fixture) requires the backend libraries it was built with."""
import re
import shutil

from .common import Checks, run, tail
from .vcpkg_port import parse_portfile, vcpkg_install

# Reports what the machine has (found before skipstep, in its own project, so it cannot influence skipstep's config).
CONTROL = '''cmake_minimum_required(VERSION 3.21)
project(machine_control LANGUAGES CXX)
find_package(Eigen3 3.4 QUIET NO_MODULE)
find_package(xtensor QUIET)
message(STATUS "machine: eigen=${Eigen3_FOUND} xtensor=${xtensor_FOUND}")
'''

# find_package(skipstep) first, as a user would; then which targets exist; then a component request.
CONSUMER = '''cmake_minimum_required(VERSION 3.21)
project(features_consumer LANGUAGES CXX)
find_package(skipstep CONFIG REQUIRED)
foreach(t skipstep eigen xtensor)
  if(TARGET skipstep::${t})
    message(STATUS "target skipstep::${t}: yes")
  else()
    message(STATUS "target skipstep::${t}: no")
  endif()
endforeach()
find_package(skipstep CONFIG COMPONENTS @COMPONENT@)
message(STATUS "components @COMPONENT@: found=${skipstep_FOUND} message=[${skipstep_NOT_FOUND_MESSAGE}]")
'''

# The same component request, REQUIRED: configure must fail, at find time, naming the missing feature.
REQUIRED = '''cmake_minimum_required(VERSION 3.21)
project(features_required LANGUAGES CXX)
find_package(skipstep CONFIG REQUIRED COMPONENTS @COMPONENT@)
message(STATUS "skipstep found with @COMPONENT@")
'''


def configure(ctx, name, text, options):
    """Writes a CMakeLists.txt and configures it; (returncode, output)."""
    proj = ctx.work / "vcpkg-features" / name
    shutil.rmtree(proj, ignore_errors=True)
    proj.mkdir(parents=True)
    (proj / "CMakeLists.txt").write_text(text)
    return run([ctx.cmake, "-S", proj, "-B", proj / "build"] + ctx.cmake_common() + options,
               ctx.logs / f"vcpkg-features-{name}.log")


def targets_seen(out):
    return {m.group(1): m.group(2) == "yes" for m in re.finditer(r"target skipstep::(\w+): (yes|no)", out)}


def check_install(ctx, checks, stage, label, expect, missing):
    """expect: {backend: defined?}; missing: a component this install lacks, requested at find time."""
    prefix = [f"-DCMAKE_PREFIX_PATH={stage}"]
    rc, out = configure(ctx, f"{label}-consumer", CONSUMER.replace("@COMPONENT@", missing), prefix)
    if not checks.check(f"vcpkg [{label}]: find_package(skipstep CONFIG REQUIRED) succeeds", rc == 0, tail(out)):
        return
    seen = targets_seen(out)
    want = dict(expect, skipstep=True)
    checks.check(f"vcpkg [{label}]: targets " + ", ".join(f"skipstep::{t} {'yes' if v else 'no'}"
                                                         for t, v in want.items()), seen == want, str(seen))
    m = re.search(rf"components {missing}: found=(\S*) message=\[(.*)\]", out)
    checks.check(f"vcpkg [{label}]: find_package(skipstep COMPONENTS {missing}) sets skipstep_FOUND false "
                 f"and names skipstep[{missing}]",
                 m is not None and m.group(1) in ("0", "FALSE") and f"skipstep[{missing}]" in m.group(2),
                 m.group(0) if m else tail(out, 5))
    rc, out = configure(ctx, f"{label}-required", REQUIRED.replace("@COMPONENT@", missing), prefix)
    checks.check(f"vcpkg [{label}]: find_package(skipstep REQUIRED COMPONENTS {missing}) fails at configure time",
                 rc != 0 and f"skipstep component '{missing}' is not available" in out, tail(out, 8))


def group_vcpkg_features(ctx, checks):
    rc, out = configure(ctx, "control", CONTROL, [])
    has = "machine: eigen=1 xtensor=1" in out
    if not checks.check("vcpkg features: this machine has Eigen3 and xtensor findable (the control)", has,
                        tail(out, 5)):
        return
    port = parse_portfile(ctx, Checks(quiet=True))
    installs = [("core", set(), {"eigen": False, "xtensor": False}, "eigen"),
                ("eigen", {"eigen"}, {"eigen": True, "xtensor": False}, "xtensor")]
    for label, features, expect, missing in installs:
        stage = ctx.work / f"vcpkg-{label}" / "packages" / "skipstep_x64-linux"
        if vcpkg_install(ctx, checks, port, features, stage, label):
            check_install(ctx, checks, stage, label, expect, missing)
    # The full install (fixture) was built with both backends ON: without Eigen it must not be found at all.
    rc, out = configure(ctx, "full-without-eigen", REQUIRED.replace("@COMPONENT@", "xtensor"),
                        [f"-DCMAKE_PREFIX_PATH={ctx.stage}", "-DCMAKE_DISABLE_FIND_PACKAGE_Eigen3=ON"])
    checks.check("vcpkg [eigen,xtensor]: with Eigen3 made unfindable, find_package(skipstep) fails and says why",
                 rc != 0 and "installed with its eigen backend" in out, tail(out, 8))
