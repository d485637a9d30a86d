package layout

import (
	"fmt"
	"slices"
	"strings"
)

// Place is where a dimension lives in a key.
type Place int

const (
	// InDirectory is a directory level: "<value>/".
	InDirectory Place = iota
	// InFileName is a dot-separated part of the file name: "<value>.".
	InFileName
	// InKeyValue is a Hive-style key=value directory:
	// "<field_name>=<value>/".
	InKeyValue
)

// The words a schema file's "in" uses for each Place.
const (
	inDirectory = "directory"
	inFileName  = "file_name"
	inKeyValue  = "key=value"
)

// String is the Place as a schema file's "in" spells it.
func (p Place) String() string {
	switch p {
	case InDirectory:
		return inDirectory
	case InFileName:
		return inFileName
	case InKeyValue:
		return inKeyValue
	}
	return fmt.Sprintf("Place(%d)", int(p))
}

// FileRule is what a file name holds after its dimensions.
type FileRule string

const (
	// TelemetryFile is telemetry-server's rest of the name:
	// "[v<N>.]log.<id>[.<ext>]" (the ".v<N>" part is optional: its
	// earlier files had none).
	TelemetryFile FileRule = "telemetry"
	// AnyFile is any file name (letters, digits and "._-=+,@~%:"), as
	// in telemetry-server's later all-directory layout or Hive-style
	// partitions.
	AnyFile FileRule = "any"
)

// place is where dimension i lives: Places[i], or the .vN layout's
// default when Places is nil.
func (s Schema) place(i int) Place {
	if s.Places != nil {
		return s.Places[i]
	}
	if i < len(s.Fields)-2 {
		return InDirectory
	}
	return InFileName
}

// Place is where dimension i (0-based) lives in a key.
func (s Schema) Place(i int) Place { return s.place(i) }

// fileRule is what the file name holds after its dimensions.
func (s Schema) fileRule() FileRule {
	if s.File != "" {
		return s.File
	}
	if s.Places == nil {
		return TelemetryFile
	}
	for i := range s.Fields {
		if s.place(i) == InFileName {
			return TelemetryFile
		}
	}
	return AnyFile
}

// FileName says what the file name holds after its dimensions.
func (s Schema) FileName() FileRule { return s.fileRule() }

// isDefault reports whether the schema has telemetry-server's .vN layout:
// every dimension a directory but the last two, which are in the file
// name, followed by the telemetry rest of the name.
func (s Schema) isDefault() bool {
	if s.Places == nil {
		return s.File == "" || s.File == TelemetryFile
	}
	n := len(s.Fields)
	if n < 2 || len(s.Places) != n || s.fileRule() != TelemetryFile {
		return false
	}
	for i, p := range s.Places {
		if (i < n-2) != (p == InDirectory) || (i >= n-2) != (p == InFileName) {
			return false
		}
	}
	return true
}

// Part says how dimension i is written in a key: lead (the key=value
// directory's "<field_name>=", otherwise ""), the value, then sep ('/'
// for a directory, '.' in the file name). The index orders and prunes by
// it.
func (s Schema) Part(i int) (lead string, sep byte) {
	switch s.place(i) {
	case InKeyValue:
		return s.Fields[i] + "=", '/'
	case InFileName:
		return "", '.'
	}
	return "", '/'
}

// Storable reports whether v can be the value of dimension i in a key
// that fits the layout: not empty, not "." or "..", and only the
// characters its place allows ([a-zA-Z0-9_.] in a directory,
// [a-zA-Z0-9_] in the file name, [a-zA-Z0-9_.-] in a key=value
// directory).
func (s Schema) Storable(i int, v string) bool {
	return valueProblem(s.place(i), v) == ""
}

