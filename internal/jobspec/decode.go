package jobspec

// This file: reading analysis-tools.yml's YAML into raw with errors that
// name the line and the key and say how to fix it.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// fieldNames are analysis-tools.yml's keys, in the order the reference
// lists them.
var fieldNames = []string{"language", "mapper", "reducer", "combine", "decompress", "arguments", "max_bad_files", "max_bad_line_ratio", "script"}

// fieldWants says what each key takes, for a value of the wrong type.
var fieldWants = map[string]string{
	"language":           "python, go or binary",
	"mapper":             "a path, e.g. /job/job.py",
	"reducer":            "a path, e.g. /job/job.py",
	"decompress":         "auto or none",
	"arguments":          `a list of strings, e.g. ["--x", "1"]`,
	"max_bad_files":      "a whole number, e.g. 0",
	"max_bad_line_ratio": "a number between 0 and 1, e.g. 0.01",
	"script":             "a path, e.g. mapper.py",
}

// errEmpty is an empty document.
var errEmpty = errors.New("empty")

// yamlLine matches the "yaml: line N: " that yaml.v3 puts before a syntax
// error, so the message can say "line N: ..." once.
var yamlLine = regexp.MustCompile(`^yaml: (line \d+: )?`)

// decodeRaw reads data into r. Errors name the line, the key and the
// fix: an unknown key says which keys there are (and the nearest one); a
// value of the wrong type says what the key takes.
// The lines it returns say where each key is.
func decodeRaw(data []byte, r *raw) (map[string]int, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errEmpty
		}
		msg := err.Error()
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			msg = m[1] + "not valid YAML: " + msg[len(m[0]):]
		}
		return nil, fmt.Errorf("%s; write one `key: value` a line (keys: %s)", msg, strings.Join(fieldNames, ", "))
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == 0 || (root.Kind == yaml.ScalarNode && root.Tag == "!!null") {
		return nil, errEmpty
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: the file is not a mapping of keys to values; write one `key: value` a line (keys: %s)", root.Line, strings.Join(fieldNames, ", "))
	}
	rv := reflect.ValueOf(r).Elem()
	fields := map[string]reflect.Value{}
	for i := 0; i < rv.NumField(); i++ {
		fields[rv.Type().Field(i).Tag.Get("yaml")] = rv.Field(i)
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		key := k.Value
		f, ok := fields[key]
		if !ok || k.Kind != yaml.ScalarNode {
			hint := ""
			if near := nearest(key, fieldNames); near != "" {
				hint = fmt.Sprintf("did you mean %s? ", near)
			}
			return nil, fmt.Errorf("line %d: unknown key %q; %sremove it or use one of: %s", k.Line, key, hint, strings.Join(fieldNames, ", "))
		}
		if prev, dup := seen[key]; dup {
			return nil, fmt.Errorf("line %d: key %s is set twice (first at line %d); keep one", k.Line, key, prev)
		}
		seen[key] = k.Line
		if err := v.Decode(f.Addr().Interface()); err != nil {
			want := fieldWants[key]
			if want == "" {
				want = "another value"
			}
			return nil, fmt.Errorf("line %d: key %s: %s is not %s", v.Line, key, shownValue(v), want)
		}
	}
	return seen, nil
}

// shownValue names a YAML value in an error, briefly.
func shownValue(v *yaml.Node) string {
	switch v.Kind {
	case yaml.ScalarNode:
		s := v.Value
		if len(s) > 40 {
			s = s[:40] + "…"
		}
		return fmt.Sprintf("%q", s)
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	}
	return "the value"
}

// nearest returns the name within edit distance 2 of s (or sharing its
// letters' start), or "".
func nearest(s string, names []string) string {
	type cand struct {
		name string
		d    int
	}
	var cs []cand
	ls := strings.ToLower(s)
	for _, n := range names {
		if d := editDistance(ls, n); d <= 2 || (len(ls) >= 4 && strings.HasPrefix(n, ls)) {
			cs = append(cs, cand{n, d})
		}
	}
	if len(cs) == 0 {
		return ""
	}
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].d < cs[j].d })
	return cs[0].name
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
