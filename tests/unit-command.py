#!/usr/bin/env python3
# unit-command.py: run one Exec*= command of a systemd unit the way systemd
# would: the unit's Environment= defaults, then its configuration file
# (EnvironmentFile= syntax), specifiers %i and %t, "${VAR}" as one word and
# "$VAR" split on blanks. For tests/test-server-service.sh.
#   unit-command.py UNIT CONF INSTANCE RUNTIME_DIR DIRECTIVE [--print]
import os
import re
import shlex
import subprocess
import sys


def main():
    unit, conf, instance, runtime, directive = sys.argv[1:6]
    specifiers = {"i": instance, "t": runtime, "%": "%"}
    expand = lambda text: re.sub(r"%(.)", lambda m: specifiers[m.group(1)], text)
    env = {}
    command = None
    for line in open(unit):
        key, _, value = line.strip().partition("=")
        if key == "Environment":
            for word in shlex.split(value):
                name, _, val = word.partition("=")
                env[name] = expand(val)
        elif key == directive:
            command = value
    for line in open(conf):
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            name, _, val = line.partition("=")
            env[name.strip()] = val.strip().strip('"')
    if command is None:
        sys.exit("%s: no %s=" % (unit, directive))
    argv = []
    for word in shlex.split(expand(command)):
        if re.fullmatch(r"\$[A-Za-z_][A-Za-z0-9_]*", word):
            argv += env.get(word[1:], "").split()
        else:
            argv.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env.get(m.group(1), ""), word))
    if "--print" in sys.argv[6:]:
        print("\n".join(argv))
        return 0
    return subprocess.run(argv).returncode


sys.exit(main())
