# vcpkg overlay port for skipstep, a header-only C++20 library.
#   vcpkg install skipstep[eigen,xtensor] --overlay-ports=<skipstep checkout>/ports
#
# skipstep has no public release yet: SHA512 0 is a placeholder. vcpkg prints the real hash on the first
# `vcpkg install`; put it here when the v${VERSION} tag exists (or use `vcpkg install --head` meanwhile).
vcpkg_from_github(
    OUT_SOURCE_PATH SOURCE_PATH
    REPO skipstep/skipstep
    REF "v${VERSION}"
    SHA512 0
    HEAD_REF main
)

# Header-only: one (release) configuration is enough, nothing is compiled.
set(VCPKG_BUILD_TYPE release)

# The backends are found (quietly) by skipstepConfig.cmake at the consumer's configure time; the features only make
# vcpkg install Eigen / xtensor. Only the headers and the CMake / pkg-config package are installed here.
vcpkg_cmake_configure(
    SOURCE_PATH "${SOURCE_PATH}"
    OPTIONS
        -DSKIPSTEP_BUILD_TESTS=OFF
        -DSKIPSTEP_BUILD_EXAMPLES=OFF
        -DSKIPSTEP_BUILD_BENCHMARKS=OFF
        -DSKIPSTEP_INSTALL=ON
        -DCMAKE_DISABLE_FIND_PACKAGE_Eigen3=ON
        -DCMAKE_DISABLE_FIND_PACKAGE_xtensor=ON
)
vcpkg_cmake_install()
vcpkg_cmake_config_fixup(PACKAGE_NAME skipstep CONFIG_PATH share/skipstep)
vcpkg_fixup_pkgconfig()

# Nothing architecture-dependent is installed: no debug tree, no lib/ (the .pc file lives in share/pkgconfig).
file(REMOVE_RECURSE
    "${CURRENT_PACKAGES_DIR}/debug"
    "${CURRENT_PACKAGES_DIR}/lib"
    "${CURRENT_PACKAGES_DIR}/share/doc"
)

file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
