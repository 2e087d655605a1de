"""The Conan recipe: conanfile.py read with `ast`, executed against the stub conan module, and test_package
built against the emulated CMakeDeps output and against the staged vcpkg prefix."""
import ast
import fnmatch
import re
import shutil

from .common import run

from .conan_consumers import check_consumers
from .conan_emulation import ConanInvalidConfiguration, install_conan_stub

# The targets of skipstep's own CMake package, which the recipe's components must mirror.
COMPONENT_TARGETS = {"core": "skipstep::skipstep", "eigen": "skipstep::eigen", "xtensor": "skipstep::xtensor"}
BACKEND_REQUIRES = {"eigen": "eigen::eigen", "xtensor": "xtensor::xtensor"}


def ast_class(tree, base):
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(getattr(b, "id", None) == base for b in node.bases):
            return node
    return None


def class_attrs(cls):
    out = {}
    for st in cls.body:
        if isinstance(st, ast.Assign) and len(st.targets) == 1 and isinstance(st.targets[0], ast.Name):
            try:
                out[st.targets[0].id] = ast.literal_eval(st.value)
            except ValueError:
                out[st.targets[0].id] = ast.unparse(st.value)
    return out


def class_methods(cls):
    return {f.name: ast.unparse(f) for f in cls.body if isinstance(f, ast.FunctionDef)}


def run_recipe(recipe_cls, exported, pkg, options, cppstd="20"):
    """The recipe's methods in the order `conan create` calls them; returns the recipe object."""
    recipe = recipe_cls(options, exported, pkg, cppstd=cppstd)
    for m in ("layout", "requirements", "validate", "package_id", "package", "package_info"):
        if hasattr(recipe, m):
            getattr(recipe, m)()
    recipe.package_path = pkg
    return recipe


def component_targets(recipe):
    return {n: c.properties.get("cmake_target_name") for n, c in recipe.cpp_info.components.items()}


def check_test_package_sources(ctx, checks):
    tp = ctx.source / "test_package"
    try:
        tcls = ast_class(ast.parse((tp / "conanfile.py").read_text()), "ConanFile")
        tmeth = class_methods(tcls)
        tattrs = class_attrs(tcls)
        tok = ("self.tested_reference_str" in tmeth.get("requirements", "") and "test" in tmeth
               and "CMakeDeps" in str(tattrs.get("generators", "")) + tmeth.get("generate", ""))
    except (OSError, SyntaxError, AttributeError) as e:
        tok = False
        tmeth = str(e)
    checks.check("test_package/conanfile.py: requires tested_reference_str, CMakeDeps, test()", tok, str(tmeth)[:200])
    tcm = (tp / "CMakeLists.txt").read_text() if (tp / "CMakeLists.txt").is_file() else ""
    checks.check("test_package/CMakeLists.txt: find_package(skipstep ... CONFIG REQUIRED), links skipstep::skipstep "
                 "and skipstep::${backend}", re.search(r"find_package\(skipstep [^)]*CONFIG REQUIRED", tcm) is not None
                 and "skipstep::skipstep" in tcm and "skipstep::${_backend}" in tcm)
    # `conan create .` builds test_package in place (cmake_layout: test_package/build/<type>/, 45 files last time).
    probe = ["test_package/build/Release/generators/conan_toolchain.cmake", "test_package/build/Release/test_package",
             "test_package/CMakeUserPresets.json"]
    if not (ctx.source / ".git").exists():
        print("SKIP conan: .gitignore check (not a git checkout)")
        return
    rc, out = run(["git", "-C", ctx.source, "check-ignore", "--no-index"] + probe, ctx.logs / "conan.log")
    ignored = out.split()
    checks.check("conan: .gitignore covers what `conan create .` leaves in test_package/",
                 rc == 0 and sorted(ignored) == sorted(probe), f"ignored: {ignored}")


