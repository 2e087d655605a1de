"""The vcpkg port: vcpkg.json, the portfile, an emulated `vcpkg install` into a packages dir, vcpkg's post-build
rules and a consumer written from the `usage` file."""
import json
import os
import re
import shutil

from .common import cmake_call_args, cmake_tokens, run, tail


def check_vcpkg_json(ctx, checks):
    port = ctx.source / "ports" / "skipstep"
    try:
        manifest = json.loads((port / "vcpkg.json").read_text())
    except (OSError, ValueError) as e:
        checks.check("vcpkg.json: valid JSON", False, str(e))
        return
    checks.check("vcpkg.json: valid JSON", True)
    name = manifest.get("name", "")
    checks.check("vcpkg.json: name 'skipstep' matches ^[a-z0-9]+(-[a-z0-9]+)*$",
                 name == "skipstep" and re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name) is not None, repr(name))
    checks.check(f"vcpkg.json: version equals project(skipstep VERSION {ctx.version})",
                 manifest.get("version") == ctx.version and ctx.version is not None,
                 f"vcpkg.json has {manifest.get('version')!r}, CMakeLists.txt has {ctx.version!r}")
    checks.check("vcpkg.json: license MIT, description, homepage",
                 manifest.get("license") == "MIT" and bool(manifest.get("description"))
                 and str(manifest.get("homepage", "")).startswith("https://"), json.dumps(manifest)[:200])
    deps = {d["name"] if isinstance(d, dict) else d: d for d in manifest.get("dependencies", [])}
    checks.check("vcpkg.json: host dependencies vcpkg-cmake and vcpkg-cmake-config",
                 all(isinstance(deps.get(n), dict) and deps[n].get("host") is True
                     for n in ("vcpkg-cmake", "vcpkg-cmake-config")), str(deps))
    feats = manifest.get("features", {})
    for feat, dep in (("eigen", "eigen3"), ("xtensor", "xtensor")):
        fdeps = [d["name"] if isinstance(d, dict) else d for d in feats.get(feat, {}).get("dependencies", [])]
        checks.check(f"vcpkg.json: feature '{feat}' depends on '{dep}'",
                     dep in fdeps and bool(feats.get(feat, {}).get("description")), str(feats.get(feat)))
    allowed = {"name", "version", "port-version", "description", "homepage", "license", "supports", "dependencies",
               "features", "default-features", "documentation", "maintainers"}
    checks.check("vcpkg.json: only known top-level fields", set(manifest) <= allowed, str(set(manifest) - allowed))
    # A real vcpkg checkout: `vcpkg format-manifest --all` / x-add-version would validate the schema further.


