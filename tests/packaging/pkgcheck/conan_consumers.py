"""CMake projects against the emulated CMakeDeps output of the recipe: test_package (as `conan create` would build
and run it, with the variables its generate() sets), the core target's properties, the version rule next to our
own skipstepConfigVersion.cmake, and the component check at find time."""
import re
import shutil

from .common import run, tail
from .conan_emulation import Options, conandeps_config

REQUESTS = ["0.1", "0.1.0", "0.0", "0.2", "1.0"]

VERSIONS = '''cmake_minimum_required(VERSION 3.21)
project(version_rule LANGUAGES CXX)
foreach(v @REQUESTS@)
  unset(skipstep_DIR CACHE)
  unset(skipstep_FOUND)
  find_package(skipstep ${v} CONFIG QUIET PATHS "@PREFIX@" NO_DEFAULT_PATH)
  message(STATUS "request ${v}: found=${skipstep_FOUND}")
endforeach()
'''

CORE_PROPERTIES = '''cmake_minimum_required(VERSION 3.21)
project(core_properties LANGUAGES CXX)
find_package(skipstep CONFIG REQUIRED)
foreach(p INTERFACE_LINK_LIBRARIES INTERFACE_INCLUDE_DIRECTORIES INTERFACE_COMPILE_DEFINITIONS)
  get_target_property(v skipstep::skipstep ${p})
  message(STATUS "core ${p}=[${v}]")
endforeach()
'''

COMPONENTS = '''cmake_minimum_required(VERSION 3.21)
project(components LANGUAGES CXX)
find_package(skipstep CONFIG @REQUIRED@ COMPONENTS @COMPONENTS@)
message(STATUS "components @COMPONENTS@: found=${skipstep_FOUND} message=[${skipstep_NOT_FOUND_MESSAGE}]")
'''


def configure(ctx, name, text, options):
    proj = ctx.work / "conan" / "consumers" / name
    shutil.rmtree(proj, ignore_errors=True)
    proj.mkdir(parents=True)
    (proj / "CMakeLists.txt").write_text(text)
    return run([ctx.cmake, "-S", proj, "-B", proj / "build"] + ctx.cmake_common() + options,
               ctx.logs / f"conan-{name}.log")


def test_package_plan(ctx, options):
    """Executes test_package/conanfile.py's generate() and test() against the stub: the -D variables its toolchain
    would set, and the executables test() runs."""
    path = ctx.source / "test_package/conanfile.py"
    namespace = {"__name__": "test_conanfile"}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    cls = next(v for k, v in namespace.items() if isinstance(v, type) and k != "ConanFile"
               and hasattr(v, "requirements") and hasattr(v, "test"))
    tp = cls({}, path.parent, path.parent, dependencies={"skipstep": type("Dep", (), {"options": Options(options)})})
    runs = []
    tp.run = lambda cmd, **kw: runs.append(str(cmd).split("/")[-1])
    tp.generate()
    tp.test()
    flags = [f"-D{k}={'ON' if v is True else 'OFF' if v is False else v}" for k, v in tp.toolchain_variables.items()]
    return flags, runs


def build_test_package(ctx, checks, label, options, package_options):
    try:
        flags, exes = test_package_plan(ctx, options)
    except Exception as e:  # noqa: BLE001 - report whatever the recipe raised
        checks.check(f"conan test_package ({label}): generate() and test() run (stub)", False,
                     f"{type(e).__name__}: {e}")
        return
    want = ["test_package"] + [f"test_package_{b}" for b in ("eigen", "xtensor") if options.get(b)]
    checks.check(f"conan test_package ({label}): test() runs {', '.join(want)}", exes == want, str(exes))
    build = ctx.work / "conan" / f"test_package-{label}"
    ok, _ = ctx.build_project(checks, f"conan test_package ({label})", ctx.source / "test_package", build,
                              package_options + flags)
    if not ok:
        return
    for exe in exes:
        rc, out = run([build / exe], ctx.logs / f"conan-test_package-{label}.log")
        print("    " + out.strip())
        checks.check(f"conan test_package ({label}): {exe} runs", rc == 0, tail(out))


