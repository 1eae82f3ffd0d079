#!/bin/sh
# Replace pip's console script with a launcher that starts Python with -I -S.
# pip's script imports `re` (~14 ms) and site processing adds ~4 ms: both are paid by
# every container start, so .venv/bin/yacr skips them and puts src/ on sys.path itself.
set -eu
venv=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
cat > "$venv/bin/yacr.tmp" <<EOS
#!$venv/bin/python3 -IS
import sys
sys.path.insert(0, "$src")
from yacr.cli import entrypoint
entrypoint()
EOS
chmod 755 "$venv/bin/yacr.tmp"
mv "$venv/bin/yacr.tmp" "$venv/bin/yacr"
