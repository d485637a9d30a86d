// Package filter reads the filter document that selects input files, in
// telemetry-server's schema format:
//
//	{"version": 1, "dimensions": [{"field_name": "reason", "allowed_values": ...}, ...]}
//
// with one entry per schema dimension, in schema order. allowed_values is
// "*" (any value), a string (exactly that value), a list of strings (any
// of them, each sanitised as the storage layout sanitises directory names,
// so "saved-session" selects saved_session; a key=value directory keeps
// "-", so "2024-01-01" selects dt=2024-01-01), or {"min": ..., "max": ...}
// with either bound optional, compared as strings. A filter means the same
// whichever layout the schema gives its dimensions: it matches values, and
// the index finds them wherever the layout puts them.
package filter

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"

	"github.com/af-project/af/internal/layout"
)

// Kind is how a dimension restricts its values.
type Kind int

const (
	// Any allows every value ("*", or a range with neither bound).
	Any Kind = iota
	// Set allows the listed values (a string is a set of one).
	Set
	// Range allows values between Min and Max, inclusive, as strings.
	Range
)

func (k Kind) String() string {
	switch k {
	case Any:
		return "any"
	case Set:
		return "set"
	case Range:
		return "range"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Dimension is one dimension's restriction, in the form the index prunes
// with.
type Dimension struct {
	Field string
	Kind  Kind
	// Values is the Set, sorted and without repeats.
	Values []string
	// Min and Max bound a Range where HasMin and HasMax say so.
	Min, Max       string
	HasMin, HasMax bool
}

// Allows reports whether v passes this dimension.
func (d *Dimension) Allows(v string) bool {
	switch d.Kind {
	case Set:
		_, ok := slices.BinarySearch(d.Values, v)
		return ok
	case Range:
		return (!d.HasMin || v >= d.Min) && (!d.HasMax || v <= d.Max)
	}
	return true
}

// Filter selects files by their dimension values.
type Filter struct {
	// Name is the file the filter came from.
	Name string
	// Dims has one entry per schema dimension, in schema order.
	Dims []Dimension
}

// Match reports whether a file with these dimension values is selected.
func (f *Filter) Match(dims []string) bool {
	if len(dims) != len(f.Dims) {
		return false
	}
	for i := range f.Dims {
		if !f.Dims[i].Allows(dims[i]) {
			return false
		}
	}
	return true
}

// ParseFile reads and parses the filter at path.
func ParseFile(path string, schema layout.Schema) (*Filter, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read filter: %w", err)
	}
	return Parse(path, data, schema)
}

const wantKinds = `want "*", a string, a list of strings or {"min","max"}`

// Parse parses a filter document. name is the file name used in messages;
// errors are *layout.DocError and say which dimension is wrong and why.
func Parse(name string, data []byte, schema layout.Schema) (*Filter, error) {
	doc, err := layout.DecodeDocument(name, data)
	if err != nil {
		return nil, err
	}
	if err := layout.CheckVersion(name, doc); err != nil {
		return nil, err
	}
	fields := schema.Fields
	if len(doc.Dimensions) != len(fields) {
		return nil, &layout.DocError{File: name, Msg: fmt.Sprintf("it has %d dimension(s); the schema has %d, in this order: %s",
			len(doc.Dimensions), len(fields), schema)}
	}
	f := &Filter{Name: name, Dims: make([]Dimension, len(fields))}
	for i, d := range doc.Dimensions {
		if d.FieldName != fields[i] {
			msg := fmt.Sprintf("the schema has %q here; dimensions must follow the schema's order: %s", fields[i], schema)
			if !slices.Contains(fields, d.FieldName) {
				msg = fmt.Sprintf("the schema has no dimension %q; it has, in order: %s", d.FieldName, schema)
			}
			return nil, &layout.DocError{File: name, Dim: i + 1, Field: d.FieldName, Msg: msg}
		}
		dim, msg := parseAllowed(d.AllowedValues, func(v string) string { return schema.SanitizeValue(i, v) })
		if msg != "" {
			return nil, &layout.DocError{File: name, Dim: i + 1, Field: d.FieldName, Msg: msg}
		}
		dim.Field = d.FieldName
		f.Dims[i] = dim
	}
	return f, nil
}

// parseAllowed reads one allowed_values, sanitising listed values as the
// layout stores them; msg is non-empty when it is wrong.
func parseAllowed(raw json.RawMessage, sanitize func(string) string) (Dimension, string) {
	raw = bytes.TrimSpace(raw)
	kind := layout.KindOf(raw)
	switch kind {
	case "nothing", "null":
		return Dimension{}, "allowed_values is missing; " + wantKinds
	case "a string":
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return Dimension{}, "allowed_values: " + err.Error()
		}
		if s == "*" {
			return Dimension{Kind: Any}, ""
		}
		return Dimension{Kind: Set, Values: []string{s}}, ""
	case "a list":
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return Dimension{}, "allowed_values: " + err.Error()
		}
		if len(items) == 0 {
			return Dimension{}, `allowed_values is an empty list, which selects nothing; list some values or use "*"`
		}
		vals := make([]string, 0, len(items))
		for j, it := range items {
			var s string
			if k := layout.KindOf(it); k != "a string" {
				return Dimension{}, fmt.Sprintf("allowed_values[%d] is %s; a list holds strings", j, k)
			}
			if err := json.Unmarshal(it, &s); err != nil {
				return Dimension{}, fmt.Sprintf("allowed_values[%d]: %v", j, err)
			}
			if s == "*" {
				return Dimension{}, `allowed_values lists "*", which would select only a value named "_"; use "*" on its own (not in a list) to allow every value`
			}
			vals = append(vals, sanitize(s))
		}
		sort.Strings(vals)
		return Dimension{Kind: Set, Values: slices.Compact(vals)}, ""
	case "an object":
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil {
			return Dimension{}, "allowed_values: " + err.Error()
		}
		d := Dimension{Kind: Range}
		keys := slices.Sorted(maps.Keys(obj))
		for _, k := range keys {
			v := obj[k]
			var dst *string
			switch k {
			case "min":
				dst, d.HasMin = &d.Min, true
			case "max":
				dst, d.HasMax = &d.Max, true
			default:
				return Dimension{}, fmt.Sprintf(`allowed_values has %q; a range has only "min" and "max"`, k)
			}
			if kk := layout.KindOf(v); kk != "a string" {
				msg := fmt.Sprintf(`allowed_values "%s" is %s; bounds are strings, compared as strings`, k, kk)
				if kk == "a number" {
					msg += fmt.Sprintf(` (write "%s": "%s")`, k, bytes.TrimSpace(v))
				}
				return Dimension{}, msg
			}
			if err := json.Unmarshal(v, dst); err != nil {
				return Dimension{}, fmt.Sprintf("allowed_values %q: %v", k, err)
			}
		}
		if d.HasMin && d.HasMax && d.Min > d.Max {
			return Dimension{}, fmt.Sprintf("allowed_values min %q is greater than max %q, so nothing would match; swap them", d.Min, d.Max)
		}
		if !d.HasMin && !d.HasMax {
			return Dimension{Kind: Any}, ""
		}
		return d, ""
	default:
		return Dimension{}, fmt.Sprintf("allowed_values has unknown kind (%s); %s", kind, wantKinds)
	}
}
