package layout

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Document is the JSON shape telemetry-server uses both for its schema and
// for filters: a version and an ordered list of dimensions, each with a
// field name and its allowed values.
type Document struct {
	// Version is nil when the document has no "version".
	Version    *int
	Dimensions []DocDimension
	// FileName is a schema's "file_name": what the file name holds after
	// its dimensions; nil when absent.
	FileName *string
}

// DocDimension is one entry of a Document's "dimensions".
type DocDimension struct {
	FieldName string `json:"field_name"`
	// AllowedValues is kept raw: the schema ignores it and a filter gives
	// each kind its own meaning.
	AllowedValues json.RawMessage `json:"allowed_values"`
	// In is a schema's "in": where the dimension lives in a key
	// ("directory", "file_name" or "key=value"); nil when absent.
	In *string `json:"in"`
}

// DocError says what is wrong with a schema or filter document and where:
// the file, the line and column for JSON errors, the dimension for the rest.
type DocError struct {
	// File is the name the user knows the document by.
	File string
	// Line and Col (1-based) locate JSON errors; zero otherwise.
	Line, Col int
	// Dim is the 1-based dimension the problem is in; zero when it is not
	// about one dimension.
	Dim int
	// Field is that dimension's field_name, if it has one.
	Field string
	// Msg says what is wrong and, where possible, what would be right.
	Msg string
}

func (e *DocError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Col)
	}
	b.WriteString(": ")
	if e.Dim > 0 {
		fmt.Fprintf(&b, "dimension %d", e.Dim)
		if e.Field != "" {
			fmt.Fprintf(&b, " %q", e.Field)
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// DecodeDocument parses a schema or filter document. name is the file name
// used in error messages. It checks the JSON shape only; what the version
// and the dimensions must be is up to the caller.
func DecodeDocument(name string, data []byte) (Document, error) {
	var raw struct {
		Version    *int           `json:"version"`
		Dimensions []DocDimension `json:"dimensions"`
		FileName   *string        `json:"file_name"`
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return Document{}, &DocError{File: name, Msg: `the file is empty; want a JSON object {"version": 1, "dimensions": [...]}`}
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return Document{}, jsonError(name, data, err)
	}
	if raw.Dimensions == nil {
		return Document{}, &DocError{File: name, Msg: `"dimensions" is missing; want a list of {"field_name": ..., "allowed_values": ...}`}
	}
	for i, d := range raw.Dimensions {
		if d.FieldName == "" {
			return Document{}, &DocError{File: name, Dim: i + 1, Msg: `"field_name" is missing or empty`}
		}
	}
	return Document{Version: raw.Version, Dimensions: raw.Dimensions, FileName: raw.FileName}, nil
}

// jsonError turns an encoding/json error into a DocError with the line and
// column where the decoder stopped.
func jsonError(name string, data []byte, err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		off := se.Offset
		msg := "not valid JSON: " + se.Error()
		if se.Error() == "unexpected end of JSON input" {
			off = int64(len(data))
			msg = "not valid JSON: the document ends too early (an unclosed bracket or string?)"
		} else if off > 0 {
			off-- // the offset is just past the offending byte
		}
		line, col := lineCol(data, off)
		return &DocError{File: name, Line: line, Col: col, Msg: msg}
	case errors.As(err, &te):
		line, col := lineCol(data, te.Offset)
		what := "the document"
		switch te.Field {
		case "":
		case "version":
			what = `"version"`
		case "dimensions":
			what = `an entry of "dimensions"`
			if te.Type != nil && te.Type.Kind().String() == "slice" {
				what = `"dimensions"`
			}
		default:
			what = strconv.Quote(te.Field[strings.LastIndexByte(te.Field, '.')+1:])
		}
		want := map[string]string{
			`the document`:             `a JSON object {"version": 1, "dimensions": [...]}`,
			`"version"`:                `a whole number`,
			`"dimensions"`:             `a list`,
			`an entry of "dimensions"`: `an object {"field_name": ..., "allowed_values": ...}`,
			`"field_name"`:             `a string`,
			`"in"`:                     `"directory", "file_name" or "key=value"`,
			`"file_name"`:              `"telemetry" or "any"`,
		}[what]
		if want == "" {
			want = "another type"
		}
		return &DocError{File: name, Line: line, Col: col, Msg: fmt.Sprintf("%s is %s; want %s", what, article(te.Value), want)}
	default:
		return &DocError{File: name, Msg: "not valid JSON: " + err.Error()}
	}
}

// article turns encoding/json's value description ("number 1.5", "array")
// into words for a message.
func article(v string) string {
	kind, rest, _ := strings.Cut(v, " ")
	switch kind {
	case "array":
		kind = "a list"
	case "object":
		kind = "an object"
	case "bool":
		kind = "true/false"
	case "null":
	default:
		kind = "a " + kind
	}
	if rest != "" {
		return kind + " (" + rest + ")"
	}
	return kind
}

// lineCol returns the 1-based line and column of byte offset off.
func lineCol(data []byte, off int64) (int, int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	if off < 0 {
		off = 0
	}
	before := data[:off]
	line := bytes.Count(before, []byte{'\n'}) + 1
	col := int(off) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}

// KindOf names the JSON kind of a raw value for messages: "a string",
// "a number", "a list", "an object", "true/false", "null" or "nothing".
func KindOf(raw json.RawMessage) string {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 {
		return "nothing"
	}
	switch t[0] {
	case '"':
		return "a string"
	case '[':
		return "a list"
	case '{':
		return "an object"
	case 't', 'f':
		return "true/false"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}
