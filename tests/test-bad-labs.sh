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

# expect_message LAB MESSAGE: exactly one line, "ivlab: LAB" MESSAGE, and exit
# status 1.
expect_message() {
	status=0
	"$IVLAB" -f "$1" xml >/dev/null 2>"$scratch/err" || status=$?
	if [ "$status" -eq 1 ] && [ "$(wc -l <"$scratch/err")" -eq 1 ] &&
		[ "$(cat "$scratch/err")" = "ivlab: $1$2" ]; then
		ok "$1$2"
	else
		not_ok "$1: status $status, want 'ivlab: $1$2'"
		diag "$(head -c 400 "$scratch/err")"
	fi
}

# Made here, as they are large: an entity of 8,000 characters used 8,000
# times in an attribute (32 KB that expanded to 64 MB and took seconds; the
# message echoed all of it).
cd "$scratch" || exit 1
{
	printf '<?xml version="1.0"?>\n<!DOCTYPE lab [<!ENTITY e "'
	head -c 8000 /dev/zero | tr '\0' 'a'
	printf '">]>\n<lab name="'
	i=0
	while [ $i -lt 100 ]; do
		printf '&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;'
		printf '&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;'
		printf '&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;'
		printf '&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;'
		i=$((i + 1))
	done
	printf '"/>\n'
} >entities.lab.xml
expect_message entities.lab.xml ":2: entity declarations (<!ENTITY>) are not allowed in a lab file (it needs no DTD, see ivlab-lab(5))"

# Line numbers past 65535 (libxml2 keeps 16 bits unless asked).
{
	printf '<?xml version="1.0"?>\n<lab name="big">\n'
	yes '' | head -n 70000
	printf '  <region name="r" size="4MiB" mode="shared"/>\n'
	printf '  <guest name="g" arch="x86_64" colour="red">\n    <attach region="q"/>\n  </guest>\n</lab>\n'
} >big-lines.lab.xml
expect_message big-lines.lab.xml ":70003: mode 'shared' is not one of: plain, doorbell"
sed 's/mode="shared"/mode="plain"/' big-lines.lab.xml >big-lines-2.lab.xml
expect_message big-lines-2.lab.xml ":70005: guest 'g' attaches region 'q', which the lab does not define"
sed 's/<attach region="q"/<attach region="r"/' big-lines-2.lab.xml >big-lines-3.lab.xml
expect_message big-lines-3.lab.xml ":70004: not a valid lab: Invalid attribute colour for element guest"

# What is wrong with the file itself. Root reads any file: a write-only
# sysctl is one that even root cannot read.
ln -s loop.lab.xml loop.lab.xml
expect_message loop.lab.xml ": too many levels of symbolic links"
mkfifo fifo.lab.xml
expect_message fifo.lab.xml ": not a regular file (a lab file is XML, see ivlab-lab(5))"
if [ -e /proc/sys/vm/drop_caches ]; then
	expect_message /proc/sys/vm/drop_caches ": cannot read: Permission denied"
else
	ok "# SKIP no /proc/sys/vm/drop_caches"
fi
if [ "$(id -u)" -ne 0 ]; then
	cp "$top_srcdir/domains/default.xml" unreadable.lab.xml
	chmod 0 unreadable.lab.xml
	expect_message unreadable.lab.xml ": cannot read: Permission denied"
fi
tap_done
