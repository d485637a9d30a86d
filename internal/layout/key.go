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
	return s.parse(rel, dims, nil)
}

// Ends is ParseRel that also appends to ends, for each dimension, the
// offset in rel just past the separator that follows its value: rel[:end]
// is the key prefix of every file with the same values up to that
// dimension (a key=value directory's includes its "key=").
func (s Schema) Ends(rel string, dims []string, ends []int) ([]string, []int, error) {
	ends = ends[:0]
	dims, err := s.parse(rel, dims, &ends)
	return dims, ends, err
}

// parse reads the dimension values of rel, appending them to dims and,
// when ends is not nil, their ends to *ends.
func (s Schema) parse(rel string, dims []string, ends *[]int) ([]string, error) {
	bad := func(format string, args ...any) error {
		return &KeyError{Key: rel, Reason: fmt.Sprintf(format, args...)}
	}
	n := len(s.Fields)
	if n == 0 || s.Places == nil && n < 2 {
		return nil, bad("the schema has too few dimensions")
	}
	if s.Places != nil && len(s.Places) != n {
		return nil, bad("the schema has %d places for %d dimensions", len(s.Places), n)
	}
	rest := rel
	at := 0
	name := -1 // the first file-name dimension
	for i := range n {
		p := s.place(i)
		if p == InFileName {
			name = i
			break
		}
		j := strings.IndexByte(rest, '/')
		if j < 0 {
			return nil, bad("it has %d directory level(s); the layout has %d (%s)", i, s.DirLevels(), s.Template())
		}
		seg := rest[:j]
		v := seg
		if p == InKeyValue {
			key, val, ok := strings.Cut(seg, "=")
			if !ok || key != s.Fields[i] {
				if k := s.kvIndex(key); ok && k >= 0 && k < i {
					return nil, bad("directory %q repeats %s=, which is dimension %d (%s)", seg, key, k+1, s.Template())
				}
				return nil, bad("directory %q is not %s=<value> (%s)", seg, s.Fields[i], s.Template())
			}
			v = val
		}
		if msg := valueProblem(p, v); msg != "" {
			return nil, bad("%s %q %s", s.Fields[i], v, msg)
		}
		dims = append(dims, v)
		at += j + 1
		if ends != nil {
			*ends = append(*ends, at)
		}
		rest = rest[j+1:]
	}
	if j := strings.IndexByte(rest, '/'); j >= 0 {
		if key, _, ok := strings.Cut(rest[:j], "="); ok {
			if k := s.kvIndex(key); k >= 0 {
				return nil, bad("directory %q repeats %s=, which is dimension %d (%s)", rest[:j], key, k+1, s.Template())
			}
		}
		return nil, bad("it has more than %d directory level(s) (%s)", s.DirLevels(), s.Template())
	}
	file := rest
	if name < 0 {
		if !fileNameOK(file) {
			return nil, bad("file name %q is empty, %q or \"..\", or has characters outside [a-zA-Z0-9_.-=+,@~%%:] (%s)", file, ".", s.Template())
		}
		return dims, nil
	}
	for i := name; i < n; i++ {
		j := strings.IndexByte(rest, '.')
		if j < 0 {
			return nil, bad("file name %q is not %s", file, s.nameTemplate())
		}
		v := rest[:j]
		if valueProblem(InFileName, v) != "" {
			return nil, bad("%s %q in the file name is empty or has characters outside [a-zA-Z0-9_]", s.Fields[i], v)
		}
		dims = append(dims, v)
		at += j + 1
		if ends != nil {
			*ends = append(*ends, at)
		}
		rest = rest[j+1:]
	}
	if s.fileRule() == AnyFile {
		if !fileNameOK(rest) {
			return nil, bad("file name %q is not %s", file, s.nameTemplate())
		}
		return dims, nil
	}
	// The telemetry rest: [v<N>.]log.<id>[.<ext>]
	var parts [4]string
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
	ps := parts[:np]
	if np > 0 && isVersion(ps[0]) {
		ps = ps[1:]
	}
	if rest != "" || len(ps) < 2 || len(ps) > 3 || ps[0] != "log" || !isID(ps[1]) {
		return nil, bad("file name %q is not %s", file, s.nameTemplate())
	}
	if len(ps) == 3 && !knownExt(ps[2]) {
		return nil, bad("extension %q is not one of gz, xz, lzma, zst, bz2 (or none)", ps[2])
	}
	return dims, nil
}

// kvIndex is the dimension whose key=value directory has this key, or -1.
func (s Schema) kvIndex(key string) int {
	for i, f := range s.Fields {
		if f == key && s.place(i) == InKeyValue {
			return i
		}
	}
	return -1
}

// SplitStored appends the dimension values of rel, a key the layout is
// known to fit (one the index stored), to dims, without checking it
// again.
func (s Schema) SplitStored(rel string, dims []string) []string {
	for i := range s.Fields {
		lead, sep := s.Part(i)
		j := strings.IndexByte(rel, sep)
		if j < len(lead) {
			return dims
		}
		dims = append(dims, rel[len(lead):j])
		rel = rel[j+1:]
	}
	return dims
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

// KeyFor builds the key of a file under prefix in the schema's layout:
// each value (sanitised as SanitizeValue does) in its place, then file,
// the rest of the file name (after the file-name dimensions, or the
// whole name when there are none). Tests and data generators use it.
func (s Schema) KeyFor(prefix string, dims []string, file string) string {
	var b strings.Builder
	b.WriteString(NormalizePrefix(prefix))
	for i, d := range dims {
		lead, sep := s.Part(i)
		b.WriteString(lead)
		b.WriteString(s.SanitizeValue(i, d))
		b.WriteByte(sep)
	}
	b.WriteString(file)
	return b.String()
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