def check_full_recipe(ctx, checks, recipe):
    pkg = recipe.package_path
    checks.check("conan emulation: eigen=True, xtensor=True require eigen/[>=3.4 <6], xtensor/[>=0.24]",
                 recipe.requirements_seen == ["eigen/[>=3.4 <6]", "xtensor/[>=0.24]"], str(recipe.requirements_seen))
    checks.check("conan emulation: package_id() cleared the info", recipe.info.cleared)
    pfiles = sorted(p.relative_to(pkg).as_posix() for p in pkg.rglob("*") if p.is_file())
    headers = sorted(p.relative_to(ctx.source).as_posix() for p in (ctx.source / "include").rglob("*.hpp"))
    extra = ["cmake/skipstep-conan-components.cmake", "licenses/LICENSE"]
    checks.check("conan emulation: package() = every header + licenses/LICENSE + the build module, nothing else",
                 pfiles == sorted(headers + extra), str([f for f in pfiles if f not in headers])[:300])
    info = recipe.cpp_info
    props = info.properties
    targets = component_targets(recipe)
    checks.check("conan emulation: components core, eigen, xtensor named skipstep::skipstep, skipstep::eigen, "
                 "skipstep::xtensor (file name skipstep)",
                 props.get("cmake_file_name") == "skipstep" and targets == COMPONENT_TARGETS, f"{props} {targets}")
    checks.check("conan emulation: the root target is none of them (CMakeDeps links every component into it)",
                 props.get("cmake_target_name") not in COMPONENT_TARGETS.values(), str(props.get("cmake_target_name")))
    core = info.components.get("core")
    checks.check("conan emulation: the core component is dependency-free (its include dir only: no requires, "
                 "no defines)", core is not None and core.requires == [] and core.defines == []
                 and core.includedirs == ["include"] and info.includedirs == [] and info.defines == [],
                 str(vars(core)) if core else "no core component")
    for backend, req in BACKEND_REQUIRES.items():
        comp = info.components.get(backend)
        checks.check(f"conan emulation: component {backend} requires core and {req}, nothing else",
                     comp is not None and sorted(comp.requires) == sorted(["core", req]), str(comp and comp.requires))
    # Conan refuses a recipe whose components leave a requirement unused, or require a package that is not one.
    used = {r.split("::")[0] for c in info.components.values() for r in c.requires if "::" in r}
    declared = {r.split("/")[0] for r in recipe.requirements_seen}
    checks.check("conan emulation: every requirement is used by a component and every component requirement is "
                 "declared", used == declared, f"used {used}, declared {declared}")
    dirs = [(n, c.bindirs, c.libdirs) for n, c in [("root", info)] + list(info.components.items())]
    checks.check("conan emulation: bindirs and libdirs empty everywhere (header-only)",
                 all(b == [] and lib == [] for _, b, lib in dirs), str(dirs))
    m = re.search(r"write_basic_package_version_file\([^)]*COMPATIBILITY\s+(\w+)",
                  (ctx.source / "CMakeLists.txt").read_text())
    ours = m.group(1) if m else None
    checks.check(f"conan emulation: cmake_config_version_compat equals skipstepConfigVersion.cmake's {ours}",
                 ours is not None and props.get("cmake_config_version_compat") == ours,
                 str(props.get("cmake_config_version_compat")))
    checks.check("conan emulation: the find-time component check is a build module of the package",
                 props.get("cmake_build_modules") == ["cmake/skipstep-conan-components.cmake"]
                 and (pkg / "cmake/skipstep-conan-components.cmake").is_file(), str(props.get("cmake_build_modules")))


def check_core_recipe(checks, recipe):
    checks.check("conan emulation: the default options (core only) require nothing and have only the core component",
                 recipe.requirements_seen == [] and component_targets(recipe) == {"core": "skipstep::skipstep"},
                 f"{recipe.requirements_seen} {component_targets(recipe)}")


def check_cppstd(checks, recipe_cls, exported):
    for cppstd in ("gnu17", "17"):
        try:
            run_recipe(recipe_cls, exported, exported.parent / "package-cppstd", {}, cppstd=cppstd)
            why = "accepted"
        except ConanInvalidConfiguration as e:
            why = str(e)
        checks.check(f"conan emulation: compiler.cppstd={cppstd} is rejected, the error names -s compiler.cppstd=20",
                     "-s compiler.cppstd=20" in why and "profile" in why, why)
    for cppstd in ("20", "gnu20", "23"):
        try:
            run_recipe(recipe_cls, exported, exported.parent / "package-cppstd", {}, cppstd=cppstd)
            why = ""
        except ConanInvalidConfiguration as e:
            why = str(e)
        checks.check(f"conan emulation: compiler.cppstd={cppstd} is accepted", why == "", why)


