#!/bin/sh
# test-golden.sh: every example lab (domains/*.xml) and every test lab
# (tests/data/*.lab.xml), for every guest, gives exactly the domain XML in
# tests/data/<case>-<guest>.xml, and that XML passes virt-xml-validate
# (without it, the validation alone skips, and fails when CI=true).
# IVLAB_REGENERATE=1 rewrites the expected files instead of comparing.
. "$top_srcdir/tests/lib.sh"

# The generated XML names paths: pin them (a lab's own paths, relative to
# its file, show as @top_srcdir@/...). The accelerator is the lab's
# (auto shows tcg whatever the host), so no override may leak in.
export IVLAB_STATE_DIR=/var/lib/ivlab
unset IVLAB_ACCEL
data="$top_srcdir/tests/data"
# ivlab resolves a lab's paths: a srcdir like build/../src shows without "..".
real_srcdir=$(cd "$top_srcdir" && pwd -P)

for lab in "$top_srcdir"/domains/*.xml "$data"/*.lab.xml; do
	[ -f "$lab" ] || continue
	case_name=$(basename "$lab" .xml)
	case_name=${case_name%.lab}
	guests=$(xmllint --xpath '//guest/@name' "$lab" | sed 's/ *name="\([^"]*\)"/\1 /g')
	[ -n "$guests" ] || not_ok "$case_name: no guests found"
	# A lab's <file>s may be programs make builds beside it (domains/ring):
	# only an in-tree build has them there (test-lab-ring.sh copies the lab
	# next to them in any build).
	unbuilt=
	for file in $(sed -n 's/.*<file src="\([^"]*\)".*/\1/p' "$lab"); do
		[ -e "$(dirname "$lab")/$file" ] || unbuilt="$unbuilt $file"
	done
	if [ -n "$unbuilt" ]; then
		skip_point "$case_name: its programs are not beside it (a VPATH build, or no aarch64 cross compiler):$unbuilt"
		continue
	fi
	for guest in $guests; do
		expected="$data/$case_name-$guest.xml"
		actual="$scratch/$case_name-$guest.xml"
		if ! "$IVLAB" -f "$lab" xml "$guest" >"$scratch/raw" 2>"$scratch/err"; then
			not_ok "$case_name/$guest: ivlab xml failed: $(cat "$scratch/err")"
			continue
		fi
		sed -e "s|$top_srcdir/|@top_srcdir@/|g" -e "s|$real_srcdir/|@top_srcdir@/|g" \
			"$scratch/raw" >"$actual"
		if [ "${IVLAB_REGENERATE:-}" = 1 ]; then
			cp "$actual" "$expected"
			ok "$case_name/$guest: regenerated $expected"
		elif diff -u "$expected" "$actual" >"$scratch/diff" 2>&1; then
			ok "$case_name/$guest: matches $(basename "$expected")"
		else
			not_ok "$case_name/$guest: differs from $(basename "$expected") (IVLAB_REGENERATE=1 to accept)"
			diag "$(cat "$scratch/diff")"
		fi
		# Only the validation needs the tool: the diff above runs regardless.
		if [ -z "$VIRT_XML_VALIDATE" ]; then
			skip_or_fail_point "$case_name/$guest: virt-xml-validate not found (Debian package libvirt-clients)"
		elif "$VIRT_XML_VALIDATE" "$scratch/raw" domain >"$scratch/validate" 2>&1; then
			ok "$case_name/$guest: virt-xml-validate accepts it"
		else
			not_ok "$case_name/$guest: virt-xml-validate rejects it"
			diag "$(cat "$scratch/validate")"
		fi
	done
done
tap_done
