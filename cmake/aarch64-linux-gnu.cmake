# Cross build for arm64 (aarch64) with Debian's cross toolchain (crossbuild-essential-arm64) and
# the arm64 development packages of the dependencies (dpkg --add-architecture arm64; all are
# Multi-Arch: same, so they install beside the amd64 ones). scripts/cross-arm64.sh sets it up.
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
# Shaders compile on the build machine (SPIR-V does not depend on the target); the programs the
# build runs itself (the man page from `vkllm --help`) and ctest's tests run under qemu-user.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
# qemu-aarch64 runs the programs on the arm64 runtime that the arm64 -dev packages installed
# (libc6:arm64 and its loader in /lib, Boost, ICU...). Not `-L /usr/aarch64-linux-gnu`: that
# would take the loader from the cross toolchain's glibc and libc.so.6 from libc6:arm64, two
# different builds of glibc, and threads hang in pthread_create.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L /)
# Libraries and headers: the arm64 ones (/usr/lib/aarch64-linux-gnu, /usr/include, which the
# headers share across architectures); programs (glslang, spirv-val): the build machine's.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu /usr)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
# pkg-config (PCRE2, ICU): the arm64 .pc files only.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")