def group_conan(ctx, checks):
    path = ctx.source / "conanfile.py"
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except SyntaxError as e:
        checks.check("conanfile.py: parses", False, str(e))
        return
    checks.check("conanfile.py: parses", True)
    checks.check("conanfile.py: `from conan import ConanFile` (Conan 2)",
                 any(isinstance(n, ast.ImportFrom) and n.module == "conan" and any(a.name == "ConanFile" for a in n.names)
                     for n in ast.walk(tree)))
    cls = ast_class(tree, "ConanFile")
    if not checks.check("conanfile.py: a class deriving from ConanFile", cls is not None):
        return
    attrs, methods = class_attrs(cls), class_methods(cls)
    checks.check("conanfile.py: name skipstep, license MIT, url, description, topics",
                 attrs.get("name") == "skipstep" and attrs.get("license") == "MIT"
                 and str(attrs.get("url", "")).startswith("https://") and bool(attrs.get("description"))
                 and isinstance(attrs.get("topics"), (tuple, list)) and len(attrs["topics"]) > 0, str(attrs)[:300])
    checks.check(f"conanfile.py: version equals project(skipstep VERSION {ctx.version})",
                 attrs.get("version") == ctx.version, f"{attrs.get('version')!r}")
    checks.check('conanfile.py: package_type = "header-library", no_copy_source = True',
                 attrs.get("package_type") == "header-library" and attrs.get("no_copy_source") is True)
    opts = attrs.get("options", {})
    checks.check("conanfile.py: bool options eigen and xtensor with defaults",
                 isinstance(opts, dict) and all(sorted(opts.get(k, []), key=str) == [False, True]
                                                for k in ("eigen", "xtensor"))
                 and set(attrs.get("default_options", {})) >= {"eigen", "xtensor"}, str(opts))
    es = attrs.get("exports_sources", ())
    es = [es] if isinstance(es, str) else list(es)
    matched = {p: [f for f in ctx.source.rglob("*") if f.is_file()
                   and fnmatch.fnmatch(f.relative_to(ctx.source).as_posix(), p)] for p in es}
    checks.check("conanfile.py: exports_sources covers include/ and LICENSE, every pattern matches files",
                 "include/*" in es and "LICENSE" in es and all(matched.values()),
                 str({p: len(v) for p, v in matched.items()}))
    req = methods.get("requirements", "")
    checks.check('conanfile.py: requirements() asks for eigen/[>=3.4 <6] and xtensor/[>=0.24]',
                 "eigen/[>=3.4 <6]" in req and "xtensor/[>=0.24]" in req, req[:200])
    checks.check("conanfile.py: package_id() clears the info", "self.info.clear()" in methods.get("package_id", ""))
    pi = methods.get("package_info", "")
    checks.check("conanfile.py: package() exists", "package" in methods)

    checks.check("conanfile.py: exports_sources includes the find-time component check (a build module)",
                 "cmake/skipstep-conan-components.cmake" in es)
    check_test_package_sources(ctx, checks)

    install_conan_stub([])
    namespace = {"__name__": "conanfile"}
    try:
        exec(compile(path.read_text(), str(path), "exec"), namespace)
        recipe_cls = next(v for v in namespace.values() if isinstance(v, type) and v.__name__ == cls.name)
        shutil.rmtree(ctx.work / "conan", ignore_errors=True)
        exported = ctx.work / "conan" / "export_source"
        for files in matched.values():  # exports_sources -> the export folder
            for f in files:
                dst = exported / f.relative_to(ctx.source)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, dst)
        # `conan create . -o skipstep/*:eigen=True -o skipstep/*:xtensor=True`, and the default (core only).
        full = run_recipe(recipe_cls, exported, ctx.work / "conan" / "package-full", {"eigen": True, "xtensor": True})
        core = run_recipe(recipe_cls, exported, ctx.work / "conan" / "package-core", {})
    except Exception as e:  # noqa: BLE001 - report whatever the recipe raised
        checks.check("conan emulation: recipe methods run (stub conan module)", False, f"{type(e).__name__}: {e}")
        return
    checks.check("conan emulation: recipe methods run (stub conan module)", True)
    check_full_recipe(ctx, checks, full)
    check_core_recipe(checks, core)
    check_cppstd(checks, recipe_cls, exported)
    check_consumers(ctx, checks, full, core)
