"""Stand-ins for the real Conan 2: a stub `conan` Python module to execute the recipe (and test_package's recipe)
with, and the config files CMakeDeps would generate from package_info(): component targets, the root target that
aggregates them, find_dependency() of the requirements, the build modules, and the version file of the
`cmake_config_version_compat` policy (SameMajorVersion when unset, as in CMakeDeps)."""
import fnmatch
import os
import shutil
import sys
import types

# What the conan-center recipes of the backends call their root targets, and the CMake package they come from.
DEPENDENCY_TARGETS = {"eigen": ("Eigen3", "Eigen3::Eigen"), "xtensor": ("xtensor", "xtensor")}


class ConanInvalidConfiguration(Exception):
    pass


class Options:
    def __init__(self, values):
        self.__dict__.update(values)

    def get_safe(self, name, default=None):
        return self.__dict__.get(name, default)


class Info:
    def __init__(self):
        self.cleared = False

    def clear(self):
        self.cleared = True


class Components(dict):
    """cpp_info.components: a component is created by its first use, as in Conan."""
    def __missing__(self, name):
        self[name] = CppInfo(component=True)
        return self[name]


class CppInfo:
    def __init__(self, component=False):
        self.properties = {}
        self.includedirs = ["include"]
        self.bindirs = ["bin"]
        self.libdirs = ["lib"]
        self.libs = []
        self.defines = []
        self.requires = []
        if not component:
            self.components = Components()

    def set_property(self, key, value):
        self.properties[key] = value

    def get_property(self, key):
        return self.properties.get(key)


class Settings:
    def __init__(self, values):
        self.values = values

    def get_safe(self, name, default=None):
        return self.values.get(name, default)


class ConanFile:
    """The base class a recipe derives from: options, settings (compiler.cppstd only), folders, requirements."""
    def __init__(self, options, source_folder, package_folder, cppstd="20", dependencies=None):
        values = dict(getattr(self, "default_options", {}))
        values.update(options)
        self.options = Options(values)
        self.source_folder = str(source_folder)
        self.package_folder = str(package_folder)
        self.info = Info()
        self.cpp_info = CppInfo()
        self.requirements_seen = []
        self.settings = Settings({"compiler.cppstd": cppstd})
        self.dependencies = dependencies or {}
        self.tested_reference_str = "skipstep/test"
        self.cpp = types.SimpleNamespace(build=types.SimpleNamespace(bindir="."))
        self.toolchain_variables = {}

    def requires(self, ref, **kwargs):
        self.requirements_seen.append(ref)

    def run(self, *args, **kwargs):
        pass


def check_min_cppstd(conanfile, version):
    """Like conan.tools.build.check_min_cppstd: compiler.cppstd (e.g. 17, gnu17, 20) below `version` is rejected."""
    cppstd = conanfile.settings.get_safe("compiler.cppstd")
    if cppstd is not None and int(str(cppstd).replace("gnu", "")) < int(version):
        raise ConanInvalidConfiguration(f"Current cppstd ({cppstd}) is lower than the required C++ standard "
                                        f"({version}).")


class CMakeToolchain:
    """Records the variables a recipe's generate() sets (they become -D options of the emulated configure)."""
    def __init__(self, conanfile):
        self.conanfile = conanfile
        self.variables = {}

    def generate(self):
        self.conanfile.toolchain_variables.update(self.variables)


def install_conan_stub(log):
    """Installs the stub as the `conan` package: enough to execute a header-only recipe's methods."""
    def copy(conanfile, pattern, src, dst, **kwargs):
        copied = []
        for root, _, names in os.walk(src):
            for n in names:
                rel = os.path.relpath(os.path.join(root, n), src)
                if fnmatch.fnmatch(rel, pattern):
                    os.makedirs(os.path.join(dst, os.path.dirname(rel)), exist_ok=True)
                    shutil.copy2(os.path.join(root, n), os.path.join(dst, rel))
                    copied.append(rel)
        log.append(f"copy({pattern!r}): {len(copied)} files")
        return copied

    mods = {n: types.ModuleType(n) for n in ("conan", "conan.errors", "conan.tools", "conan.tools.files",
                                              "conan.tools.build", "conan.tools.layout", "conan.tools.cmake")}
    mods["conan"].ConanFile = ConanFile
    mods["conan.errors"].ConanInvalidConfiguration = ConanInvalidConfiguration
    mods["conan.tools.files"].copy = copy
    mods["conan.tools.build"].check_min_cppstd = check_min_cppstd
    mods["conan.tools.build"].can_run = lambda conanfile: True
    mods["conan.tools.layout"].basic_layout = lambda conanfile, **kw: None
    mods["conan.tools.cmake"].cmake_layout = lambda conanfile, **kw: None
    mods["conan.tools.cmake"].CMake = object
    mods["conan.tools.cmake"].CMakeDeps = object
    mods["conan.tools.cmake"].CMakeToolchain = CMakeToolchain
    sys.modules.update(mods)


