package layout

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Sanitize replaces every character outside [a-zA-Z0-9_/.] with "_", as
// telemetry-server did when it turned dimension values into key parts.
func Sanitize(s string) string {
	if IsSanitized(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if r < utf8.RuneSelf && allowed[r] {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// IsSanitized reports whether s has only characters Sanitize keeps.
func IsSanitized(s string) bool {
	for i := 0; i < len(s); i++ {
		if !allowed[s[i]] {
			return false
		}
	}
	return true
}

var allowed = func() (a [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		a[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		a[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		a[c] = true
	}
	a['_'], a['/'], a['.'] = true, true, true
	return a
}()

// NormalizePrefix makes a non-empty prefix end in "/": the layout lives
// under the prefix as under a directory.
func NormalizePrefix(prefix string) string {
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		return prefix + "/"
	}
	return prefix
}

// KeyError says why a key does not fit the layout.
type KeyError struct {
	Key    string
	Reason string
}

func (e *KeyError) Error() string {
	return fmt.Sprintf("key %q does not fit the layout: %s", e.Key, e.Reason)
}

// Parse returns the dimension values of key, which lives under prefix
// (normalised as by NormalizePrefix), or a *KeyError when it does not fit
// the layout.
func (s Schema) Parse(prefix, key string) ([]string, error) {
	prefix = NormalizePrefix(prefix)
	if !strings.HasPrefix(key, prefix) {
		return nil, &KeyError{Key: key, Reason: fmt.Sprintf("it is not under the prefix %q", prefix)}
	}
	dims, err := s.ParseRel(key[len(prefix):], nil)
	if ke, ok := err.(*KeyError); ok {
		ke.Key = key
	}
	return dims, err
}

// ParseRel is Parse for a key relative to the prefix. It appends the
// values to dims (which may be nil) so a caller can reuse a slice.
func (s Schema) ParseRel(rel string, dims []string) ([]string, error) {
	bad := func(format string, args ...any) error {
		return &KeyError{Key: rel, Reason: fmt.Sprintf(format, args...)}
	}
	n := len(s.Fields)
	if n < 2 {
		return nil, bad("the schema has fewer than 2 dimensions")
	}
	dirs := n - 2
	rest := rel
	for i := range dirs {
		j := strings.IndexByte(rest, '/')
		if j < 0 {
			return nil, bad("it has %d directory level(s); the layout has %d (%s/<file>)", i, dirs, strings.Join(s.Fields[:dirs], "/"))
		}
		v := rest[:j]
		if v == "" {
			return nil, bad("%s is empty", s.Fields[i])
		}
		if !IsSanitized(v) {
			return nil, bad("%s %q has characters outside [a-zA-Z0-9_.]", s.Fields[i], v)
		}
		dims = append(dims, v)
		rest = rest[j+1:]
	}
	if strings.IndexByte(rest, '/') >= 0 {
		return nil, bad("it has more than %d directory level(s) (%s/<file>)", dirs, strings.Join(s.Fields[:dirs], "/"))
	}
	// The file name: <d1>.<d2>.v<N>.log.<uuid>[.<ext>]
	name := rest
	var parts [7]string
	np := 0
	for np < len(parts) {
		j := strings.IndexByte(rest, '.')
		if j < 0 {
			parts[np] = rest
			np++
			rest = ""
			break
		}
		parts[np] = rest[:j]
		np++
		rest = rest[j+1:]
	}
	if rest != "" || np < 5 || np > 6 {
		return nil, bad("file name %q is not <%s>.<%s>.v<N>.log.<uuid>[.<ext>]", name, s.Fields[n-2], s.Fields[n-1])
	}
	for i, v := range parts[:2] {
		if v == "" || !IsSanitized(v) {
			return nil, bad("%s %q in the file name is empty or has characters outside [a-zA-Z0-9_]", s.Fields[dirs+i], v)
		}
	}
	if !isVersion(parts[2]) || parts[3] != "log" || !isID(parts[4]) {
		return nil, bad("file name %q is not <%s>.<%s>.v<N>.log.<uuid>[.<ext>]", name, s.Fields[n-2], s.Fields[n-1])
	}
	if np == 6 && !knownExt(parts[5]) {
		return nil, bad("extension %q is not one of gz, xz, lzma, zst, bz2 (or none)", parts[5])
	}
	return append(dims, parts[0], parts[1]), nil
}

func isVersion(s string) bool {
	if len(s) < 2 || s[0] != 'v' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// isID accepts the uuid part: letters, digits, "_" and "-" (uuids are
// written with or without dashes).
func isID(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !allowed[c] && c != '-' || c == '/' || c == '.' {
			return false
		}
	}
	return true
}

// Key builds the key of a file under prefix with the given dimension
// values (sanitised), format version, uuid and extension ("" or one of the
// Compression extensions, without the dot). Tests and data generators use
// it; the dims must match the schema's length.
func Key(prefix string, dims []string, version int, uuid, ext string) string {
	var b strings.Builder
	b.WriteString(NormalizePrefix(prefix))
	for i, d := range dims {
		b.WriteString(Sanitize(d))
		switch {
		case i < len(dims)-2:
			b.WriteByte('/')
		default:
			b.WriteByte('.')
		}
	}
	b.WriteString("v")
	b.WriteString(strconv.Itoa(version))
	b.WriteString(".log.")
	b.WriteString(uuid)
	if ext != "" {
		b.WriteByte('.')
		b.WriteString(ext)
	}
	return b.String()
}
