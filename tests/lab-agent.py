#!/usr/bin/env python3
"""lab-agent.py DOMAIN COMMAND: run COMMAND in a running lab guest through
its agent's `exec` verb (src/guest/PROTOCOL.md), over the channel socket
libvirt made (ivlab up has let go of it); print its output and exit with its
status (125 when the agent cannot be reached or refuses)."""
import importlib.util
import os
import re
import subprocess
import sys
import time

spec = importlib.util.spec_from_file_location(
    "guestlib", os.path.join(os.environ.get("top_srcdir", "."), "tests", "test-guest-lib.py"))
guestlib = importlib.util.module_from_spec(spec)
spec.loader.exec_module(guestlib)


def main():
    domain, command = sys.argv[1], sys.argv[2]
    xml = subprocess.run(["virsh", "-q", "dumpxml", domain], capture_output=True, text=True,
                         check=True).stdout
    match = re.search(r"<channel type='unix'>\s*<source mode='bind' path='([^']+)'", xml)
    if not match:
        sys.stderr.write("lab-agent: %s has no agent channel socket\n" % domain)
        return 125
    agent = guestlib.Agent.connect_unix(match.group(1), time.monotonic() + 10)
    agent.hello(time.monotonic() + 30)
    reply = agent.request("exec cmd=%s" % guestlib.encode(command), timeout=60)
    agent.close()
    if not reply.ok:
        sys.stderr.write("lab-agent: %s\n" % reply.line)
        return 125
    sys.stdout.write(guestlib.decode(reply.get("output", "")))
    return int(reply["status"])


sys.exit(main())
