#!/bin/sh
# Install .venv/bin/yacr: a small compiled front-end (launcher/yacr-launch.c) that starts
# the Python CLI with -I -S from a sealed, read-only copy of the interpreter (the
# CVE-2019-5736 defence, see the C file), and build the bundle of the modules a container
# start needs (src/yacr/boot.py).
# pip's own console script imports `re` (~14 ms) and site processing adds ~4 ms: both would
# be paid by every container start, so this launcher skips them and puts src/ on sys.path.
set -eu
venv=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
here=$(cd "$(dirname "$0")/.." && pwd)
python=$(readlink -f "$venv/bin/python3")
share="$venv/share/yacr"
mkdir -p "$share"
# The bundle, and the launcher's script as compiled code (yacr.pyc: boot.py ending in a
# call of its launch(), see src/yacr/boot.py).
"$venv/bin/python3" -m yacr.boot "$share/boot.bundle" "$src" "$share/yacr.pyc" >/dev/null
rm -f "$share/yacr.py"  # the script of earlier versions
defs="-DPYTHON=\"$python\" -DSCRIPT=\"$share/yacr.pyc\""
# Without the C library where the launcher knows the machine's system calls (see the C
# file: every command's start is 0.6 ms cheaper), else against it.
case $(uname -m) in
    x86_64|aarch64) nolibc="-DYACR_NOLIBC -static -nostdlib -fno-stack-protector -fno-builtin" ;;
    *) nolibc="" ;;
esac
# shellcheck disable=SC2086 # the flags are words on purpose
if [ -n "$nolibc" ] && gcc -O2 -Wall -Wextra -Werror $nolibc $defs -o "$venv/bin/yacr.tmp" \
        "$here/launcher/yacr-launch.c" 2>"$share/gcc.log"; then
    :
elif gcc -O2 -Wall -Wextra -Werror $defs -o "$venv/bin/yacr.tmp" \
        "$here/launcher/yacr-launch.c" 2>>"$share/gcc.log"; then
    :
else
    # No compiler: a script launcher (same start-up, without the sealed interpreter copy).
    echo "warning: gcc failed (see $share/gcc.log); yacr runs on the host interpreter" >&2
    printf '#!%s -IS\nimport sys\nsys.path.insert(0, "%s")\nimport yacr.boot\nyacr.boot.launch("%s", "%s")\n' \
        "$python" "$src" "$share/boot.bundle" "$src" > "$venv/bin/yacr.tmp"
    chmod 755 "$venv/bin/yacr.tmp"
fi
mv "$venv/bin/yacr.tmp" "$venv/bin/yacr"
