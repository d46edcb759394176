# CMake toolchain file: cross-compile for 64-bit Windows with Debian's mingw-w64
# (package mingw-w64) and run the results under Wine (cmake/wine-run.sh).
#
#   cmake -S . -B build/mingw -G Ninja \
#         -DCMAKE_TOOLCHAIN_FILE=cmake/mingw-w64-x86_64.cmake
#
# or simply `cmake --preset mingw`.
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)

set(CPORT_MINGW_TRIPLET x86_64-w64-mingw32)
set(CMAKE_C_COMPILER ${CPORT_MINGW_TRIPLET}-gcc)
set(CMAKE_CXX_COMPILER ${CPORT_MINGW_TRIPLET}-g++)
set(CMAKE_RC_COMPILER ${CPORT_MINGW_TRIPLET}-windres)
set(CMAKE_AR ${CPORT_MINGW_TRIPLET}-ar CACHE FILEPATH "")
set(CMAKE_RANLIB ${CPORT_MINGW_TRIPLET}-ranlib CACHE FILEPATH "")

# Look for target headers and libraries only in the mingw sysroot; programs on
# the build host. Dependencies outside it (the cmocka that
# cmake/build-cmocka-mingw.sh builds) are found by explicit path. CMake
# packages are looked for in the sysroot first and then where
# CMAKE_PREFIX_PATH says, so that a consumer finds a cport installed for
# Windows anywhere (find_package(cport) with -DCMAKE_PREFIX_PATH=PREFIX).
set(CMAKE_FIND_ROOT_PATH /usr/${CPORT_MINGW_TRIPLET})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)

# ctest (add_test with a target as COMMAND) and try_run() run the .exe files
# through Wine, with the project's private WINEPREFIX.
# Called through bash, so a checkout that lost the executable bit still works.
if(NOT CMAKE_CROSSCOMPILING_EMULATOR)
  if(EXISTS /bin/bash)
    set(CMAKE_CROSSCOMPILING_EMULATOR "/bin/bash;${CMAKE_CURRENT_LIST_DIR}/wine-run.sh")
  else()
    set(CMAKE_CROSSCOMPILING_EMULATOR "${CMAKE_CURRENT_LIST_DIR}/wine-run.sh")
  endif()
endif()
