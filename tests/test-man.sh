#!/bin/sh
# test-man.sh: the man pages are lint-clean and document every command.
. "$top_srcdir/tests/lib.sh"

[ -n "$MANDOC" ] || skip_or_fail "mandoc not found (Debian package mandoc)"
for page in "$top_srcdir"/man/ivlab.1 "$top_srcdir"/man/ivlab-lab.5; do
	if "$MANDOC" -T lint -W warning "$page" >"$scratch/lint" 2>&1; then
		ok "$(basename "$page"): mandoc -T lint is clean"
	else
		not_ok "$(basename "$page"): mandoc -T lint complains"
		diag "$(cat "$scratch/lint")"
	fi
done
# Every command in `ivlab help` has a section in ivlab(1).
"$IVLAB" help | sed -n 's/^  \([a-z][a-z-]*\)  .*/\1/p' >"$scratch/commands"
check "ivlab help lists commands" [ -s "$scratch/commands" ]
while read -r command; do
	check "ivlab(1) documents '$command'" grep -q "^\.SS $command\\b" "$top_srcdir/man/ivlab.1"
done <"$scratch/commands"
tap_done
