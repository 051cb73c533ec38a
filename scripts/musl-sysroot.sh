#!/bin/bash
# Usage: [TOOLCHAIN=nightly] scripts/musl-sysroot.sh TRIPLE DIR
#
# What rustup's rust-std ships in lib/self-contained/ for a musl target, for a target whose
# rust-std this machine cannot install (see the Makefile's "std from source" part): musl's
# start files and libc.a, LLVM's libunwind.a, crtbegin/crtend. `make` passes DIR as
# `-L native=DIR`; rustc looks for its start files on the -L paths too, and links what it
# finds there exactly as it would link its own.
#
# - musl: Debian's musl-dev for that architecture, downloaded with apt-get into a private apt
#   state under target/musl-sysroot/apt (nothing is installed on the system, no architecture is
#   added to dpkg), from the Debian mirror the system's sources name, suite trixie: its musl is
#   1.2.5, the version rustc's own musl targets ship, and it is the first Debian release with
#   riscv64.
# - libunwind.a: std's unwind crate links it on musl (backtraces in the panic hook). Built
#   with clang from the libunwind sources nightly's rust-src carries (the ones rustc's own musl
#   targets are built from), with the flags rustc's bootstrap uses.
# - crtbegin.o/crtend.o: rustc names them among the start files. Its own (compiler-rt's)
#   register .eh_frame only if __register_frame_info exists (it is weak, and absent) and
#   define __dso_handle; ours define __dso_handle and nothing else.
#
# Idempotent: DIR/.complete marks a finished sysroot, and the apt lists are fetched once.
set -euo pipefail

triple=${1:?triple} dir=${2:?dir}
[ -e "$dir/.complete" ] && exit 0

# Rust triple -> Debian architecture, musl's directory in musl-dev, clang target flags.
case $triple in
  armv7-unknown-linux-musleabihf)
    deb=armhf gnu=arm-linux-musleabihf
    cflags=(--target=armv7-unknown-linux-musleabihf -mfloat-abi=hard -mfpu=vfpv3-d16) ;;
  powerpc64le-unknown-linux-musl)
    deb=ppc64el gnu=powerpc64le-linux-musl cflags=(--target=powerpc64le-unknown-linux-musl) ;;
  s390x-unknown-linux-musl)
    deb=s390x gnu=s390x-linux-musl cflags=(--target=s390x-unknown-linux-musl) ;;
  riscv64gc-unknown-linux-musl)
    deb=riscv64 gnu=riscv64-linux-musl
    cflags=(--target=riscv64-unknown-linux-musl -march=rv64gc -mabi=lp64d) ;;
  *) echo "musl-sysroot: no recipe for $triple" >&2; exit 1 ;;
esac

base=target/musl-sysroot
apt=$base/apt
mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/sources" "$base/deb"
apt=$(cd "$apt" && pwd)

# The mirror of the system's Debian sources (deb822 or one-line format).
mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
[ -n "$mirror" ] || mirror=$(sed -n 's/^deb  *\(\[[^]]*\] *\)\{0,1\}\([^ ]*\) .*/\2/p' /etc/apt/sources.list 2>/dev/null | head -n1)
[ -n "$mirror" ] || { echo "musl-sysroot: no Debian mirror in /etc/apt/sources.list{,.d/debian.sources}" >&2; exit 1; }
cat >"$apt/sources/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
aptopts=(-q -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache"
  -o "Dir::Etc::SourceParts=$apt/sources" -o Dir::Etc::SourceList=/dev/null
  -o Dir::State::status=/dev/null -o Debug::NoLocking=1 -o Acquire::Languages=none
  -o APT::Get::List-Cleanup=0 -o "APT::Architecture=$deb"
  -o APT::Architectures=armhf,ppc64el,s390x,riscv64)
# No DEP-11/Contents indexes: only the Packages lists are needed.
aptopts+=(-o 'Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false'
  -o 'Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false'
  -o 'Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false'
  -o 'Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false')
if ! ls "$apt/lists/"*"_binary-${deb}_Packages"* >/dev/null 2>&1; then
  apt-get "${aptopts[@]}" update >"$base/apt-update.log" 2>&1 \
    || { echo "musl-sysroot: apt-get update failed, see $base/apt-update.log" >&2; exit 1; }
fi
rm -rf "$base/deb/$deb" && mkdir -p "$base/deb/$deb"
(cd "$base/deb/$deb" && apt-get "${aptopts[@]}" download "musl-dev:$deb" >download.log 2>&1) \
  || { echo "musl-sysroot: apt-get download musl-dev:$deb failed, see $base/deb/$deb/download.log" >&2; exit 1; }
root=$base/deb/$deb/root
dpkg-deb -x "$base/deb/$deb"/musl-dev_*.deb "$root"

rm -rf "$dir" && mkdir -p "$dir"
lib=$root/usr/lib/$gnu
cp "$lib"/{crt1.o,rcrt1.o,Scrt1.o,crti.o,crtn.o,libc.a} "$dir/"

src=$(rustup run "${TOOLCHAIN:-nightly}" rustc --print sysroot)/lib/rustlib/src/rust/src/llvm-project/libunwind
[ -d "$src" ] || { echo "musl-sysroot: no libunwind sources at $src (rust-src of nightly)" >&2; exit 1; }
obj=$dir/obj
mkdir -p "$obj"
common=("${cflags[@]}" -O2 -fPIC -nostdinc -isystem "$root/usr/include/$gnu"
  -isystem "$(clang -print-resource-dir)/include" -I "$src/include"
  -fstrict-aliasing -funwind-tables -fvisibility=hidden -D_LIBUNWIND_HIDE_SYMBOLS=1
  -D_LIBUNWIND_IS_NATIVE_ONLY -DNDEBUG)
objs=()
for f in libunwind.cpp Unwind-EHABI.cpp UnwindLevel1.c UnwindLevel1-gcc-ext.c Unwind-sjlj.c \
         UnwindRegistersRestore.S UnwindRegistersSave.S; do
  case $f in
    *.cpp) lang=(-std=c++17 -nostdinc++ -fno-exceptions -fno-rtti) ;;
    *.c) lang=(-std=c99) ;;
    *) lang=() ;;
  esac
  clang "${common[@]}" "${lang[@]}" -c "$src/src/$f" -o "$obj/${f%.*}.o"
  objs+=("$obj/${f%.*}.o")
done
llvm-ar rcs "$dir/libunwind.a" "${objs[@]}"

printf 'void *__dso_handle __attribute__((visibility("hidden"))) = &__dso_handle;\n' >"$obj/crtbegin.c"
: >"$obj/crtend.c"
for o in crtbegin crtbeginS; do clang "${cflags[@]}" -O2 -fPIC -c "$obj/crtbegin.c" -o "$dir/$o.o"; done
for o in crtend crtendS; do clang "${cflags[@]}" -c "$obj/crtend.c" -o "$dir/$o.o"; done
rm -rf "$obj"
touch "$dir/.complete"
echo "musl-sysroot: $dir (musl-dev:$deb $(dpkg-deb -f "$base/deb/$deb"/musl-dev_*.deb Version), libunwind from rust-src)"
