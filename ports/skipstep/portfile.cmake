# vcpkg overlay port for skipstep, a header-only C++20 library.
#   vcpkg install skipstep[eigen,xtensor] --overlay-ports=<skipstep checkout>/ports
#
# SHA512 0 is a placeholder: skipstep has no public release yet, and with 0 the port fails at download (use
# `vcpkg install --head` meanwhile). Releasing v${VERSION} fills it: scripts/port-sha512 --write computes the
# hash of the tag's source archive (`git archive`, the tarball GitHub serves for the tag) and writes it here.
vcpkg_from_github(
    OUT_SOURCE_PATH SOURCE_PATH
    REPO skipstep/skipstep
    REF "v${VERSION}"
    SHA512 0
    HEAD_REF main
)

# Header-only: one (release) configuration is enough, nothing is compiled.
set(VCPKG_BUILD_TYPE release)

# The features decide which backend targets the installed package defines: SKIPSTEP_WITH_EIGEN / _XTENSOR are
# recorded in skipstepConfig.cmake, so a core-only install never defines skipstep::eigen or skipstep::xtensor,
# even on a machine where Eigen or xtensor is installed (ON: the dependency vcpkg installed must be found).
vcpkg_check_features(OUT_FEATURE_OPTIONS FEATURE_OPTIONS
    FEATURES
        eigen   SKIPSTEP_WITH_EIGEN
        xtensor SKIPSTEP_WITH_XTENSOR
)

# Only the headers and the CMake / pkg-config package are installed; nothing is compiled.
vcpkg_cmake_configure(
    SOURCE_PATH "${SOURCE_PATH}"
    OPTIONS
        ${FEATURE_OPTIONS}
        -DSKIPSTEP_BUILD_TESTS=OFF
        -DSKIPSTEP_BUILD_EXAMPLES=OFF
        -DSKIPSTEP_BUILD_BENCHMARKS=OFF
        -DSKIPSTEP_INSTALL=ON
)
vcpkg_cmake_install()
vcpkg_cmake_config_fixup(PACKAGE_NAME skipstep CONFIG_PATH share/skipstep)
vcpkg_fixup_pkgconfig()

# No file(REMOVE_RECURSE debug lib ...): with VCPKG_BUILD_TYPE release there is no debug tree, the .pc file is
# installed to share/pkgconfig, so lib/ is never created (tests/packaging checks both). share/doc/skipstep/LICENSE
# stays: vcpkg's post-build checks accept it; the copyright file vcpkg wants is installed below.

file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
