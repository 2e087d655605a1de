"""The Conan recipe: conanfile.py read with `ast`, executed against the stub conan module, and test_package
built against the emulated CMakeDeps output and against the staged vcpkg prefix."""
import ast
import fnmatch
import re
import shutil

from .conan_emulation import conandeps_config, install_conan_stub


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
    checks.check("conanfile.py: package_info() sets cmake_file_name skipstep and cmake_target_name skipstep::skipstep",
                 re.search(r"set_property\(\s*'cmake_file_name',\s*'skipstep'\s*\)", pi) is not None
                 and re.search(r"set_property\(\s*'cmake_target_name',\s*'skipstep::skipstep'\s*\)", pi) is not None,
                 pi[:300])
    checks.check("conanfile.py: package_info() empties bindirs and libdirs",
                 "self.cpp_info.bindirs = []" in pi and "self.cpp_info.libdirs = []" in pi)
    checks.check("conanfile.py: package() exists", "package" in methods)

    tp = ctx.source / "test_package"
    try:
        tcls = ast_class(ast.parse((tp / "conanfile.py").read_text()), "ConanFile")
        tmeth = class_methods(tcls)
        tattrs = class_attrs(tcls)
        tok = ("self.tested_reference_str" in tmeth.get("requirements", "") and "test" in tmeth
               and "CMakeDeps" in str(tattrs.get("generators", "")))
    except (OSError, SyntaxError, AttributeError) as e:
        tok = False
        tmeth = str(e)
    checks.check("test_package/conanfile.py: requires tested_reference_str, CMakeDeps, test()", tok, str(tmeth)[:200])
    tcm = (tp / "CMakeLists.txt").read_text() if (tp / "CMakeLists.txt").is_file() else ""
    checks.check("test_package/CMakeLists.txt: find_package(skipstep CONFIG REQUIRED) + skipstep::skipstep",
                 "find_package(skipstep CONFIG REQUIRED)" in tcm and "skipstep::skipstep" in tcm)

    # Execute the recipe against the stub: `conan create . -o skipstep/*:eigen=True -o skipstep/*:xtensor=True`.
    stub_log = []
    install_conan_stub(stub_log)
    namespace = {"__name__": "conanfile"}
    try:
        exec(compile(path.read_text(), str(path), "exec"), namespace)
        recipe_cls = next(v for v in namespace.values() if isinstance(v, type) and v.__name__ == cls.name)
        exported = ctx.work / "conan" / "export_source"
        pkg = ctx.work / "conan" / "package"
        shutil.rmtree(ctx.work / "conan", ignore_errors=True)
        for p, files in matched.items():  # exports_sources -> the export folder
            for f in files:
                dst = exported / f.relative_to(ctx.source)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, dst)
        recipe = recipe_cls({"eigen": True, "xtensor": True}, exported, pkg)
        for m in ("layout", "requirements", "validate", "package_id", "package", "package_info"):
            if hasattr(recipe, m):
                getattr(recipe, m)()
        executed = True
    except Exception as e:  # noqa: BLE001 - report whatever the recipe raised
        executed = False
        checks.check("conan emulation: recipe methods run (stub conan module)", False, f"{type(e).__name__}: {e}")
    if not executed:
        return
    checks.check("conan emulation: recipe methods run (stub conan module)", True)
    checks.check("conan emulation: eigen=True, xtensor=True require eigen/[>=3.4 <6], xtensor/[>=0.24]",
                 recipe.requirements_seen == ["eigen/[>=3.4 <6]", "xtensor/[>=0.24]"], str(recipe.requirements_seen))
    checks.check("conan emulation: package_id() cleared the info", recipe.info.cleared)
    pfiles = sorted(p.relative_to(pkg).as_posix() for p in pkg.rglob("*") if p.is_file())
    headers = sorted(p.relative_to(ctx.source).as_posix() for p in (ctx.source / "include").rglob("*.hpp"))
    checks.check("conan emulation: package() = every header + licenses/LICENSE, nothing else",
                 pfiles == sorted(headers + ["licenses/LICENSE"]), str([f for f in pfiles if f not in headers])[:300])
    props = recipe.cpp_info.properties
    checks.check("conan emulation: package_info() names (file skipstep, target skipstep::skipstep, aliases)",
                 props.get("cmake_file_name") == "skipstep" and props.get("cmake_target_name") == "skipstep::skipstep"
                 and props.get("cmake_target_aliases") == ["skipstep::eigen", "skipstep::xtensor"]
                 and recipe.cpp_info.bindirs == [] and recipe.cpp_info.libdirs == [], str(props))
    gen = ctx.work / "conan" / "generators"
    conandeps_config(ctx, recipe, pkg, gen)
    ctx.build_project(checks, "conan test_package (emulated CMakeDeps)", tp, ctx.work / "conan" / "test_package",
                      [f"-Dskipstep_DIR={gen}"], run_exe="test_package")
    ctx.build_project(checks, "conan test_package (staged vcpkg prefix)", tp, ctx.work / "conan" / "test_package_stage",
                      [f"-DCMAKE_PREFIX_PATH={ctx.stage}"], run_exe="test_package")
