import os

from conan import ConanFile
from conan.tools.build import can_run
from conan.tools.cmake import CMake, CMakeDeps, CMakeToolchain, cmake_layout


class SkipstepTestConan(ConanFile):
    settings = "os", "arch", "compiler", "build_type"
    generators = "CMakeDeps"

    def requirements(self):
        self.requires(self.tested_reference_str)

    def layout(self):
        cmake_layout(self)

    def generate(self):
        # One executable per target the tested package provides: the core always, each backend when enabled.
        tc = CMakeToolchain(self)
        options = self.dependencies["skipstep"].options
        for backend in ("eigen", "xtensor"):
            tc.variables[f"SKIPSTEP_TEST_{backend.upper()}"] = bool(options.get_safe(backend))
        tc.generate()

    def build(self):
        cmake = CMake(self)
        cmake.configure()
        cmake.build()

    def test(self):
        if not can_run(self):
            return
        options = self.dependencies["skipstep"].options
        for exe, enabled in (("test_package", True), ("test_package_eigen", options.get_safe("eigen")),
                             ("test_package_xtensor", options.get_safe("xtensor"))):
            if enabled:
                self.run(os.path.join(self.cpp.build.bindir, exe), env="conanrun")
