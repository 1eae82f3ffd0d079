#!/bin/sh
# Build yacr's wasm host (wasmhost/yacr-wasmhost.c) into $venv/share/yacr/wasmhost, against
# the _libwasmtime.so of the wasmtime wheel installed in the venv (the `wasm` extra), and
# write host.conf: the dynamic loader and the library directories it loads the host's C
# libraries from, which yacr makes read-only views of for every wasm container (see
# src/yacr/wasm/host.py). Without the wasm extra, nothing is built: Linux containers do
# not need the host, and a wasm container says how to install what is missing.
set -eu
venv=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")/.." && pwd)
out="$venv/share/yacr/wasmhost"
lib=$("$venv/bin/python3" -c 'from yacr.wasm.engine import find_library; print(find_library())' \
      2>/dev/null) || { echo "wasm host: wasmtime is not installed; not built" >&2; exit 0; }
libdir=$(dirname "$lib")
mkdir -p "$out"
src="$here/wasmhost/yacr-wasmhost.c"
# -Wl,-z,now: every symbol bound at load time, before any guest code or the allowlist
if ! gcc -O2 -Wall -Wextra -Werror -o "$out/yacr-wasmhost.tmp" "$src" \
        -L"$libdir" -l:_libwasmtime.so -Wl,-z,now 2>"$out/gcc.log"; then
    echo "warning: gcc failed on the wasm host (see $out/gcc.log); wasm containers cannot run" >&2
    exit 0
fi
# The loader the host asks for, and where it finds the host's C libraries (not wasmtime's:
# yacr hands the loader that directory itself, from the library it compiles with).
loader=$(readelf -l "$out/yacr-wasmhost.tmp" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
{
    echo "# written by scripts/write-wasmhost.sh: what yacr needs to exec yacr-wasmhost"
    echo "loader $(readlink -f "$loader")"
    LD_LIBRARY_PATH="$libdir" ldd "$out/yacr-wasmhost.tmp" | awk '$2 == "=>" && $3 ~ /^\// {print $3}' |
        grep -v "/_libwasmtime.so$" | xargs -n1 readlink -f | xargs -n1 dirname | sort -u |
        sed 's/^/libdir /'
} > "$out/host.conf.tmp"
mv "$out/yacr-wasmhost.tmp" "$out/yacr-wasmhost"
mv "$out/host.conf.tmp" "$out/host.conf"
