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

// Schema names the dimensions of the layout in order and says where each
// lives in a key. With Places nil it is telemetry-server's .vN layout:
// the last two dimensions are in the file name, the others are directory
// levels.
type Schema struct {
	Fields []string
	// Places says where each dimension lives, one per field; nil means
	// the .vN layout. Directory and key=value dimensions come first, the
	// file-name dimensions last.
	Places []Place
	// File is what the file name holds after its dimensions; "" means
	// TelemetryFile when a dimension is in the file name, AnyFile when
	// none is.
	File FileRule
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
	s := Schema{Fields: make([]string, len(doc.Dimensions))}
	explicit := -1 // the first dimension that says where it lives
	for i, d := range doc.Dimensions {
		if j := slices.Index(s.Fields[:i], d.FieldName); j >= 0 {
			return Schema{}, &DocError{File: name, Dim: i + 1, Field: d.FieldName, Msg: fmt.Sprintf("field_name repeats dimension %d; each dimension needs its own name", j+1)}
		}
		s.Fields[i] = d.FieldName
		if d.In != nil && explicit < 0 {
			explicit = i
		}
	}
	if doc.FileName != nil {
		s.File = FileRule(*doc.FileName)
		if s.File == "" {
			return Schema{}, &DocError{File: name, Msg: `"file_name" is empty; want "telemetry" ([v<N>.]log.<id>[.<ext>] after the file-name dimensions) or "any"`}
		}
	}
	if explicit < 0 {
		if len(doc.Dimensions) < 2 {
			return Schema{}, &DocError{File: name, Msg: fmt.Sprintf(`the schema has %d dimension(s); the layout needs at least 2 (the file name holds the last two), or say where each dimension lives with "in"`, len(doc.Dimensions))}
		}
		if msg, _ := s.check(); msg != "" {
			return Schema{}, &DocError{File: name, Msg: msg}
		}
		return s, nil
	}
	if len(doc.Dimensions) == 0 {
		return Schema{}, &DocError{File: name, Msg: "the schema has no dimensions; list at least one"}
	}
	s.Places = make([]Place, len(doc.Dimensions))
	for i, d := range doc.Dimensions {
		if d.In == nil {
			return Schema{}, &DocError{File: name, Dim: i + 1, Field: d.FieldName, Msg: fmt.Sprintf(`"in" is missing; dimension %d says where it lives, so every dimension must: add "in": "directory", "file_name" or "key=value"`, explicit+1)}
		}
		switch *d.In {
		case inDirectory:
			s.Places[i] = InDirectory
		case inFileName:
			s.Places[i] = InFileName
		case inKeyValue:
			s.Places[i] = InKeyValue
		default:
			return Schema{}, &DocError{File: name, Dim: i + 1, Field: d.FieldName, Msg: fmt.Sprintf(`"in" is %q; want "directory" (a directory level), "file_name" (a dot-separated part of the file name) or "key=value" (a directory named %s=<value>)`, *d.In, d.FieldName)}
		}
	}
	if msg, dim := s.check(); msg != "" {
		de := &DocError{File: name, Dim: dim, Msg: msg}
		if dim > 0 {
			de.Field = s.Fields[dim-1]
		}
		return Schema{}, de
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
// order, in the same places.
func (s Schema) Equal(o Schema) bool {
	return slices.Equal(s.Fields, o.Fields) && s.Layout() == o.Layout()
}

// String lists the field names in order, separated by commas, and where
// they live when that is not telemetry-server's .vN layout.
func (s Schema) String() string {
	names := strings.Join(s.Fields, ", ")
	if s.isDefault() {
		return names
	}
	return names + " (" + s.Template() + ")"
}

// Template is the shape of a key the layout fits, for messages:
// "<reason>/…/<appBuildID>.<submission_date>.[v<N>.]log.<id>[.<ext>]"
// or "dt=<dt>/hour=<hour>/<file>".
func (s Schema) Template() string {
	var b strings.Builder
	name := false
	for i, f := range s.Fields {
		lead, sep := s.Part(i)
		b.WriteString(lead)
		b.WriteString("<" + f + ">")
		b.WriteByte(sep)
		name = name || sep == '.'
	}
	switch {
	case s.fileRule() == TelemetryFile:
		b.WriteString("[v<N>.]log.<id>[.<ext>]")
	case name:
		b.WriteString("<rest>")
	default:
		b.WriteString("<file>")
	}
	return b.String()
}

// nameTemplate is the file-name part of Template.
func (s Schema) nameTemplate() string {
	t := s.Template()
	if i := strings.LastIndexByte(t, '/'); i >= 0 {
		return t[i+1:]
	}
	return t
}

// DirLevels is how many dimensions are directory levels (plain or
// key=value).
func (s Schema) DirLevels() int {
	n := 0
	for i := range s.Fields {
		if s.place(i) != InFileName {
			n++
		}
	}
	return n
}
