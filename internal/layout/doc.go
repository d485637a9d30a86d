// Package layout is the storage layout of input files in S3 and the schema
// that names its dimensions, as telemetry-server wrote them:
//
//	<reason>/<appName>/<appUpdateChannel>/<appVersion>/<appBuildID>.<submission_date>.v<N>.log.<uuid>.<ext>
//
// under a bucket and an optional prefix. The schema (telemetry_schema.json)
// lists the dimensions in order; all but the last two are directory levels
// and the last two are the first two dot-separated parts of the file name.
// The extension says how the file is compressed.
//
// Dimension values in keys are sanitised: every character outside
// [a-zA-Z0-9_/.] became "_" when the file was written. A key whose values
// are not sanitised, or whose shape differs, does not fit the layout; the
// index counts such keys instead of guessing what they mean.
package layout
