#!/bin/sh
# Usage: scripts/leftovers.sh ID
# The last step of `make test`: every process a test started carries CONFIG_RELOADER_TEST_RUN=ID
# (testkit::tree::RUN_MARK; the id is given here as an argument, so this script does not carry
# it). Lists each one still running with its command line, SIGKILLs it by pid, and fails.
# Reading another UID's /proc/PID/environ needs root, as `make test` runs.
set -u
# Run from a marked shell, this script would find itself: drop the mark first.
[ -z "${CONFIG_RELOADER_TEST_RUN+x}" ] || exec env -u CONFIG_RELOADER_TEST_RUN "$0" "$@"
id=${1:?usage: leftovers.sh ID}
mark="CONFIG_RELOADER_TEST_RUN=$id"
found=""
for environ in /proc/[0-9]*/environ; do
  pid=${environ#/proc/}
  pid=${pid%/environ}
  # A zombie's environ reads empty; its parent reaps it.
  if { tr '\0' '\n' <"$environ"; } 2>/dev/null | grep -qxF "$mark"; then
    found="$found $pid"
  fi
done
if [ -z "$found" ]; then
  echo "leftovers: no process of this test run is still running"
  exit 0
fi
for pid in $found; do
  echo "leftover: pid $pid: $( { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null)" >&2
done
# shellcheck disable=SC2086 # one pid per word
kill -KILL $found 2>/dev/null || true
echo "leftovers: tests left $(echo "$found" | wc -w | tr -d ' ') process(es) running (killed now); the test that started them must end them" >&2
exit 1
