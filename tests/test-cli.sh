#!/bin/sh
# test-cli.sh: the command line: help, version, unknown commands, usage
# errors and exit codes.
. "$top_srcdir/tests/lib.sh"

# expect STATUS PATTERN DESCRIPTION -- COMMAND...: status and a line of the output.
expect() {
	want=$1 pattern=$2 desc=$3
	shift 4
	status=0
	"$@" >"$scratch/out" 2>&1 || status=$?
	if [ "$status" -ne "$want" ]; then
		not_ok "$desc: exit status $status, expected $want"
		diag "$(cat "$scratch/out")"
	elif ! grep -q -e "$pattern" "$scratch/out"; then
		not_ok "$desc: output lacks '$pattern'"
		diag "$(cat "$scratch/out")"
	else
		ok "$desc"
	fi
}

expect 0 '^Usage: ivlab' "--help prints usage" -- "$IVLAB" --help
expect 0 '^  xml ' "--help lists the commands" -- "$IVLAB" --help
expect 0 '^Usage: ivlab' "help prints usage" -- "$IVLAB" help
expect 0 "^ivlab $(sed -n 's/^AC_INIT(\[ivlab\], \[\([^]]*\)\].*/\1/p' "$top_srcdir/configure.ac")\$" \
	"--version prints the configured version" -- "$IVLAB" --version
expect 2 'no command given' "no command is a usage error" -- "$IVLAB"
expect 2 "unknown command: 'xlm'; did you mean 'xml'?" "a typo gets the closest command" -- "$IVLAB" xlm
expect 2 "unknown command: 'frobnicate' (see 'ivlab help')" "an unknown command" -- "$IVLAB" frobnicate
expect 2 'Unknown option --bogus' "an unknown global option" -- "$IVLAB" --bogus xml
expect 2 "xml: Unknown option --bogus" "an unknown command option" -- "$IVLAB" xml --bogus
expect 2 "see 'ivlab xml --help'" "a command's usage error points to its help" -- "$IVLAB" xml --bogus
expect 0 'Usage:' "COMMAND --help" -- "$IVLAB" xml --help
expect 0 'print the libvirt domain XML' "help COMMAND" -- "$IVLAB" help xml
expect 2 "unknown command: 'nosuch'" "help of an unknown command" -- "$IVLAB" help nosuch
expect 2 "too many arguments" "help with two commands" -- "$IVLAB" help xml help
expect 0 '<domain type=' "a unique prefix runs the command" -- "$IVLAB" x
expect 1 "has no guest 'nosuch'" "xml of an unknown guest" -- "$IVLAB" xml nosuch
expect 2 'Missing argument for -f' "-f without a file" -- "$IVLAB" -f
expect 1 'no such lab file' "-f of a missing file" -- "$IVLAB" -f /nonexistent.xml xml

# The default lab, then ./ivlab.xml when present.
"$IVLAB" xml >"$scratch/default.xml" 2>&1
check "without -f the default lab is used" grep -q '<name>default-x86a</name>' "$scratch/default.xml"
cp "$top_srcdir/domains/pair.xml" "$scratch/ivlab.xml"
(cd "$scratch" && "$IVLAB" xml) >"$scratch/local.xml" 2>&1
check "./ivlab.xml is preferred to the default lab" grep -q '<name>pair-left</name>' "$scratch/local.xml"
count=$(grep -c '<domain ' "$scratch/default.xml")
check "xml prints every guest of the default lab (3, got $count)" [ "$count" -eq 3 ]

# Verbose output explains the accelerator choice.
IVLAB_ACCEL= "$IVLAB" -v xml arm >/dev/null 2>"$scratch/verbose"
check "-v says why aarch64 runs under TCG on this host" grep -q 'arm: accelerator tcg: ' "$scratch/verbose"
"$IVLAB" -q xml arm >/dev/null 2>"$scratch/quiet"
check "-q prints nothing on stderr" [ ! -s "$scratch/quiet" ]
tap_done
