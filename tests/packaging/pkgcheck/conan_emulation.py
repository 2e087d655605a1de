"""Stand-ins for the real Conan 2: a stub `conan` Python module to execute the recipe with, and the config files
CMakeDeps would generate from its package_info()."""
import fnmatch
import os
import shutil
import sys
import types


def install_conan_stub(log):
    """A minimal stand-in for the `conan` Python package: enough to execute a header-only recipe's methods."""
    class Options:
        def __init__(self, values):
            self.__dict__.update(values)

    class Info:
        def __init__(self):
            self.cleared = False

        def clear(self):
            self.cleared = True

    class CppInfo:
        def __init__(self):
            self.properties = {}
            self.includedirs = ["include"]
            self.bindirs = ["bin"]
            self.libdirs = ["lib"]
            self.libs = []

        def set_property(self, key, value):
            self.properties[key] = value

    class ConanFile:
        def __init__(self, options, source_folder, package_folder):
            values = dict(getattr(self, "default_options", {}))
            values.update(options)
            self.options = Options(values)
            self.source_folder = str(source_folder)
            self.package_folder = str(package_folder)
            self.info = Info()
            self.cpp_info = CppInfo()
            self.requirements_seen = []
            self.settings = types.SimpleNamespace(get_safe=lambda *_: None)

        def requires(self, ref, **kwargs):
            self.requirements_seen.append(ref)

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

    mods = {n: types.ModuleType(n) for n in ("conan", "conan.tools", "conan.tools.files", "conan.tools.build",
                                              "conan.tools.layout", "conan.tools.cmake")}
    mods["conan"].ConanFile = ConanFile
    mods["conan.tools.files"].copy = copy
    mods["conan.tools.build"].check_min_cppstd = lambda conanfile, v: log.append(f"check_min_cppstd({v})")
    mods["conan.tools.build"].can_run = lambda conanfile: True
    mods["conan.tools.layout"].basic_layout = lambda conanfile, **kw: None
    mods["conan.tools.cmake"].cmake_layout = lambda conanfile, **kw: None
    mods["conan.tools.cmake"].CMake = object
    sys.modules.update(mods)


def conandeps_config(ctx, recipe, pkg, gen):
    """What CMakeDeps would generate from package_info(), reduced to the names and include dirs."""
    props = recipe.cpp_info.properties
    file_name, target = props.get("cmake_file_name"), props.get("cmake_target_name")
    gen.mkdir(parents=True, exist_ok=True)
    deps = {"eigen": ("Eigen3", "Eigen3::Eigen"), "xtensor": ("xtensor", "xtensor")}
    lines = [f"# Emulated CMakeDeps output for {recipe.name}/{recipe.version}",
             "include(CMakeFindDependencyMacro)"]
    links = []
    for ref in recipe.requirements_seen:
        pkg_name, tgt = deps[ref.split("/")[0]]
        lines.append(f"find_dependency({pkg_name})")
        links.append(tgt)
    lines += [f"if(NOT TARGET {target})",
              f"  add_library({target} INTERFACE IMPORTED)",
              f'  set_target_properties({target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "'
              + ";".join(str(pkg / d) for d in recipe.cpp_info.includedirs) + f'" INTERFACE_LINK_LIBRARIES "'
              + ";".join(links) + '")']
    for alias in props.get("cmake_target_aliases", []):
        lines.append(f"  add_library({alias} INTERFACE IMPORTED)")
        lines.append(f'  set_target_properties({alias} PROPERTIES INTERFACE_LINK_LIBRARIES "{target}")')
    lines.append("endif()")
    (gen / f"{file_name}-config.cmake").write_text("\n".join(lines) + "\n")
    (gen / f"{file_name}-config-version.cmake").write_text(
        f'set(PACKAGE_VERSION "{recipe.version}")\nset(PACKAGE_VERSION_COMPATIBLE TRUE)\n')
