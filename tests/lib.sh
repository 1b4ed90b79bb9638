# lib.sh: TAP helpers for the shell tests. Source it, call plan or tap_done.
test_count=0
test_failed=0

ok() {
	test_count=$((test_count + 1))
	echo "ok $test_count - $*"
}

not_ok() {
	test_count=$((test_count + 1))
	test_failed=$((test_failed + 1))
	echo "not ok $test_count - $*"
}

# check DESCRIPTION COMMAND...: one test point from a command's status.
check() {
	desc=$1
	shift
	if "$@"; then ok "$desc"; else not_ok "$desc"; fi
}

# skip_point REASON: a test point that did not run.
skip_point() {
	test_count=$((test_count + 1))
	echo "ok $test_count # SKIP $*"
}

# skip_or_fail_point REASON: a test point whose real component is missing:
# skipped on a laptop, failed in CI.
skip_or_fail_point() {
	if [ "${CI:-}" = true ]; then
		not_ok "required component missing in CI: $*"
	else
		skip_point "$*"
	fi
}

# skip_or_fail REASON: a missing real component skips the rest of the test on
# a laptop and fails it in CI.
skip_or_fail() {
	if [ "$test_count" -eq 0 ] && [ "${CI:-}" != true ]; then
		echo "1..0 # SKIP $*"
		exit 0
	fi
	skip_or_fail_point "$*"
	tap_done
	exit
}

# image_tools_missing ARCH: the tools `ivlab image build --arch ARCH` runs
# that this host lacks (nothing when it has them all). A missing tool may
# skip a test outside CI; a build that fails with every tool there is a
# failure everywhere.
image_tools_missing() {
	_missing=
	for _tool in apt-get apt-cache dpkg dpkg-deb make; do
		command -v "$_tool" >/dev/null 2>&1 || _missing="$_missing $_tool"
	done
	if [ "$1" != "$(uname -m)" ]; then
		case $1 in
		aarch64) _tool=aarch64-linux-gnu-gcc _debarch=arm64 ;;
		x86_64) _tool=x86_64-linux-gnu-gcc _debarch=amd64 ;;
		esac
		command -v "$_tool" >/dev/null 2>&1 || _missing="$_missing $_tool"
		dpkg --print-foreign-architectures 2>/dev/null | grep -qx "$_debarch" ||
			_missing="$_missing dpkg-architecture-$_debarch"
	fi
	[ -f "${IVLAB_AGENT_DIR:-$top_builddir/src/guest}/ivlab-agent-$1" ] ||
		_missing="$_missing ivlab-agent-$1"
	echo "${_missing# }"
}

# wait_until SECONDS COMMAND...: poll a condition with a deadline.
wait_until() {
	limit=$1
	shift
	end=$(($(date +%s) + limit))
	until "$@"; do
		[ "$(date +%s)" -ge "$end" ] && return 1
		sleep 0.05
	done
}

# json_schema_check DESCRIPTION SCHEMA FILE: one test point: FILE is valid
# against man/schema/SCHEMA (python3-jsonschema; a missing module skips
# outside CI and fails in CI).
json_schema_check() {
	if ! "${PYTHON3:-python3}" -c 'import jsonschema' 2>/dev/null; then
		skip_or_fail_point "$1: python3-jsonschema is not installed"
		return
	fi
	if "${PYTHON3:-python3}" -c '
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.validators.validator_for(schema).check_schema(schema)
jsonschema.validate(json.load(open(sys.argv[2])), schema,
                    format_checker=jsonschema.FormatChecker())
' "$top_srcdir/man/schema/$2" "$3" >"$scratch/schema.err" 2>&1; then
		ok "$1"
	else
		not_ok "$1"
		diag "$(tail -n 20 "$scratch/schema.err")"
	fi
}

diag() {
	printf '%s\n' "$@" | sed 's/^/# /'
}

tap_done() {
	echo "1..$test_count"
	[ "$test_failed" -eq 0 ]
}

scratch=$(mktemp -d "${TMPDIR:-/tmp}/ivlab-test.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
