package layout

import (
	"fmt"
	"os"
	"slices"
	"strings"
)

// SchemaVersion is the only schema and filter version af understands,
// telemetry-server's.
const SchemaVersion = 1

// DefaultSchemaPath is where the repository keeps telemetry-server's schema.
const DefaultSchemaPath = "filters/telemetry_schema.json"

// Schema names the dimensions of the layout in order. The last two are in
// the file name, the others are directory levels.
type Schema struct {
	Fields []string
}

// Telemetry returns telemetry-server's schema, the one
// filters/telemetry_schema.json holds.
func Telemetry() Schema {
	return Schema{Fields: []string{"reason", "appName", "appUpdateChannel", "appVersion", "appBuildID", "submission_date"}}
}

// ParseSchema reads a telemetry_schema.json document. name is used in
// error messages.
func ParseSchema(name string, data []byte) (Schema, error) {
	doc, err := DecodeDocument(name, data)
	if err != nil {
		return Schema{}, err
	}
	if err := CheckVersion(name, doc); err != nil {
		return Schema{}, err
	}
	if len(doc.Dimensions) < 2 {
		return Schema{}, &DocError{File: name, Msg: fmt.Sprintf("the schema has %d dimension(s); the layout needs at least 2 (the file name holds the last two)", len(doc.Dimensions))}
	}
	s := Schema{Fields: make([]string, len(doc.Dimensions))}
	for i, d := range doc.Dimensions {
		if j := slices.Index(s.Fields[:i], d.FieldName); j >= 0 {
			return Schema{}, &DocError{File: name, Dim: i + 1, Field: d.FieldName, Msg: fmt.Sprintf("field_name repeats dimension %d; each dimension needs its own name", j+1)}
		}
		s.Fields[i] = d.FieldName
	}
	return s, nil
}

// CheckVersion checks a document's "version" against SchemaVersion.
func CheckVersion(name string, doc Document) error {
	switch {
	case doc.Version == nil:
		return &DocError{File: name, Msg: fmt.Sprintf(`"version" is missing; add "version": %d`, SchemaVersion)}
	case *doc.Version != SchemaVersion:
		return &DocError{File: name, Msg: fmt.Sprintf(`"version" is %d; af understands version %d only`, *doc.Version, SchemaVersion)}
	}
	return nil
}

// LoadSchema reads the schema file at path.
func LoadSchema(path string) (Schema, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Schema{}, fmt.Errorf("read schema: %w (pass --schema with the path of telemetry_schema.json)", err)
	}
	return ParseSchema(path, data)
}

// Equal reports whether two schemas name the same dimensions in the same
// order.
func (s Schema) Equal(o Schema) bool { return slices.Equal(s.Fields, o.Fields) }

// String lists the field names in order, separated by commas.
func (s Schema) String() string { return strings.Join(s.Fields, ", ") }

// DirLevels is how many dimensions are directory levels.
func (s Schema) DirLevels() int { return len(s.Fields) - 2 }