def parse_portfile(ctx, checks):
    port = ctx.source / "ports" / "skipstep"
    text = (port / "portfile.cmake").read_text()
    info = {}
    gh = cmake_tokens(cmake_call_args(text, "vcpkg_from_github"))
    checks.check("portfile: vcpkg_from_github(REPO skipstep/skipstep REF v${VERSION} SHA512 ...)",
                 "REPO" in gh and gh[gh.index("REPO") + 1] == "skipstep/skipstep" and "REF" in gh
                 and gh[gh.index("REF") + 1] == "v${VERSION}" and "SHA512" in gh and "OUT_SOURCE_PATH" in gh, str(gh))
    conf = cmake_tokens(cmake_call_args(text, "vcpkg_cmake_configure"))
    options = [t for t in conf if t.startswith("-D")]
    info["options"] = options
    # vcpkg_check_features(OUT_FEATURE_OPTIONS <var> FEATURES <feature> <cmake var> ...): the features must decide
    # the backend targets, through options the configure step receives and the installed config records.
    feats = cmake_tokens(cmake_call_args(text, "vcpkg_check_features"))
    out_var = feats[feats.index("OUT_FEATURE_OPTIONS") + 1] if "OUT_FEATURE_OPTIONS" in feats else None
    pairs = []
    if "FEATURES" in feats:
        for t in feats[feats.index("FEATURES") + 1:]:
            if t == "INVERTED_FEATURES":
                break
            pairs.append(t)
    info["feature_options"] = dict(zip(pairs[0::2], pairs[1::2]))
    checks.check("portfile: vcpkg_check_features maps eigen -> SKIPSTEP_WITH_EIGEN, xtensor -> SKIPSTEP_WITH_XTENSOR",
                 info["feature_options"] == {"eigen": "SKIPSTEP_WITH_EIGEN", "xtensor": "SKIPSTEP_WITH_XTENSOR"},
                 str(feats))
    info["passes_features"] = out_var is not None and "${" + out_var + "}" in conf
    checks.check("portfile: vcpkg_cmake_configure OPTIONS include the feature options", info["passes_features"],
                 str(conf))
    checks.check("portfile: no CMAKE_DISABLE_FIND_PACKAGE_* (the features decide the backends)",
                 not [o for o in options if "CMAKE_DISABLE_FIND_PACKAGE" in o], str(options))
    checks.check("portfile: vcpkg_cmake_configure turns tests, examples and benchmarks off",
                 all(f"-DSKIPSTEP_BUILD_{w}=OFF" in options for w in ("TESTS", "EXAMPLES", "BENCHMARKS"))
                 and "SOURCE_PATH" in conf, str(conf))
    checks.check("portfile: vcpkg_cmake_install()", cmake_call_args(text, "vcpkg_cmake_install") is not None)
    fix = cmake_tokens(cmake_call_args(text, "vcpkg_cmake_config_fixup"))
    info["config_path"] = fix[fix.index("CONFIG_PATH") + 1] if "CONFIG_PATH" in fix else None
    checks.check("portfile: vcpkg_cmake_config_fixup(PACKAGE_NAME skipstep CONFIG_PATH share/skipstep)",
                 "PACKAGE_NAME" in fix and fix[fix.index("PACKAGE_NAME") + 1] == "skipstep"
                 and info["config_path"] == "share/skipstep", str(fix))
    cp = cmake_tokens(cmake_call_args(text, "vcpkg_install_copyright"))
    checks.check("portfile: vcpkg_install_copyright(FILE_LIST ${SOURCE_PATH}/LICENSE)",
                 cp[:2] == ["FILE_LIST", "${SOURCE_PATH}/LICENSE"], str(cp))
    checks.check("portfile: usage installed to share/${PORT}",
                 re.search(r'file\(\s*INSTALL\s+"\$\{CMAKE_CURRENT_LIST_DIR\}/usage"\s+DESTINATION\s+'
                           r'"\$\{CURRENT_PACKAGES_DIR\}/share/\$\{PORT\}"\s*\)', text) is not None)
    removed = []
    for m in re.finditer(r"file\(\s*REMOVE_RECURSE([^)]*)\)", re.sub(r"#[^\n]*", "", text)):
        removed += [t.replace("${CURRENT_PACKAGES_DIR}/", "") for t in cmake_tokens(m.group(1))]
    info["removed"] = removed
    checks.check("portfile: set(VCPKG_BUILD_TYPE release) (header-only: no debug configuration)",
                 re.search(r"set\(\s*VCPKG_BUILD_TYPE\s+release\s*\)", text) is not None)
    checks.check("portfile: the usage file exists", (port / "usage").is_file())
    return info


def vcpkg_post_build_rules(ctx, checks):
    stage = ctx.stage
    files = sorted(p for p in stage.rglob("*") if p.is_file())
    rel = [p.relative_to(stage).as_posix() for p in files]
    headers = sorted(p.relative_to(ctx.source / "include").as_posix()
                     for p in (ctx.source / "include").rglob("*.hpp"))
    missing = [h for h in headers if f"include/{h}" not in rel]
    checks.check(f"post-build: all {len(headers)} public headers installed under include/", not missing,
                 f"missing {missing[:5]}")
    share = [f"share/skipstep/{n}" for n in ("skipstepConfig.cmake", "skipstepConfigVersion.cmake",
                                              "skipstepTargets.cmake", "copyright", "usage")]
    checks.check("post-build: config, version file, targets, copyright, usage in share/skipstep",
                 all(s in rel for s in share), f"missing {[s for s in share if s not in rel]}")
    bad = [r for r in rel if (r.startswith("lib/") or r.startswith("bin/")) and not r.endswith(".pc")]
    checks.check("post-build: nothing in lib/ or bin/ (header-only; .pc files excepted)", not bad, str(bad))
    checks.check("post-build: no debug/ tree", not (stage / "debug").exists())
    misplaced = [r for r in rel if re.search(r"(Config|-config|Targets[^/]*|ConfigVersion)\.cmake$", r)
                 and not r.startswith("share/skipstep/")]
    checks.check("post-build: no CMake config files outside share/skipstep", not misplaced, str(misplaced))
    empty = [d.relative_to(stage).as_posix() for d in stage.rglob("*") if d.is_dir() and not any(d.iterdir())]
    checks.check("post-build: no empty directories", not empty, str(empty))
    needles = set()
    for p in (ctx.source, ctx.work, stage, ctx.work / "vcpkg" / "buildtrees"):
        needles |= {str(p), os.path.realpath(p)}
    hits = []
    for p in files:
        data = p.read_bytes()
        hits += [f"{p.relative_to(stage)}: {n}" for n in needles if n.encode() in data]
    checks.check("post-build: no absolute source, build or package paths in installed files", not hits,
                 "; ".join(hits[:5]))
    lic = (ctx.source / "LICENSE").read_text()
    cr = stage / "share/skipstep/copyright"
    checks.check("post-build: copyright is the LICENSE text", cr.is_file() and cr.read_text().strip() == lic.strip())
    version_file = stage / "share/skipstep/skipstepConfigVersion.cmake"
    m = re.search(r'set\(PACKAGE_VERSION "([^"]+)"\)', version_file.read_text()) if version_file.is_file() else None
    checks.check(f"post-build: installed skipstepConfigVersion.cmake says {ctx.version}",
                 m is not None and m.group(1) == ctx.version, m.group(1) if m else "no PACKAGE_VERSION")