def component_link(recipe, req):
    """The CMake target a component's `requires` entry names: another component, or a requirement's root."""
    if "::" not in req:
        return recipe.cpp_info.components[req].properties.get("cmake_target_name", f"{recipe.name}::{req}")
    return DEPENDENCY_TARGETS[req.split("::")[0]][1]


def version_file(version, policy):
    """<pkg>-config-version.cmake for a CMakeDeps compatibility policy."""
    major, minor, patch = (version.split(".") + ["", "", ""])[:3]
    same = {"AnyNewerVersion": "TRUE",
            "SameMajorVersion": f'PACKAGE_FIND_VERSION_MAJOR STREQUAL "{major}"',
            "SameMinorVersion": f'PACKAGE_FIND_VERSION_MAJOR STREQUAL "{major}" AND '
                                f'PACKAGE_FIND_VERSION_MINOR STREQUAL "{minor}"',
            "ExactVersion": f'PACKAGE_FIND_VERSION_MAJOR STREQUAL "{major}" AND '
                            f'PACKAGE_FIND_VERSION_MINOR STREQUAL "{minor}" AND '
                            f'PACKAGE_FIND_VERSION_PATCH STREQUAL "{patch}"'}[policy or "SameMajorVersion"]
    return (f'set(PACKAGE_VERSION "{version}")\n'
            "set(PACKAGE_VERSION_COMPATIBLE FALSE)\n"
            f"if(NOT PACKAGE_VERSION VERSION_LESS PACKAGE_FIND_VERSION AND ({same}))\n"
            "  set(PACKAGE_VERSION_COMPATIBLE TRUE)\n"
            "endif()\n"
            'if(PACKAGE_FIND_VERSION STREQUAL PACKAGE_VERSION)\n  set(PACKAGE_VERSION_EXACT TRUE)\nendif()\n')


def target_lines(target, includes, links, defines):
    return [f"if(NOT TARGET {target})",
            f"  add_library({target} INTERFACE IMPORTED)",
            "endif()",
            f'set_target_properties({target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "{";".join(includes)}"',
            f'  INTERFACE_LINK_LIBRARIES "{";".join(links)}" INTERFACE_COMPILE_DEFINITIONS "{";".join(defines)}")']


def conandeps_config(recipe, pkg, gen):
    """What CMakeDeps would generate from package_info(), reduced to names, include dirs, links and defines."""
    info = recipe.cpp_info
    props = info.properties
    file_name = props.get("cmake_file_name", recipe.name)
    root = props.get("cmake_target_name", f"{recipe.name}::{recipe.name}")
    shutil.rmtree(gen, ignore_errors=True)
    gen.mkdir(parents=True)
    lines = [f"# Emulated CMakeDeps output for {recipe.name}/{recipe.version}", "include(CMakeFindDependencyMacro)"]
    for ref in recipe.requirements_seen:
        lines.append(f"find_dependency({DEPENDENCY_TARGETS[ref.split('/')[0]][0]})")
    if info.components:
        # Components first (in declaration order, so a component's requires exist), then the root linking them all.
        for name, comp in info.components.items():
            target = comp.properties.get("cmake_target_name", f"{recipe.name}::{name}")
            lines += target_lines(target, [str(pkg / d) for d in comp.includedirs],
                                  [component_link(recipe, r) for r in comp.requires], comp.defines)
        comps = [c.properties.get("cmake_target_name", f"{recipe.name}::{n}") for n, c in info.components.items()]
        lines += target_lines(root, [], [c for c in comps if c != root], [])
    else:
        links = [DEPENDENCY_TARGETS[r.split("/")[0]][1] for r in recipe.requirements_seen]
        lines += target_lines(root, [str(pkg / d) for d in info.includedirs], links, info.defines)
        for alias in props.get("cmake_target_aliases", []):
            lines += target_lines(alias, [], [root], [])
    for module in props.get("cmake_build_modules", []):
        lines.append(f'include("{pkg / module}")')
    (gen / f"{file_name}-config.cmake").write_text("\n".join(lines) + "\n")
    (gen / f"{file_name}-config-version.cmake").write_text(
        version_file(recipe.version, props.get("cmake_config_version_compat")))
