#!/bin/sh
# test-json-schema.sh: the JSON documents ivlab prints (status --json, image
# list --json, bench --json) against their schemas in man/schema/, with a
# version field and absolute paths; the schemas are valid and strict
# enough to reject a document without its version. The documents of a
# running lab and of built images are checked by the lab and image tests.
. "$top_srcdir/tests/lib.sh"

IVLAB_STATE_DIR=$scratch/state
export IVLAB_STATE_DIR

for schema in status bench bench-boot image-list; do
	check "$schema.schema.json is JSON" "${PYTHON3:-python3}" -c \
		'import json, sys; json.load(open(sys.argv[1]))' "$top_srcdir/man/schema/$schema.schema.json"
done

# status of labs that are down, through libvirt's test driver, from a
# relative lab file: "file" is absolute.
for lab in default pair mixed; do
	(cd "$top_srcdir/domains" && "$IVLAB" -c test:///default -f "$lab.xml" status --json) \
		>"$scratch/$lab.json" 2>"$scratch/err"
	check "status --json of $lab exits 0" [ $? -eq 0 ]
	json_schema_check "status --json of $lab matches status.schema.json" status.schema.json "$scratch/$lab.json"
	check "...with version 1 and the lab file's absolute path" grep -qF \
		"\"version\":1,\"ivlab\":\"" "$scratch/$lab.json"
	check "...file is $top_srcdir/domains/$lab.xml" grep -qF \
		"\"file\":\"$top_srcdir/domains/$lab.xml\"" "$scratch/$lab.json"
done

# image list with no image, and a state directory given as a relative path.
(cd "$scratch" && IVLAB_STATE_DIR=state "$IVLAB" image list --json) >"$scratch/images.json"
json_schema_check "image list --json matches image-list.schema.json" image-list.schema.json "$scratch/images.json"
check "...and has no image" grep -qxF '{"version":1,"ivlab":"'"$("$IVLAB" --version | awk '{print $NF}')"'","images":[]}' "$scratch/images.json"

# The schemas refuse what they should.
refuses() {
	"${PYTHON3:-python3}" -c '
import json, sys, jsonschema
try:
    jsonschema.validate(json.load(open(sys.argv[2])), json.load(open(sys.argv[1])))
except jsonschema.ValidationError:
    sys.exit(0)
sys.exit(1)
' "$top_srcdir/man/schema/$1" "$2"
}
sed 's/"version":1,//' "$scratch/default.json" >"$scratch/noversion.json"
sed 's|"file":"/|"file":"|' "$scratch/default.json" >"$scratch/relative.json"
sed 's/"images":\[\]/"images":[{"arch":"x86_64"}]/' "$scratch/images.json" >"$scratch/partial.json"
if "${PYTHON3:-python3}" -c 'import jsonschema' 2>/dev/null; then
	check "status.schema.json refuses a status without version" refuses status.schema.json "$scratch/noversion.json"
	check "status.schema.json refuses a relative lab file" refuses status.schema.json "$scratch/relative.json"
	check "image-list.schema.json refuses an image without its fields" refuses image-list.schema.json "$scratch/partial.json"
else
	skip_or_fail_point "the schemas refuse bad documents: python3-jsonschema is not installed"
fi
tap_done
