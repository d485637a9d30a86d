package afjob

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// Field returns the raw JSON of the value at path in doc (object keys, from
// the outside in) without decoding the rest of the document: it skips
// everything else at scanning speed, which is what makes a Go job run at
// decompression speed where a full decode into maps manages a few tens of
// MB/s. Field("{"info":{"OS":"WINNT"}}", "info", "OS") is `"WINNT"`.
//
// It reports false when the path is absent, crosses a non-object, or the
// document is malformed before the value is found. When an object repeats a
// key, the first occurrence wins (encoding/json takes the last). Keys are
// compared after unescaping, so "O\u0053" matches "OS".
func Field(doc []byte, path ...string) ([]byte, bool) {
	i := 0
	for depth, name := range path {
		i = skipWS(doc, i)
		if i >= len(doc) || doc[i] != '{' {
			return nil, false
		}
		i++
		found := false
		for !found {
			i = skipWS(doc, i)
			if i >= len(doc) {
				return nil, false
			}
			if doc[i] == '}' {
				return nil, false
			}
			if doc[i] != '"' {
				return nil, false
			}
			end, esc := scanString(doc, i)
			if end < 0 {
				return nil, false
			}
			match := keyEquals(doc[i:end], esc, name)
			i = skipWS(doc, end)
			if i >= len(doc) || doc[i] != ':' {
				return nil, false
			}
			i = skipWS(doc, i+1)
			if match {
				found = true
				break
			}
			if i = skipValue(doc, i); i < 0 {
				return nil, false
			}
			i = skipWS(doc, i)
			if i < len(doc) && doc[i] == ',' {
				i++
			} else if i >= len(doc) || doc[i] != '}' {
				return nil, false
			}
		}
		if depth == len(path)-1 {
			end := skipValue(doc, i)
			if end < 0 {
				return nil, false
			}
			return doc[i:end], true
		}
	}
	// An empty path is the whole document.
	i = skipWS(doc, 0)
	end := skipValue(doc, i)
	if end < 0 {
		return nil, false
	}
	return doc[i:end], true
}

func keyEquals(quoted []byte, escaped bool, name string) bool {
	if !escaped {
		return len(quoted)-2 == len(name) && string(quoted[1:len(quoted)-1]) == name
	}
	var s string
	if err := json.Unmarshal(quoted, &s); err != nil {
		return false
	}
	return s == name
}

func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanString returns the index just past the string starting at b[i] == '"'
// and whether it contains escapes, or -1.
func scanString(b []byte, i int) (int, bool) {
	esc := false
	j := i + 1
	for {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return -1, esc
		}
		q := j + k
		// Count the backslashes before the quote: an odd number escapes it.
		n := 0
		for p := q - 1; p > i && b[p] == '\\'; p-- {
			n++
		}
		if bytes.IndexByte(b[j:q], '\\') >= 0 {
			esc = true
		}
		if n%2 == 0 {
			return q + 1, esc
		}
		j = q + 1
	}
}

// skipValue returns the index just past the JSON value starting at b[i], or
// -1 when it is malformed or cut off.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch c := b[i]; {
	case c == '"':
		end, _ := scanString(b, i)
		return end
	case c == '{' || c == '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				end, _ := scanString(b, i)
				if end < 0 {
					return -1
				}
				i = end
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return -1
	default:
		j := i
		for j < len(b) {
			switch b[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				goto done
			}
			j++
		}
	done:
		if j == i {
			return -1
		}
		return j
	}
}

// String returns the string a raw JSON string value holds (from Field or a
// reducer's key), or the raw text itself when it is not a JSON string.
func String(raw []byte) string {
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		if bytes.IndexByte(raw, '\\') < 0 {
			return string(raw[1 : len(raw)-1])
		}
		var s string
		if err := json.Unmarshal(raw, &s); err == nil {
			return s
		}
	}
	return string(raw)
}

// Int parses a raw JSON number (a reducer's value, or a Field) as an int64.
func Int(raw []byte) (int64, error) {
	return strconv.ParseInt(string(bytes.TrimSpace(raw)), 10, 64)
}
