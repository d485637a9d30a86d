package server

// This file: JSON decoding errors said in the request's own field names,
// so every 400 names the field (and the CLI can map it to its flag).

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"unicode"
)

// typeWant says what a Go type takes, in JSON's terms.
func typeWant(t reflect.Type) string {
	if t == nil {
		return "another value"
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		if t.PkgPath() == "time" || t.Name() == "Time" {
			return "an RFC 3339 time"
		}
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map:
		return "an object"
	case reflect.Struct:
		if t.String() == "time.Time" {
			return "an RFC 3339 time"
		}
		return "an object"
	}
	return "another value"
}

// jsonFieldPath is an UnmarshalTypeError's field path in the request's
// JSON names: the Go names of embedded structs (capitalised) dropped.
func jsonFieldPath(field string) string {
	var parts []string
	for _, p := range strings.Split(field, ".") {
		if p == "" || unicode.IsUpper(rune(p[0])) {
			continue
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ".")
}

// fieldError rewrites a JSON decoding error of the value at prefix (""
// for the whole body) to name the field and what it takes; other errors
// are returned as they are.
func fieldError(prefix string, err error) error {
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) {
		return err
	}
	path := jsonFieldPath(te.Field)
	switch {
	case prefix != "" && path != "":
		path = prefix + "." + path
	case prefix != "":
		path = prefix
	}
	got := "not a JSON " + te.Value
	if v, ok := strings.CutPrefix(te.Value, "number "); ok {
		// A number that does not fit the field (too large, or a
		// fraction where a whole number goes).
		got = v + " does not fit"
	}
	if path == "" {
		return fmt.Errorf("want %s, %s", typeWant(te.Type), got)
	}
	return fmt.Errorf("field %s: want %s, %s", path, typeWant(te.Type), got)
}
