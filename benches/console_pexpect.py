#!/usr/bin/env python3
"""The pexpect column of `cargo bench --bench console`.

Opens the slave side of the bench's pseudo-terminal by its path, wraps the
descriptor in `pexpect.fdpexpect.fdspawn` (bytes mode, no encoding) and calls
`expect()` with one compiled regular expression again and again until it matches
the end marker. Every match of a `MARK` line is counted and its number checked to
follow the previous one.

Protocol on standard output, one JSON object per line:
  1. {"ready": true, "pexpect": VERSION} once the slave is open (the bench starts
     writing only after this line);
  2. {"markers": N, "end": M, "sequence_ok": BOOL, "elapsed_s": S, "maxrss_kib": K}
     as soon as the end marker is matched (`elapsed_s` runs from the ready line,
     so it includes the wait for the bench's first byte; `maxrss_kib` is this
     process's peak resident size, `VmHWM`: `ru_maxrss` is not used because Linux
     carries it over `execve` from the process that spawned us);
  or {"error": TEXT} (exit status 1), or {"skip": REASON} (exit status 3) when the
  pexpect module cannot be imported.

Run by the bench; not meant to be run by hand.
"""

import argparse
import json
import os
import re
import sys
import time


def say(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def peak_rss_kib():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--path", required=True, help="slave pseudo-terminal path")
    ap.add_argument("--pattern", required=True, help="regex; group 1 MARK|END, group 2 number")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per expect()")
    ap.add_argument("--maxread", type=int, default=2000, help="pexpect maxread")
    ap.add_argument("--window", type=int, default=0, help="pexpect searchwindowsize (0: none)")
    args = ap.parse_args()

    try:
        import pexpect
        import pexpect.fdpexpect
    except ImportError as e:
        say({"skip": "python module pexpect not importable (%s); pip install pexpect" % e})
        return 3

    try:
        fd = os.open(args.path, os.O_RDWR | os.O_NOCTTY)
    except OSError as e:
        say({"error": "open %s: %s" % (args.path, e)})
        return 1
    child = pexpect.fdpexpect.fdspawn(
        fd,
        timeout=args.timeout,
        maxread=args.maxread,
        searchwindowsize=args.window or None,
    )
    pattern = re.compile(args.pattern.encode("ascii"))
    say({"ready": True, "pexpect": getattr(pexpect, "__version__", "unknown")})
    t0 = time.monotonic()
    markers = 0
    sequence_ok = True
    try:
        while True:
            child.expect(pattern)
            kind = child.match.group(1)
            number = int(child.match.group(2))
            if kind == b"END":
                break
            markers += 1
            if number != markers:
                sequence_ok = False
    except (pexpect.EOF, pexpect.TIMEOUT) as e:
        say({"error": "%s after %d markers" % (type(e).__name__, markers)})
        return 1
    elapsed = time.monotonic() - t0
    say(
        {
            "markers": markers,
            "end": number,
            "sequence_ok": sequence_ok,
            "elapsed_s": elapsed,
            "maxrss_kib": peak_rss_kib(),
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
