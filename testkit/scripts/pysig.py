"""Python apps as the reloader meets them; writes sigrecord's lines (testkit::recorder parses them).

usage: python3 pysig.py --out FILE [--read PATH]
                       (--sigwait-main | --victim | --subprocess-loop | --late-handler SECONDS)

--sigwait-main  blocks SIGHUP and SIGTERM, then loops on signal.sigwait in the main thread:
                one `sig` line per SIGHUP with what --read returned, `exit` on SIGTERM.
--victim        starts a thread, then blocks SIGHUP in the main thread only
                (signal.pthread_sigmask), and installs no handler: the thread keeps SIGHUP
                unblocked, so a SIGHUP sent to the process takes its default action and ends it
                (exit 129). Records nothing.
--subprocess-loop  no SIGHUP handler; runs subprocess.run(["/bin/true"]) in a loop, which
                blocks every signal around each fork for a moment. Records nothing.
--late-handler S   starts without a SIGHUP handler (an app still starting), installs one after
                S seconds, then records each SIGHUP as --sigwait-main does.

Each line is one write(2) to an O_APPEND file: `ready pid=P`, `sig pid=P signo=N t_ns=T
content=C` (T is CLOCK_MONOTONIC ns, C the percent-escaped bytes or ERR:errno), `exit pid=P`.
"""

import os
import signal
import sys
import threading
import time


def escape(data):
    return "".join(
        chr(b) if 0x21 <= b <= 0x7E and b != 0x25 else "%%%02X" % b for b in data
    )


def main(argv):
    out = read = mode = None
    delay = 0.0
    it = iter(argv)
    for flag in it:
        if flag == "--out":
            out = next(it)
        elif flag == "--read":
            read = next(it)
        elif flag in ("--sigwait-main", "--victim", "--subprocess-loop"):
            mode = flag
        elif flag == "--late-handler":
            mode, delay = flag, float(next(it))
        else:
            sys.exit("pysig: unknown flag %r\n%s" % (flag, __doc__))
    if out is None or mode is None:
        sys.exit("pysig: --out and a mode are mandatory\n" + __doc__)
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)

    def line(text):
        os.write(fd, text.encode())

    # No handler: whatever the parent left (nohup ignores SIGHUP), the default action is ours.
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    pid = os.getpid()
    if mode == "--victim":
        threading.Thread(target=threading.Event().wait, daemon=True).start()
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
        line("ready pid=%d\n" % pid)
        threading.Event().wait()
        return

    if mode == "--subprocess-loop":
        import subprocess

        line("ready pid=%d\n" % pid)
        while True:
            subprocess.run(["/bin/true"])

    def record(signo):
        content = "-"
        if read is not None:
            try:
                with open(read, "rb") as f:
                    content = escape(f.read())
            except OSError as e:
                content = "ERR:%d" % e.errno
        t_ns = time.monotonic_ns()
        line("sig pid=%d signo=%d t_ns=%d content=%s\n" % (pid, signo, t_ns, content))

    if mode == "--late-handler":
        line("ready pid=%d\n" % pid)
        time.sleep(delay)
        signal.signal(signal.SIGHUP, lambda signo, frame: record(signo))
        while True:
            time.sleep(3600)

    waited = {signal.SIGHUP, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    line("ready pid=%d\n" % pid)
    while True:
        signo = signal.sigwait(waited)
        t_ns = time.monotonic_ns()
        if signo == signal.SIGTERM:
            line("exit pid=%d\n" % pid)
            return
        content = "-"
        if read is not None:
            try:
                with open(read, "rb") as f:
                    content = escape(f.read())
            except OSError as e:
                content = "ERR:%d" % e.errno
        line("sig pid=%d signo=%d t_ns=%d content=%s\n" % (pid, signo, t_ns, content))


if __name__ == "__main__":
    main(sys.argv[1:])
