#!/usr/bin/env python3
"""lab-agent-fuzz.py DOMAIN REGION SEED COUNT: fuzz a lab guest's agent over
its channel socket (src/guest/PROTOCOL.md): the driver's ioctls through the
drvfuzz verb (200,000 random calls from four processes, then as many racing an unbind),
and then COUNT requests of random verbs with random arguments, each of
which must be answered with `ok` or `err CODE`, the agent answering hello
afterwards. Prints what it did; exits 1 with the first thing that went
wrong. Verbs that run or kill processes or write files are left out: they
would do what they were asked."""
import importlib.util
import os
import random
import re
import subprocess
import sys
import time

spec = importlib.util.spec_from_file_location(
    "guestlib", os.path.join(os.environ.get("top_srcdir", "."), "tests", "test-guest-lib.py"))
guestlib = importlib.util.module_from_spec(spec)
spec.loader.exec_module(guestlib)

SKIPPED = {"exec", "spawn", "kill", "put", "rename", "unlink", "drvfuzz"}
KEYS = ["region", "offset", "length", "size", "count", "seed", "vector", "peer", "timeout",
        "timeout_ms", "path", "id", "data", "pattern", "index", "value", "iterations", "max",
        "chunk", "mode", "calls", "workers", "crc", "sha256", "expect", "name"]


def verbs():
    header = os.path.join(os.environ.get("top_srcdir", "."), "src", "guest", "include",
                          "ivlab-agent.h")
    found = re.findall(r'#define IVLAB_AGENT_[A-Z0-9_]+\s+"([a-z_0-9]+)"', open(header).read())
    return [v for v in found if v not in SKIPPED and v not in ("ready", "org.ivlab.agent.0")]


def value(rng, key, region):
    pick = rng.randrange(10)
    if key.startswith("timeout"):
        return str(rng.randrange(50))
    if key == "region" and pick < 6:
        return region
    if pick == 0:
        return ""
    if pick == 1:
        return str(rng.choice([0, 1, 2**31 - 1, 2**31, 2**32, 2**63, 2**64 - 1, 2**64, 10**30]))
    if pick == 2:
        return "-" + str(rng.randrange(1 << 40))
    if pick == 3:
        return "%" + "".join(rng.choice("0123456789abcdefXYZ%") for _ in range(rng.randrange(8)))
    if pick == 4:
        return "/" + "/".join("".join(rng.choice("abc.%/")
                                      for _ in range(rng.randrange(6))) for _ in range(3))
    if pick == 5:
        return "".join(chr(rng.randrange(33, 127)) for _ in range(rng.randrange(1, 40)))
    return str(rng.randrange(1 << rng.choice([4, 12, 20, 32])))


def request_line(rng, names, region):
    verb = rng.choice(names) if rng.randrange(20) else "".join(
        chr(rng.randrange(33, 127)) for _ in range(rng.randrange(1, 12)))
    words = [verb]
    for _ in range(rng.randrange(6)):
        key = rng.choice(KEYS) if rng.randrange(8) else "".join(
            rng.choice("abcxyz_=") for _ in range(rng.randrange(1, 6)))
        words.append(key + "=" + value(rng, key, region) if rng.randrange(10) else key)
    line = " ".join(words)
    if rng.randrange(50) == 0:
        line += "\t\x01" + "=" * rng.randrange(100)
    return line.replace("\n", " ")


def main():
    domain, region, seed, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    xml = subprocess.run(["virsh", "-q", "dumpxml", domain], capture_output=True, text=True,
                         check=True).stdout
    match = re.search(r"<channel type='unix'>\s*<source mode='bind' path='([^']+)'", xml)
    if not match:
        print("%s has no agent channel socket" % domain)
        return 1
    agent = guestlib.Agent.connect_unix(match.group(1), time.monotonic() + 10)
    agent.hello(time.monotonic() + 30)

    for extra in ("", " unbind=1"):
        reply = agent.request("drvfuzz region=%s calls=200000 workers=4 seed=%d%s"
                              % (region, seed, extra), timeout=600)
        if not reply.ok:
            print("drvfuzz%s: %s" % (extra, reply.line))
            return 1
        print("drvfuzz%s: %s" % (extra, reply.line))

    rng = random.Random(seed)
    names = verbs()
    answered = {"ok": 0, "err": 0}
    started = time.monotonic()
    for i in range(count):
        line = request_line(rng, names, region)
        try:
            reply = agent.request(line, timeout=60)
        except (TimeoutError, EOFError) as exc:
            print("request %d %r: %s" % (i, line[:200], exc))
            return 1
        if not reply.ok and not re.match(r"err [a-z]+ ", reply.line + " "):
            print("request %d %r: malformed answer %r" % (i, line[:200], reply.line[:200]))
            return 1
        answered["ok" if reply.ok else "err"] += 1
    reply = agent.request("hello", timeout=30)
    if not reply.ok:
        print("hello after fuzzing: %s" % reply.line)
        return 1
    print("%d random requests over %d verbs in %.1f s: %d ok, %d err; hello still answered"
          % (count, len(names), time.monotonic() - started, answered["ok"], answered["err"]))
    agent.close()
    return 0


sys.exit(main())
