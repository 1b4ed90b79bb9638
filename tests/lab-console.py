#!/usr/bin/env python3
"""lab-console.py IVLAB LAB GUEST: drive `ivlab console GUEST` through a pty
like a person would: type a command in the guest shell, expect its answer,
leave with Ctrl-], and check the terminal is restored. Exit 0 on success."""
import os
import pty
import select
import sys
import termios
import time


def main():
    ivlab, lab, guest = sys.argv[1:4]
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(ivlab, [ivlab, "-f", lab, "console", guest])
    output = b""

    def read_until(token, timeout):
        nonlocal output
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    return False
                if not chunk:
                    return False
                output += chunk
                if token in output:
                    return True
        return False

    def fail(why):
        sys.stderr.write("lab-console: %s\noutput: %r\n" % (why, output[-800:]))
        try:
            os.kill(pid, 9)
        except OSError:
            pass
        sys.exit(1)

    if not read_until(b"Escape character is ^]", 30):
        fail("no banner")
    # The shell answers each line; retry the prompt until it does.
    answered = False
    for attempt in range(10):
        os.write(fd, b"echo ivlab-$((6*7))-answer\r")
        if read_until(b"ivlab-42-answer", 10):
            answered = True
            break
    if not answered:
        fail("the guest shell did not answer")
    os.write(fd, b"ls /dev/ivlab0 && echo dev-$((1+1))-present\r")
    if not read_until(b"dev-2-present", 20):
        fail("/dev/ivlab0 is missing in the guest")
    os.write(fd, b"\x1d")
    deadline = time.monotonic() + 15
    status = None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        read_until(b"\x00", 0.2)
    else:
        fail("Ctrl-] did not end the console")
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        fail("ivlab console exited with %r" % status)
    attrs = termios.tcgetattr(fd)
    if not attrs[3] & termios.ICANON or not attrs[3] & termios.ECHO:
        fail("the terminal was left raw")
    print("console: answered, /dev/ivlab0 present, Ctrl-] left, terminal restored")


if __name__ == "__main__":
    main()
