"""Conan 2 recipe for skipstep, a header-only C++20 library of diffusion samplers.

    conan create . -s compiler.cppstd=20 -o "skipstep/*:eigen=True"   # builds and runs test_package/
    # a consumer's conanfile: requires = "skipstep/0.1.0"; generators = "CMakeDeps", "CMakeToolchain"
    #   find_package(skipstep 0.1 CONFIG REQUIRED COMPONENTS eigen)
    #   target_link_libraries(app PRIVATE skipstep::eigen)      # or skipstep::skipstep / skipstep::xtensor

C++20 is required: the profile `conan profile detect` writes (the compiler's default, gnu17 with today's GCC)
is rejected unless compiler.cppstd is 20 or gnu20 (-s compiler.cppstd=20, or in the profile).

The options only add the backend library as a requirement (the headers are the same either way), so the
package id is cleared: one binary package serves every configuration. What was built against: Eigen 3.4.0 and
xtensor 0.24.3 (Debian 12). The ranges below also admit Eigen 5 and xtensor 0.26/0.27, whose CMake version
rules and header layout tests/packaging only emulates; xtensor 0.27's recipe needs CMake >= 3.29 as a tool.
"""
import os

from conan import ConanFile
from conan.errors import ConanInvalidConfiguration
from conan.tools.build import check_min_cppstd
from conan.tools.files import copy
from conan.tools.layout import basic_layout

required_conan_version = ">=2.0"


class SkipstepConan(ConanFile):
    name = "skipstep"
    version = "0.1.0"  # must equal project(skipstep VERSION ...) in CMakeLists.txt (checked by tests/packaging)
    license = "MIT"
    url = "https://github.com/skipstep/skipstep"
    homepage = "https://github.com/skipstep/skipstep"
    description = ("Header-only C++20 diffusion samplers (DDIM, DDPM, DDIM inversion) with timestep skipping, "
                   "sigma policies and classifier-free guidance")
    topics = ("diffusion", "ddim", "ddpm", "sampler", "header-only", "eigen", "xtensor")
    package_type = "header-library"
    settings = "os", "arch", "compiler", "build_type"
    options = {"eigen": [True, False], "xtensor": [True, False]}
    default_options = {"eigen": False, "xtensor": False}
    exports_sources = "include/*", "LICENSE", "cmake/skipstep-conan-components.cmake"
    no_copy_source = True

    def layout(self):
        basic_layout(self, src_folder=".")

    def requirements(self):
        # Backends: Eigen 3.4 or 5.x (skipstepFindBackends.cmake accepts both), xtensor 0.24 up to today's 0.27
        # (<skipstep/backend/xtensor.hpp> handles both header layouts). Built against: Eigen 3.4.0 and xtensor
        # 0.24.3 only (see the docstring); today these ranges resolve to Eigen 5.0.1 and xtensor 0.27.
        if self.options.eigen:
            self.requires("eigen/[>=3.4 <6]")
        if self.options.xtensor:
            self.requires("xtensor/[>=0.24]")

    def validate(self):
        # check_min_cppstd only says the standard is too low; name the setting that fixes it.
        try:
            check_min_cppstd(self, 20)
        except ConanInvalidConfiguration as e:
            raise ConanInvalidConfiguration(
                f"skipstep/{self.version} needs C++20 ({e}): pass -s compiler.cppstd=20 (or gnu20), or set "
                "compiler.cppstd=20 in your profile (`conan profile detect` writes the compiler's default, "
                "gnu17 with today's GCC)") from e

    def package_id(self):
        self.info.clear()

    def package(self):
        copy(self, "LICENSE", src=self.source_folder, dst=os.path.join(self.package_folder, "licenses"))
        copy(self, "*.hpp", src=os.path.join(self.source_folder, "include"),
             dst=os.path.join(self.package_folder, "include"))
        copy(self, "skipstep-conan-components.cmake", src=os.path.join(self.source_folder, "cmake"),
             dst=os.path.join(self.package_folder, "cmake"))

    def package_info(self):
        # Components mirror skipstep's own CMake package (skipstepConfig.cmake), so consumer CMake code is the same:
        # skipstep::skipstep is the dependency-free core, each enabled backend is a target of its own. CMakeDeps links
        # every component into the root target, so the root gets another name: skipstep::skipstep_all.
        self.cpp_info.set_property("cmake_file_name", "skipstep")
        self.cpp_info.set_property("cmake_target_name", "skipstep::skipstep_all")
        self.cpp_info.set_property("pkg_config_name", "skipstep-all")
        # Like skipstepConfigVersion.cmake (SameMinorVersion, CMakeLists.txt): in 0.x a minor release may break the
        # API, so find_package(skipstep 0.1) must not accept 0.2 (CMakeDeps' default is SameMajorVersion).
        self.cpp_info.set_property("cmake_config_version_compat", "SameMinorVersion")
        # Included by the generated skipstep-config.cmake: checks find_package(skipstep COMPONENTS ...) at find
        # time, as skipstepConfig.cmake does (CMakeDeps itself does not).
        self.cpp_info.set_property("cmake_build_modules", [os.path.join("cmake", "skipstep-conan-components.cmake")])
        self.cpp_info.includedirs = []
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []

        core = self.cpp_info.components["core"]
        core.set_property("cmake_target_name", "skipstep::skipstep")
        core.set_property("pkg_config_name", "skipstep")
        core.includedirs = ["include"]
        core.bindirs = []
        core.libdirs = []
        for backend, requirement in (("eigen", "eigen::eigen"), ("xtensor", "xtensor::xtensor")):
            if self.options.get_safe(backend):
                comp = self.cpp_info.components[backend]
                comp.set_property("cmake_target_name", f"skipstep::{backend}")
                comp.set_property("pkg_config_name", f"skipstep-{backend}")
                comp.requires = ["core", requirement]  # the backend's include paths and defines stay here
                comp.includedirs = []
                comp.bindirs = []
                comp.libdirs = []
