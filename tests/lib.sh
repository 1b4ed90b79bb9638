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

# skip_or_fail REASON: a missing real component skips on a laptop, fails in CI.
skip_or_fail() {
	if [ "${CI:-}" = true ]; then
		echo "not ok 1 - required component missing in CI: $*"
		echo "1..1"
		exit 1
	fi
	echo "1..0 # SKIP $*"
	exit 0
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

diag() {
	printf '%s\n' "$@" | sed 's/^/# /'
}

tap_done() {
	echo "1..$test_count"
	[ "$test_failed" -eq 0 ]
}

scratch=$(mktemp -d "${TMPDIR:-/tmp}/ivlab-test.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
