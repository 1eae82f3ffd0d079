#!/bin/sh
# Replace pip's console script with a launcher that starts Python with -I -S, and build
# the bundle of the modules a container start needs (see src/yacr/boot.py).
# pip's script imports `re` (~14 ms) and site processing adds ~4 ms: both are paid by
# every container start, so .venv/bin/yacr skips them and puts src/ on sys.path itself.
set -eu
venv=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
mkdir -p "$venv/share/yacr"
"$venv/bin/python3" -m yacr.boot "$venv/share/yacr/boot.bundle" "$src" >/dev/null
cat > "$venv/bin/yacr.tmp" <<EOS
#!$venv/bin/python3 -IS
import sys
sys.path.insert(0, "$src")
import yacr.boot
yacr.boot.preload("$venv/share/yacr/boot.bundle", sys.argv[1:])
from yacr.cli import entrypoint
entrypoint()
EOS
chmod 755 "$venv/bin/yacr.tmp"
mv "$venv/bin/yacr.tmp" "$venv/bin/yacr"