// SanitizeValue turns a filter's listed value into what the layout
// stores for dimension i, as telemetry-server sanitised directory names
// ("saved-session" becomes "saved_session"); a key=value directory
// keeps "-" too, since Hive-style partitions write dates as 2024-01-01.
func (s Schema) SanitizeValue(i int, v string) string {
	if s.place(i) != InKeyValue {
		return Sanitize(v)
	}
	var b strings.Builder
	for _, r := range v {
		if r == '-' || r < 0x80 && allowed[r] {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// valueProblem says what is wrong with v as a value at place p, or "".
func valueProblem(p Place, v string) string {
	switch {
	case v == "":
		return "is empty"
	case v == "." || v == "..":
		return fmt.Sprintf("is %q", v)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		ok := allowed[c] && c != '/'
		switch p {
		case InFileName:
			ok = ok && c != '.'
		case InKeyValue:
			ok = ok || c == '-'
		}
		if !ok {
			switch p {
			case InFileName:
				return "has characters outside [a-zA-Z0-9_]"
			case InKeyValue:
				return "has characters outside [a-zA-Z0-9_.-]"
			}
			return "has characters outside [a-zA-Z0-9_.]"
		}
	}
	return ""
}

// fileNameOK reports whether name may be the rest of an AnyFile name.
func fileNameOK(name string) bool {
	if name == "" || name == "." || name == ".." {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '/' || !(allowed[c] || strings.IndexByte("-=+,@~%:", c) >= 0) {
			return false
		}
	}
	return true
}

// isKeyName reports whether a field name can be the key of a key=value
// directory: letters, digits and "_".
func isKeyName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !allowed[c] || c == '.' || c == '/' {
			return false
		}
	}
	return true
}

// Layout is the schema's places in a compact text form for the wire (a
// task's payload, an index's metadata): "" for telemetry-server's .vN
// layout, otherwise each dimension's place ("d" directory, "n" file
// name, "k" key=value) followed by ":" and the file rule, as in
// "kk:any". ParseLayout reads it back.
func (s Schema) Layout() string {
	if s.isDefault() {
		return ""
	}
	var b strings.Builder
	for i := range s.Fields {
		b.WriteByte("dnk"[s.place(i)])
	}
	b.WriteByte(':')
	b.WriteString(string(s.fileRule()))
	return b.String()
}

// ParseLayout is the schema with these fields and the places of
// Layout's text form; "" is telemetry-server's .vN layout. It checks what
// ParseSchema checks, and says what is wrong otherwise.
func ParseLayout(fields []string, text string) (Schema, error) {
	s := Schema{Fields: slices.Clone(fields)}
	if text == "" {
		if len(fields) < 2 {
			return Schema{}, fmt.Errorf("layout: the schema has %d dimension(s); telemetry-server's layout needs at least 2", len(fields))
		}
		return s, nil
	}
	places, rule, ok := strings.Cut(text, ":")
	if !ok || len(places) != len(fields) {
		return Schema{}, fmt.Errorf("layout %q: want one place per dimension (%d) and a file rule, as in \"kk:any\"", text, len(fields))
	}
	s.Places = make([]Place, len(fields))
	for i := range places {
		j := strings.IndexByte("dnk", places[i])
		if j < 0 {
			return Schema{}, fmt.Errorf("layout %q: place %q is not d, n or k", text, string(places[i]))
		}
		s.Places[i] = Place(j)
	}
	s.File = FileRule(rule)
	if msg, dim := s.check(); msg != "" {
		return Schema{}, fmt.Errorf("layout %q: dimension %d: %s", text, dim, msg)
	}
	return s, nil
}

// check says what is wrong with a schema's places and file rule, and the
// 1-based dimension it is about (0 for the file rule).
func (s Schema) check() (msg string, dim int) {
	if s.File != "" && s.File != TelemetryFile && s.File != AnyFile {
		return fmt.Sprintf(`"file_name" is %q; want "telemetry" ([v<N>.]log.<id>[.<ext>] after the file-name dimensions) or "any"`, string(s.File)), 0
	}
	if s.Places == nil {
		return "", 0
	}
	if len(s.Places) != len(s.Fields) {
		return "the layout has another number of places than dimensions", 0
	}
	inName := false
	for i, p := range s.Places {
		switch p {
		case InFileName:
			inName = true
		case InDirectory, InKeyValue:
			if inName {
				return fmt.Sprintf(`"in" is %q after a dimension in the file name; the file name comes last, so list the directory dimensions first`, p), i + 1
			}
			if p == InKeyValue && !isKeyName(s.Fields[i]) {
				return fmt.Sprintf(`a key=value directory is "<field_name>=<value>", and %q has characters outside [a-zA-Z0-9_]; rename the dimension as the directories name it`, s.Fields[i]), i + 1
			}
		default:
			return fmt.Sprintf("unknown place %d", int(p)), i + 1
		}
	}
	if len(s.Fields) == 0 {
		return "the schema has no dimensions", 0
	}
	return "", 0
}

// FromWire is the schema a task's payload or an index answer names: its
// dimension names and Layout text. No names means telemetry-server's
// schema, as from a sender that predates them.
func FromWire(fields []string, layoutText string) (Schema, error) {
	if len(fields) == 0 && layoutText == "" {
		return Telemetry(), nil
	}
	return ParseLayout(fields, layoutText)
}
