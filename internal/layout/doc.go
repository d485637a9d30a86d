// Package layout is the storage layout of input files in S3 and the schema
// that names its dimensions and says where each lives in a key. Without
// "in" on its dimensions a schema is telemetry-server's layout:
//
//	<reason>/<appName>/<appUpdateChannel>/<appVersion>/<appBuildID>.<submission_date>[.v<N>].log.<uuid>.<ext>
//
// under a bucket and an optional prefix: all dimensions but the last two
// are directory levels and the last two are the first two dot-separated
// parts of the file name (its earlier files have no .v<N> part). With
// "in", each dimension is a directory level ("directory"), a part of the
// file name ("file_name") or a Hive-style directory ("key=value",
// <field_name>=<value>), and "file_name" says what the name holds after
// them ("telemetry" or "any"): telemetry-server's later all-directory
// layout and Hive partitions (dt=2024-01-01/hour=03/part-0001.json.gz)
// are schemas of this kind (filters/layouts, docs/layouts.md). The
// extension says how the file is compressed.
//
// Dimension values in keys are sanitised: in a directory or the file name
// every character outside [a-zA-Z0-9_/.] became "_" when the file was
// written; a key=value directory may hold "-" too. A key whose values do
// not fit their place (empty, "." or "..", other characters), or whose
// shape differs, does not fit the layout; the index counts such keys
// instead of guessing what they mean.
package layout
