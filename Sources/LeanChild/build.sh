#!/bin/bash
# Builds the lean replay children into OUT_DIR (the directory of the allocbench executable):
#
#   allocbench-lean-<module>          musl, static: one per module allocator (Allocators/*)
#   allocbench-lean-musl              musl, static: musl's own malloc, the row `musl`
#   allocbench-lean-glibc             glibc, dynamic: the row `glibc`, and every LD_PRELOAD row
#   allocbench-lean-glibc-static      glibc, static: `glibc-static`
#   allocbench-lean-<name>            for each own-process module of the registry (jemalloc): linked
#   allocbench-lean-<name>-static     with its library, dynamically and statically
#
# Each is the same Swift replay code (Sources/AllocBenchReplay: ReplayChild, Replay,
# RegisteredAllocator) and the same allocator sources as the Swift children, compiled as Embedded
# Swift — no Swift runtime, nothing on the heap before the replay — plus the child side of the C
# shim (Sources/CAllocBench/child.c) compiled by the C library's own compiler driver. Why Embedded
# Swift and musl: docs/architecture.md, "The lean replay children".
#
# Usage: Sources/LeanChild/build.sh OUT_DIR   (SWIFTC, CC, MUSL_CC override the compilers)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
out=$(cd "$1" && pwd)
work="$out/lean-build"
swiftc=${SWIFTC:-swiftc}
cc=${CC:-gcc}
musl_cc=${MUSL_CC:-musl-gcc}
command -v "$musl_cc" >/dev/null || { echo "build.sh: $musl_cc not found (apt-get install musl-tools)" >&2; exit 66; }

rm -rf "$work" && mkdir -p "$work/include" "$work/modules"
# The C shim and each module's system library as Clang modules for swiftc.
{
  echo "module CAllocBench { header \"$root/Sources/CAllocBench/include/CAllocBench.h\"
  export * }"
  for map in "$root"/Allocators/*/*/module.modulemap; do
    sed "s|header \"|header \"$(dirname "$map")/|" "$map"
  done
} > "$work/include/module.modulemap"

embedded=("$swiftc" -enable-experimental-feature Embedded -wmo -Osize -parse-as-library
          -I "$work/include" -I "$work/modules" -Xcc -D_GNU_SOURCE -Xfrontend -disable-stack-protector)

# compile MODULE FILE...: one Embedded Swift module, its object and its interface.
compile() {
  local module=$1; shift
  "${embedded[@]}" -module-name "$module" -emit-module -emit-module-path "$work/modules/$module.swiftmodule" \
    -c "$@" -o "$work/$module.o"
}

# The files of the shared modules that compile as Embedded Swift: the protocol and the replay.
# (TraceParser and the conformance suite are the full runtime's.)
compile AllocBenchCore "$root/Sources/AllocBenchCore/Allocator.swift" "$root/Sources/AllocBenchCore/CMallocAPI.swift"
compile AllocBenchReplay "$root/Sources/AllocBenchReplay/Replay.swift" "$root/Sources/AllocBenchReplay/ReplayChild.swift" \
  "$root/Sources/AllocBenchReplay/RegisteredAllocator.swift"

# The registry in Package.swift: `.module("Folder")` lines, own-process ones marked.
modules=() own_process=()
while read -r line; do
  folder=$(sed -E 's/.*\.module\("([A-Za-z0-9]+)".*/\1/' <<<"$line")
  if grep -q "ownProcess: true" <<<"$line"; then own_process+=("$folder"); else modules+=("$folder"); fi
done < <(sed -n '/^let allocatorRegistry/,/^]/p' "$root/Package.swift" | grep '\.module("')
for folder in "${modules[@]}" "${own_process[@]}"; do
  mapfile -t sources < <(find "$root/Allocators/$folder" -maxdepth 1 -name '*.swift' | sort)
  compile "${folder}Allocator" "${sources[@]}"
done

# musl-gcc searches musl's headers only; the kernel's (linux/, asm/: the seccomp filter) come from
# Debian's linux-libc-dev through links of their own, so that no glibc header is mixed in.
mkdir -p "$work/kernel-headers"
multiarch=$("$cc" -print-multiarch)
ln -s /usr/include/linux /usr/include/asm-generic "$work/kernel-headers/"
ln -s "/usr/include/$multiarch/asm" "$work/kernel-headers/asm"
"$musl_cc" -O2 -D_GNU_SOURCE -DAB_LEAN_CHILD -DAB_MMAP_MALLOC -I "$root/Sources/CAllocBench/include" -isystem "$work/kernel-headers" \
  -c "$root/Sources/CAllocBench/child.c" -o "$work/child-modules.o"
"$musl_cc" -O2 -D_GNU_SOURCE -DAB_LEAN_CHILD -I "$root/Sources/CAllocBench/include" -isystem "$work/kernel-headers" -c "$root/Sources/CAllocBench/child.c" -o "$work/child-musl.o"
"$cc" -O2 -D_GNU_SOURCE -DAB_LEAN_CHILD -I "$root/Sources/CAllocBench/include" -c "$root/Sources/CAllocBench/child.c" -o "$work/child-glibc.o"
"$cc" -O2 -D_GNU_SOURCE -DAB_LEAN_CHILD -DAB_MALLOC_REPLACED -I "$root/Sources/CAllocBench/include" -c "$root/Sources/CAllocBench/child.c" \
  -o "$work/child-glibc-replaced.o"

