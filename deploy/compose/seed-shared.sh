#!/bin/sh
# Run by the `shared-init` service of deploy/compose.yaml before the hub nodes start: puts the
# directory and the ODS files on the shared volume and makes the drop folders, owned by the
# edthub user (10001) of the image. Each file is replaced by a rename, so a node watching it never
# reads half of it; the CSV files are replaced before the directory file that names them.
set -eu

SHARED=/srv/edt
ID=10001   # the edthub user and group of the image

install -d -o "$ID" -g "$ID" -m 0755 "$SHARED" "$SHARED/drop"
for folder in A81001 A81002 community other-practices; do
  install -d -o "$ID" -g "$ID" -m 0770 "$SHARED/drop/$folder" "$SHARED/drop/$folder/acks"
done

put() {
  install -o "$ID" -g "$ID" -m 0644 "$1" "$SHARED/.$2.new"
  mv -f "$SHARED/.$2.new" "$SHARED/$2"
}
put /seed/ods/epraccur.csv epraccur.csv
put /seed/ods/ods-to-supplier.csv ods-to-supplier.csv
put /seed/compose/directory.toml directory.toml

echo "shared volume ready: $SHARED"
ls -l "$SHARED" "$SHARED/drop"