def usage_consumer(ctx, checks):
    usage = (ctx.source / "ports/skipstep/usage").read_text()
    snippet = [ln.strip() for ln in usage.splitlines()
               if ln.startswith("    ") and re.match(r"\s+(find_package|target_link_libraries)\(", ln)]
    checks.check("usage: has find_package(skipstep CONFIG REQUIRED) and target_link_libraries(main ...) lines",
                 "find_package(skipstep CONFIG REQUIRED)" in snippet
                 and any(s.startswith("target_link_libraries(main") for s in snippet), str(snippet))
    proj = ctx.work / "usage_consumer"
    shutil.rmtree(proj, ignore_errors=True)
    proj.mkdir(parents=True)
    find = [s for s in snippet if s.startswith("find_package")]
    link = [s for s in snippet if s.startswith("target_link_libraries")]
    (proj / "CMakeLists.txt").write_text(
        "# Generated by run_packaging_checks from ports/skipstep/usage: the snippet lines verbatim.\n"
        "cmake_minimum_required(VERSION 3.21)\nproject(usage_consumer LANGUAGES CXX)\n"
        + "\n".join(find) + "\nadd_executable(main main.cpp)\n" + "\n".join(link) + "\n"
        f'if(NOT skipstep_VERSION VERSION_EQUAL "{ctx.version}")\n'
        '  message(FATAL_ERROR "found skipstep ${skipstep_VERSION}")\nendif()\n'
        'message(STATUS "skipstep_DIR=${skipstep_DIR}")\n')
    (proj / "main.cpp").write_text(r'''// Generated consumer: every backend the usage file names, one short DDIM run each.
#include <skipstep/skipstep.hpp>
#include <skipstep/backend/eigen.hpp>
#include <skipstep/backend/xtensor.hpp>
#include <cmath>
#include <cstdio>
template <class X> double run(X x) {
  const auto s = skipstep::noise_schedule<>::linear(1000);
  skipstep::ddim_sampler(s, skipstep::timestep_schedule::leading(1000, 10)).sample(
      [&](const X& xt, std::int64_t t, std::span<double> out) {
        const double a = s.alpha_cumprod(static_cast<std::size_t>(t));
        const auto in = skipstep::elements(xt);
        for (std::size_t i = 0; i < out.size(); ++i) out[i] = (in[i] - std::sqrt(a) * 0.5) / std::sqrt(1.0 - a);
      }, x);
  double e = 0;
  for (double v : skipstep::elements(x)) e = std::fmax(e, std::abs(v - 0.5));
  return e;
}
int main() {
  Eigen::VectorXd ev = Eigen::VectorXd::Constant(4, 1.0);
  const double e1 = run(ev), e2 = run(xt::xarray<double>{1.0, -1.0, 2.0});
  std::printf("usage consumer: skipstep %s, eigen error %.1e, xtensor error %.1e\n", skipstep::version_string, e1, e2);
  return e1 < 1e-9 && e2 < 1e-9 ? 0 : 1;
}
''')
    ok, out = ctx.build_project(checks, "usage consumer", proj, proj / "build",
                                [f"-DCMAKE_PREFIX_PATH={ctx.stage}"], run_exe="main")
    if ok:
        m = re.search(r"skipstep_DIR=(\S+)", out)
        found = os.path.realpath(m.group(1)) if m else None
        checks.check("usage consumer: skipstep found in the staged share/skipstep",
                     found == os.path.realpath(ctx.stage / "share/skipstep"), str(found))


def feature_options(port, features):
    """What vcpkg_check_features puts in its OUT_FEATURE_OPTIONS: -D<var>=ON for a selected feature, else OFF."""
    return [f"-D{var}={'ON' if feat in features else 'OFF'}" for feat, var in port["feature_options"].items()]


