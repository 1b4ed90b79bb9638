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

# The accelerator xml shows: --accel, else $IVLAB_ACCEL, else the lab's;
# auto shows tcg on every host (`up` decides auto when it runs).
unset IVLAB_ACCEL
# domain_type FILE: the type of the first domain in FILE.
domain_type() {
	sed -n 's/^<domain type="\([a-z]*\)".*/\1/p' "$1" | head -n 1
}
"$IVLAB" -v xml arm >"$scratch/auto.xml" 2>"$scratch/verbose"
check "xml of an accel=auto lab shows domain type qemu (got $(domain_type "$scratch/auto.xml"))" \
	[ "$(domain_type "$scratch/auto.xml")" = qemu ]
check "-v says auto shows tcg and 'up' decides" \
	grep -q "arm: accelerator tcg: accel is auto, which 'ivlab up' decides" "$scratch/verbose"
"$IVLAB" xml --accel kvm arm >"$scratch/kvm.xml" 2>&1
check "xml --accel kvm shows domain type kvm" [ "$(domain_type "$scratch/kvm.xml")" = kvm ]
"$IVLAB" xml --accel tcg arm >"$scratch/tcg.xml" 2>&1
check "xml --accel tcg is what auto shows" cmp -s "$scratch/auto.xml" "$scratch/tcg.xml"
# Under KVM the guest gets the vCPUs it asks for; under TCG room for a second.
sed -e 's/^<domain type="kvm"/<domain type="qemu"/' \
	-e "s|<vcpu>1</vcpu>|<vcpu current=\"1\">2</vcpu>|" "$scratch/kvm.xml" >"$scratch/kvm-as-tcg.xml"
check "...and differs from --accel kvm only in the type and the vCPUs" \
	cmp -s "$scratch/kvm-as-tcg.xml" "$scratch/tcg.xml"
sed 's/accel="auto"/accel="kvm"/' "$top_srcdir/domains/default.xml" >"$scratch/kvm-lab.xml"
"$IVLAB" -f "$scratch/kvm-lab.xml" xml arm >"$scratch/lab-kvm.xml" 2>&1
check "xml of an accel=kvm lab shows type kvm" [ "$(domain_type "$scratch/lab-kvm.xml")" = kvm ]
IVLAB_ACCEL=tcg "$IVLAB" -f "$scratch/kvm-lab.xml" xml arm >"$scratch/env-tcg.xml" 2>&1
check "\$IVLAB_ACCEL=tcg overrides the lab's kvm" [ "$(domain_type "$scratch/env-tcg.xml")" = qemu ]
IVLAB_ACCEL=tcg "$IVLAB" -f "$scratch/kvm-lab.xml" xml --accel kvm arm >"$scratch/opt-kvm.xml" 2>&1
check "--accel kvm overrides \$IVLAB_ACCEL" [ "$(domain_type "$scratch/opt-kvm.xml")" = kvm ]
expect 2 "xml: --accel: 'auto' is not kvm or tcg" "xml --accel auto is a usage error" -- \
	"$IVLAB" xml --accel auto
expect 2 "xml: --accel: 'hvf' is not kvm or tcg" "xml --accel of an unknown accelerator" -- \
	"$IVLAB" xml --accel hvf
"$IVLAB" -q xml arm >/dev/null 2>"$scratch/quiet"
check "-q prints nothing on stderr" [ ! -s "$scratch/quiet" ]

# Output lost on a full disk is an error, not a success.
for command in "--version" "help" "xml" "image list --json"; do
	status=0
	# shellcheck disable=SC2086 # the command's words
	IVLAB_STATE_DIR=$scratch/state "$IVLAB" $command >/dev/full 2>"$scratch/err" || status=$?
	if [ "$status" -eq 1 ] &&
		grep -qx "ivlab: cannot write the output: No space left on device" "$scratch/err"; then
		ok "$command >/dev/full: exit 1, and says so"
	else
		not_ok "$command >/dev/full: exit $status: $(cat "$scratch/err")"
	fi
done
tap_done
