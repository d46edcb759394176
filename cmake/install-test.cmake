# ctest "install": install this build into a temporary prefix, then build
# test/install against it twice (CMake find_package, and a compiler line from
# pkg-config) and run the programs. Run with cmake -P; see CMakeLists.txt.
#
# The Windows build (CPORT_TOOLCHAIN set: the mingw toolchain file) builds
# the CMake consumer only, with that toolchain, and runs it under Wine
# (CPORT_EMULATOR), the DLL copied beside the program as a Windows user
# would place it.
cmake_minimum_required(VERSION 3.25)

foreach(v CPORT_BINARY_DIR CPORT_SOURCE_DIR CPORT_WORK_DIR CPORT_GENERATOR CPORT_C_COMPILER)
  if(NOT DEFINED ${v} OR "${${v}}" STREQUAL "")
    message(FATAL_ERROR "install-test: ${v} not set")
  endif()
endforeach()

set(prefix "${CPORT_WORK_DIR}/prefix")
set(build "${CPORT_WORK_DIR}/consumer")
file(REMOVE_RECURSE "${CPORT_WORK_DIR}")
file(MAKE_DIRECTORY "${CPORT_WORK_DIR}")

function(run)
  string(REPLACE ";" " " _shown "${ARGN}")
  message(STATUS "install-test: ${_shown}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "install-test: failed (${rc}): ${_shown}")
  endif()
endfunction()

# A consumer of a sanitized cport must link the same sanitizer runtime.
set(san_flags "")
if(CPORT_SANITIZE)
  set(san_flags "-fsanitize=${CPORT_SANITIZE}")
endif()

set(config_args "")
if(CPORT_CONFIG)
  set(config_args --config "${CPORT_CONFIG}")
endif()
run("${CMAKE_COMMAND}" --install "${CPORT_BINARY_DIR}" --prefix "${prefix}" ${config_args})

foreach(f include/cport.h)
  if(NOT EXISTS "${prefix}/${f}")
    message(FATAL_ERROR "install-test: ${f} not installed")
  endif()
endforeach()
file(GLOB_RECURSE pcfiles "${prefix}/*/cport.pc")
file(GLOB_RECURSE cfgfiles "${prefix}/*/cportConfig.cmake")
file(GLOB_RECURSE verfiles "${prefix}/*/cportConfigVersion.cmake")
file(GLOB_RECURSE statics "${prefix}/*/libcport.a")
if(CPORT_TOOLCHAIN)
  file(GLOB shareds "${prefix}/bin/libcport.dll") # Windows looks beside the program, or PATH
else()
  file(GLOB_RECURSE shareds "${prefix}/*/libcport.so")
endif()
foreach(what pcfiles cfgfiles verfiles statics shareds)
  if(NOT ${what})
    message(FATAL_ERROR "install-test: nothing installed for ${what}")
  endif()
endforeach()

# 1. CMake package.
set(compiler_args "-DCMAKE_C_COMPILER=${CPORT_C_COMPILER}")
if(CPORT_TOOLCHAIN)
  set(compiler_args "-DCMAKE_TOOLCHAIN_FILE=${CPORT_TOOLCHAIN}")
endif()
run("${CMAKE_COMMAND}" -S "${CPORT_SOURCE_DIR}/test/install" -B "${build}"
    -G "${CPORT_GENERATOR}"
    ${compiler_args}
    "-DCMAKE_BUILD_TYPE=${CPORT_CONFIG}"
    "-DCMAKE_PREFIX_PATH=${prefix}"
    "-DCMAKE_C_FLAGS=-Wall -Wextra -Werror ${san_flags}"
    "-DCMAKE_EXE_LINKER_FLAGS=${san_flags}")
run("${CMAKE_COMMAND}" --build "${build}" ${config_args})
if(CPORT_TOOLCHAIN)
  list(GET shareds 0 dll)
  file(COPY "${dll}" DESTINATION "${build}")
  separate_arguments(emulator UNIX_COMMAND "${CPORT_EMULATOR}")
  run(${emulator} "${build}/consumer_static.exe")
  run(${emulator} "${build}/consumer_shared.exe")
  message(STATUS "install-test: OK (Windows: CMake package; pkg-config is not for Windows users)")
  return()
endif()
run("${build}/consumer_static")
run("${build}/consumer_shared")

# 2. pkg-config.
find_program(PKG_CONFIG NAMES pkg-config pkgconf)
if(NOT PKG_CONFIG)
  message(FATAL_ERROR "install-test: pkg-config not found")
endif()
list(GET pcfiles 0 pcfile)
get_filename_component(pcdir "${pcfile}" DIRECTORY)
set(ENV{PKG_CONFIG_PATH} "${pcdir}")
execute_process(COMMAND "${PKG_CONFIG}" --cflags --libs cport
  OUTPUT_VARIABLE pc_flags OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "install-test: pkg-config --cflags --libs cport failed")
endif()
execute_process(COMMAND "${PKG_CONFIG}" --modversion cport
  OUTPUT_VARIABLE pc_version OUTPUT_STRIP_TRAILING_WHITESPACE)
message(STATUS "install-test: pkg-config cport ${pc_version}: ${pc_flags}")
separate_arguments(pc_flags UNIX_COMMAND "${pc_flags}")
separate_arguments(san_list UNIX_COMMAND "${san_flags}")
string(REGEX MATCH "-L([^ ;]+)" _m "${pc_flags}")
set(libdir "${CMAKE_MATCH_1}")
run("${CPORT_C_COMPILER}" -Wall -Wextra -Werror ${san_list}
    "${CPORT_SOURCE_DIR}/test/install/main.c" -o "${CPORT_WORK_DIR}/consumer_pc"
    ${pc_flags} "-Wl,-rpath,${libdir}")
run("${CPORT_WORK_DIR}/consumer_pc")
message(STATUS "install-test: OK")