def vcpkg_install(ctx, checks, port, features, stage, label):
    """Emulated `vcpkg install skipstep[features]` into the packages dir `stage`; False if a step failed."""
    root = stage.parents[1]
    buildtree = root / "buildtrees" / "skipstep" / "x64-linux-rel"
    shutil.rmtree(root, ignore_errors=True)
    buildtree.mkdir(parents=True)
    log = ctx.logs / f"vcpkg-build-{label}.log"
    # What vcpkg_cmake_configure passes for the release configuration (vcpkg-cmake port, x64-linux triplet; the
    # toolchain file and VCPKG_* variables are left out: there is no vcpkg root here), then the portfile's OPTIONS.
    vcpkg_flags = [
        "-DCMAKE_BUILD_TYPE=Release", f"-DCMAKE_INSTALL_PREFIX={stage}", "-DFETCHCONTENT_FULLY_DISCONNECTED=ON",
        "-DCMAKE_EXPORT_NO_PACKAGE_REGISTRY=ON", "-DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON",
        "-DCMAKE_FIND_PACKAGE_NO_SYSTEM_PACKAGE_REGISTRY=ON", "-DCMAKE_INSTALL_SYSTEM_RUNTIME_LIBS_SKIP=TRUE",
        "-DCMAKE_VERBOSE_MAKEFILE=ON", "-DCMAKE_ERROR_ON_ABSOLUTE_INSTALL_DESTINATION=ON",
        "-DCMAKE_INSTALL_LIBDIR:STRING=lib", "-DCMAKE_INSTALL_BINDIR:STRING=bin", "-DBUILD_SHARED_LIBS=OFF",
        "-DVCPKG_APPLOCAL_DEPS=OFF",
    ]
    options = (feature_options(port, features) if port["passes_features"] else []) + port["options"]
    cmd = [ctx.cmake, "-S", ctx.source, "-B", buildtree] + vcpkg_flags + options
    if ctx.generator:
        cmd += ["-G", ctx.generator]
    if ctx.cxx:
        cmd.append(f"-DCMAKE_CXX_COMPILER={ctx.cxx}")
    what = f"vcpkg emulation [{label}]"
    rc, out = run(cmd, log)
    if not checks.check(f"{what}: configure with vcpkg_cmake_configure's flags + portfile OPTIONS", rc == 0,
                        f"log {log}:" + tail(out)):
        return False
    unused = re.search(r"Manually-specified variables were not used by the project:\n\n((?:    \S+\n)+)", out)
    unused_vars = unused.group(1).split() if unused else []
    port_vars = [o[2:].split("=")[0].split(":")[0] for o in options]
    checks.check(f"{what}: every portfile OPTION (feature options included) is used by the project",
                 not [v for v in port_vars if v in unused_vars], str(unused_vars))
    rc, out = run([ctx.cmake, "--build", buildtree, "-j", "2"], log)
    checks.check(f"{what}: build (nothing to compile)", rc == 0, tail(out))
    rc, out = run([ctx.cmake, "--install", buildtree], log)
    if not checks.check(f"{what}: install into the packages dir", rc == 0, tail(out)):
        return False
    # The portfile's steps after vcpkg_cmake_install():
    cfg = stage / (port["config_path"] or "share/skipstep")
    checks.check(f"{what}: vcpkg_cmake_config_fixup finds {port['config_path']}/skipstepConfig.cmake",
                 (cfg / "skipstepConfig.cmake").is_file(), f"not found in {cfg}")
    pcs = [p.relative_to(stage).as_posix() for p in stage.rglob("*.pc")]
    checks.check(f"{what}: vcpkg_fixup_pkgconfig finds share/pkgconfig/skipstep.pc",
                 pcs == ["share/pkgconfig/skipstep.pc"], str(pcs))
    for r in port["removed"]:
        # A removal of something the install never creates is dead code in the portfile.
        checks.check(f"{what}: file(REMOVE_RECURSE {r}) removes something the install created", (stage / r).exists())
        shutil.rmtree(stage / r, ignore_errors=True)
    (stage / "share/skipstep").mkdir(parents=True, exist_ok=True)
    shutil.copy(ctx.source / "ports/skipstep/usage", stage / "share/skipstep/usage")
    shutil.copy(ctx.source / "LICENSE", stage / "share/skipstep/copyright")  # vcpkg_install_copyright
    return True


def group_stage(ctx, checks):
    check_vcpkg_json(ctx, checks)
    port = parse_portfile(ctx, checks)
    # The fixture of the other groups: every feature, so the backends' targets can be consumed.
    if vcpkg_install(ctx, checks, port, set(port["feature_options"]), ctx.stage, "eigen,xtensor"):
        vcpkg_post_build_rules(ctx, checks)
        usage_consumer(ctx, checks)
