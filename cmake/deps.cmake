# Every dependency comes from Debian 12's packages (see scripts/install-deps.sh).
find_package(Threads REQUIRED)

# Asio standalone ships no CMake config on Debian.
find_path(ASIO_INCLUDE_DIR asio.hpp REQUIRED)
add_library(tern_asio INTERFACE)
target_include_directories(tern_asio SYSTEM INTERFACE ${ASIO_INCLUDE_DIR})
# ASIO_DISABLE_STD_ALIGNED_ALLOC: asio picks aligned_alloc or operator new per translation unit,
# depending on whether a libstdc++ header came before <asio.hpp>; its inline aligned_new and
# aligned_delete could then pair operator new with free across units (ASan: alloc-dealloc
# mismatch). One choice for every unit keeps them paired.
target_compile_definitions(tern_asio INTERFACE ASIO_STANDALONE ASIO_NO_DEPRECATED
  ASIO_DISABLE_STD_ALIGNED_ALLOC)
target_link_libraries(tern_asio INTERFACE Threads::Threads)
add_library(Asio::asio ALIAS tern_asio)

find_package(CapnProto 0.9 CONFIG REQUIRED)
find_package(spdlog CONFIG REQUIRED)
find_package(fmt CONFIG REQUIRED)
find_package(rapidcheck CONFIG REQUIRED)   # targets have no namespace (toolchain.md P5)
find_package(GTest CONFIG REQUIRED)
find_package(benchmark CONFIG REQUIRED)
find_package(tl-expected CONFIG REQUIRED)
find_package(nlohmann_json CONFIG REQUIRED)
find_package(CLI11 CONFIG REQUIRED)
find_package(tomlplusplus CONFIG REQUIRED)
find_package(zstd CONFIG REQUIRED)
# libedit (the tern CLI's interactive shell) ships a pkg-config file only.
find_package(PkgConfig REQUIRED)
pkg_check_modules(libedit REQUIRED IMPORTED_TARGET libedit)

# Helper: a GoogleTest/RapidCheck binary registered with ctest.
# tern_test(NAME name SOURCES ... LIBS ... [LABELS fast|slow] [ENV "K=V"])
function(tern_test)
  cmake_parse_arguments(T "SERIAL" "NAME" "SOURCES;LIBS;LABELS;ENV" ${ARGN})
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} rapidcheck_gtest GTest::gtest GTest::gmock GTest::gtest_main)
  if(NOT T_LABELS)
    set(T_LABELS fast)
  endif()
  # SERIAL: tests that start real clusters and depend on timing run alone (RUN_SERIAL).
  set(serial FALSE)
  if(T_SERIAL)
    set(serial TRUE)
  endif()
  gtest_discover_tests(${T_NAME} DISCOVERY_TIMEOUT 60
    PROPERTIES LABELS "${T_LABELS}" ENVIRONMENT "${T_ENV}" RUN_SERIAL ${serial})
endfunction()
