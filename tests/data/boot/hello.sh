#!/bin/sh
# hello.sh: a program the boot test delivers with <file> and runs at boot.
echo "hello from $(hostname)"