def check_versions(ctx, checks, gen):
    text = VERSIONS.replace("@REQUESTS@", " ".join(REQUESTS))
    results = {}
    for label, prefix in (("conan", gen), ("ours", ctx.stage)):
        rc, out = configure(ctx, f"versions-{label}", text.replace("@PREFIX@", str(prefix)), [])
        results[label] = dict(re.findall(r"request (\S+): found=(\S*)", out))
    accepted = {k: v in ("1", "TRUE") for k, v in results["conan"].items()}
    checks.check(f"conan version rule: find_package(skipstep <v>) for {', '.join(REQUESTS)} gives the same answers "
                 "as our skipstepConfigVersion.cmake", results["conan"] == results["ours"]
                 and len(results["ours"]) == len(REQUESTS), str(results))
    checks.check(f"conan version rule: {ctx.version} satisfies 0.1 but not 0.0 or 0.2 (same minor in 0.x)",
                 accepted.get("0.1") and not accepted.get("0.0") and not accepted.get("0.2"), str(accepted))


def check_core_properties(ctx, checks, full, gen):
    rc, out = configure(ctx, "core-properties", CORE_PROPERTIES, [f"-Dskipstep_DIR={gen}"])
    props = dict(re.findall(r"core (\w+)=\[(.*)\]", out))
    include = str(full.package_path / "include")
    checks.check("conan (eigen=True, xtensor=True): skipstep::skipstep links nothing, has only skipstep's include "
                 "dir and no definitions", rc == 0 and props.get("INTERFACE_LINK_LIBRARIES") in ("", "v-NOTFOUND")
                 and props.get("INTERFACE_INCLUDE_DIRECTORIES") == include
                 and props.get("INTERFACE_COMPILE_DEFINITIONS") in ("", "v-NOTFOUND"), str(props) + tail(out, 5))


def check_components(ctx, checks, gen_full, gen_core):
    text = COMPONENTS.replace("@REQUIRED@", "").replace("@COMPONENTS@", "eigen xtensor")
    rc, out = configure(ctx, "components-full", text, [f"-Dskipstep_DIR={gen_full}"])
    checks.check("conan (eigen=True, xtensor=True): find_package(skipstep COMPONENTS eigen xtensor) succeeds",
                 rc == 0 and "found=1 " in out, tail(out, 5))
    text = COMPONENTS.replace("@REQUIRED@", "").replace("@COMPONENTS@", "eigen")
    rc, out = configure(ctx, "components-core", text, [f"-Dskipstep_DIR={gen_core}"])
    m = re.search(r"components eigen: found=(\S*) message=\[(.*)\]", out)
    checks.check("conan (eigen=False): find_package(skipstep COMPONENTS eigen) is not found, at find time, and says "
                 "which option",
                 m is not None and m.group(1) in ("0", "FALSE") and "skipstep/*:eigen=True" in m.group(2),
                 m.group(0) if m else tail(out, 5))
    text = COMPONENTS.replace("@REQUIRED@", "REQUIRED").replace("@COMPONENTS@", "eigen")
    rc, out = configure(ctx, "components-core-required", text, [f"-Dskipstep_DIR={gen_core}"])
    checks.check("conan (eigen=False): find_package(skipstep REQUIRED COMPONENTS eigen) fails the configure step",
                 rc != 0 and "skipstep component 'eigen' is not available" in out, tail(out, 5))


def check_consumers(ctx, checks, full, core):
    gen_full, gen_core = ctx.work / "conan" / "generators-full", ctx.work / "conan" / "generators-core"
    conandeps_config(full, full.package_path, gen_full)
    conandeps_config(core, core.package_path, gen_core)
    both = {"eigen": True, "xtensor": True}
    build_test_package(ctx, checks, "emulated CMakeDeps, eigen+xtensor", both, [f"-Dskipstep_DIR={gen_full}"])
    build_test_package(ctx, checks, "emulated CMakeDeps, core only", {}, [f"-Dskipstep_DIR={gen_core}"])
    build_test_package(ctx, checks, "staged vcpkg prefix", both, [f"-DCMAKE_PREFIX_PATH={ctx.stage}"])
    check_core_properties(ctx, checks, full, gen_full)
    check_versions(ctx, checks, gen_full)
    check_components(ctx, checks, gen_full, gen_core)