# String comparison in Embedded Swift needs the Unicode tables of the toolchain's embedded stdlib.
unicode_tables="$(dirname "$(dirname "$(readlink -f "$(command -v "$swiftc")")")")/lib/swift/embedded/$(uname -m)-unknown-linux-gnu/libswiftUnicodeDataTables.a"
[ -f "$unicode_tables" ] || { echo "build.sh: no Embedded Swift stdlib at $unicode_tables" >&2; exit 66; }

# child NAME DRIVER CHILD_OBJECT "OFFERS" MODULE... -- LINK_FLAGS...: writes the child's main
# (its registry: `offer(...)` lines), compiles it and links the executable.
child() {
  local name=$1 driver=$2 object=$3 offers=$4; shift 4
  local imports=() objects=("$work/AllocBenchCore.o" "$work/AllocBenchReplay.o")
  while [ "$1" != "--" ]; do imports+=("import ${1}Allocator"); objects+=("$work/${1}Allocator.o"); shift; done
  shift
  {
    echo "// Generated by Sources/LeanChild/build.sh from the registry in Package.swift. Do not edit."
    echo "import AllocBenchReplay"
    printf '%s\n' "${imports[@]}"
    echo '@_cdecl("main")'
    echo 'func leanChildMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {'
    echo '    ReplayChild.main(argc, argv) { offer in'
    echo '        _ = true'
    echo "$offers"
    echo '    }'
    echo '}'
  } > "$work/$name.swift"
  "${embedded[@]}" -module-name LeanChildMain -c "$work/$name.swift" -o "$work/$name.o"
  "$driver" -o "$out/$name.tmp" -Wl,--gc-sections "$work/$name.o" "${objects[@]}" "$object" "$unicode_tables" "$@"
  mv -f "$out/$name.tmp" "$out/$name"
}

# offer TYPE [ARGUMENTS]: one registry entry, with its per-thread op executor (a C function
# written here for the concrete type: generic code cannot make one).
offer() { echo "            && offer(RegisteredAllocator($1.self${2:+, $2}, executeOp: { executeOnThread($1.self, \$0, \$1) }))"; }
# One child per module allocator (SystemMalloc, the C library's malloc, is offered under the C
# library's name below): its one writable data page holds only its own state, the C library's and
# the replay's, and the rest of that page is the bss tail.
for folder in "${modules[@]}"; do
  [ "$folder" = SystemMalloc ] && continue
  lower=$(tr '[:upper:]' '[:lower:]' <<<"$folder")
  child "allocbench-lean-$lower" "$musl_cc" "$work/child-modules.o" "$(offer "$folder")" "$folder" -- -static
done
c_malloc='name: "%s", summary: "%s"'
# A dynamic child exports its clock_gettime (the replay's clock, child.c), so that a library it is
# linked with or one preloaded into it (mimalloc, scudo, ...) finds it before the C library's.
export_clock=(-Wl,--export-dynamic-symbol=clock_gettime)
child allocbench-lean-musl "$musl_cc" "$work/child-musl.o" \
  "$(offer SystemMalloc "$(printf "$c_malloc" musl "musl's mallocng (Debian musl-tools), static, through malloc/free/realloc/calloc/posix_memalign.")")" \
  SystemMalloc -- -static
child allocbench-lean-glibc "$cc" "$work/child-glibc.o" \
  "$(offer SystemMalloc "$(printf "$c_malloc" glibc "glibc's ptmalloc2, dynamically linked as most programs run it, through malloc/free/realloc/calloc/posix_memalign.")")" \
  SystemMalloc -- -Wl,-z,now "${export_clock[@]}"
child allocbench-lean-glibc-static "$cc" "$work/child-glibc.o" \
  "$(offer SystemMalloc "$(printf "$c_malloc" glibc-static "glibc's ptmalloc2 in a static executable (gcc -static), through malloc/free/realloc/calloc/posix_memalign.")")" \
  SystemMalloc -- -static
for folder in "${own_process[@]}"; do
  lower=$(tr '[:upper:]' '[:lower:]' <<<"$folder")
  package=$(sed -n "/\.module(\"$folder\"/s/.*pkgConfig: \"\([^\"]*\)\".*/\1/p" "$root/Package.swift")
  read -r -a dynamic_libs <<<"$(pkg-config --libs "$package")"
  read -r -a static_libs <<<"$(pkg-config --static --libs "$package")"
  child "allocbench-lean-$lower" "$cc" "$work/child-glibc.o" "$(offer "$folder")" "$folder" -- -Wl,-z,now "${export_clock[@]}" "${dynamic_libs[@]}"
  child "allocbench-lean-$lower-static" "$cc" "$work/child-glibc-replaced.o" \
    "$(offer "$folder" "name: \"$lower-static\", summary: \"$folder from its static library ($package, pkg-config --static) in a static executable, through malloc/free/realloc/calloc/posix_memalign.\"")" \
    "$folder" -- -static "${static_libs[@]}" -lstdc++ -lm -lpthread
done
