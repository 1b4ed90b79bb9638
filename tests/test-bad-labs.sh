#!/bin/sh
# test-bad-labs.sh: every lab in tests/data/bad gives exactly the message in
# its .err file and exit status 1, and (under valgrind when present) no
# memory error. IVLAB_REGENERATE=1 rewrites the .err files.
. "$top_srcdir/tests/lib.sh"

cd "$top_srcdir/tests/data/bad" || exit 1
run=
if [ -n "$VALGRIND" ]; then
	run="$VALGRIND -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite"
fi
for lab in *.lab.xml; do
	name=${lab%.lab.xml}
	status=0
	$run "$IVLAB" -f "$lab" xml >"$scratch/out" 2>"$scratch/err" || status=$?
	grep -v '^==' "$scratch/err" >"$scratch/message"
	if [ "${IVLAB_REGENERATE:-}" = 1 ]; then
		cp "$scratch/message" "$name.err"
	fi
	if [ "$status" -eq 99 ]; then
		not_ok "$name: valgrind reports memory errors"
		diag "$(cat "$scratch/err")"
	elif [ "$status" -ne 1 ]; then
		not_ok "$name: exit status $status, expected 1"
		diag "$(cat "$scratch/err")"
	elif ! diff -u "$name.err" "$scratch/message" >"$scratch/diff"; then
		not_ok "$name: message differs from $name.err"
		diag "$(cat "$scratch/diff")"
	elif [ -s "$scratch/out" ]; then
		not_ok "$name: printed XML despite the error"
	else
		ok "$name: $(cat "$scratch/message")"
	fi
done

# A lab file that does not exist, and one that is a directory.
for lab in /nonexistent/lab.xml "$scratch"; do
	status=0
	want="no such lab file"
	[ -d "$lab" ] && want="not a regular file"
	"$IVLAB" -f "$lab" xml >/dev/null 2>"$scratch/err" || status=$?
	if [ "$status" -eq 1 ] && grep -q "^ivlab: $lab: $want" "$scratch/err"; then
		ok "missing lab $lab: clear error"
	else
		not_ok "missing lab $lab: status $status: $(cat "$scratch/err")"
	fi
done
tap_done
