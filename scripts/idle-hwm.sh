#!/usr/bin/env bash
# `make tiny`'s memory check: prints the idle VmHWM (peak resident set, KiB) of BINARY.
#
# Starts BINARY on a scratch one-file config directory (its target process is absent, which it
# only warns about), awaits idle (the `info watching` line, then blocked in ppoll according
# to /proc/PID/syscall), reads VmHWM from /proc/PID/status and stops it. x86_64 only (the
# syscall number). Fails with one line if it is not idle within 10 s.
set -euo pipefail

bin=${1:?usage: idle-hwm.sh BINARY}
ppoll=271 # __NR_ppoll on x86_64

dir=$(mktemp -d)
pid=
cleanup() {
    [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

mkdir "$dir/config"
echo 'greeting = hello' >"$dir/config/app.conf"
: >"$dir/stderr"
CONFIG_DIR=$dir/config PROCESS_NAME=idle-hwm-absent-$$ "$bin" 2>"$dir/stderr" &
pid=$!

deadline=$((SECONDS + 10))
until grep -q '^info watching' "$dir/stderr" &&
    [ "$(cut -d' ' -f1 "/proc/$pid/syscall" 2>/dev/null)" = "$ppoll" ]; do
    if [ "$SECONDS" -ge "$deadline" ] || ! kill -0 "$pid" 2>/dev/null; then
        echo "idle-hwm.sh: $bin did not reach idle (blocked in ppoll) within 10 s: $(tr '\n' ' ' <"$dir/stderr")" >&2
        exit 1
    fi
    sleep 0.01
done
awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status"
