"""Conan 2 recipe for skipstep, a header-only C++20 library of diffusion samplers.

    conan create . -o "skipstep/*:eigen=True"          # builds and runs test_package/
    # a consumer's conanfile: requires = "skipstep/0.1.0"; generators = "CMakeDeps", "CMakeToolchain"
    #   find_package(skipstep CONFIG REQUIRED)
    #   target_link_libraries(app PRIVATE skipstep::skipstep)   # or skipstep::eigen / skipstep::xtensor

The options only add the backend library as a requirement (the headers are the same either way), so the
package id is cleared: one binary package serves every configuration.
"""
import os

from conan import ConanFile
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
    exports_sources = "include/*", "LICENSE"
    no_copy_source = True

    def layout(self):
        basic_layout(self, src_folder=".")

    def requirements(self):
        # Backends: Eigen 3.4 or 5.x (skipstepFindBackends.cmake accepts both), xtensor 0.24 up to today's 0.27
        # (<skipstep/backend/xtensor.hpp> handles both header layouts).
        if self.options.eigen:
            self.requires("eigen/[>=3.4 <6]")
        if self.options.xtensor:
            self.requires("xtensor/[>=0.24]")

    def validate(self):
        check_min_cppstd(self, 20)

    def package_id(self):
        self.info.clear()

    def package(self):
        copy(self, "LICENSE", src=self.source_folder, dst=os.path.join(self.package_folder, "licenses"))
        copy(self, "*.hpp", src=os.path.join(self.source_folder, "include"),
             dst=os.path.join(self.package_folder, "include"))

    def package_info(self):
        # The same names as skipstep's own CMake package (skipstepConfig.cmake), so consumer CMake code is identical.
        self.cpp_info.set_property("cmake_file_name", "skipstep")
        self.cpp_info.set_property("cmake_target_name", "skipstep::skipstep")
        self.cpp_info.set_property("pkg_config_name", "skipstep")
        aliases = []
        if self.options.eigen:
            aliases.append("skipstep::eigen")
        if self.options.xtensor:
            aliases.append("skipstep::xtensor")
        if aliases:
            # skipstep::skipstep links the enabled backends' targets, the aliases keep skipstepConfig's names.
            self.cpp_info.set_property("cmake_target_aliases", aliases)
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []
