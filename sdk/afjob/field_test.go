package afjob

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestField(t *testing.T) {
	t.Parallel()
	doc := `{"ver": 2, "s": "a\"}{[", "n": {"info": 1}, "arr": [{"info":{}}, "]"], "info" : { "appName":"Firefox", "O\u0053x": 1, "OS" : "WINNT", "deep": {"a": [1, {"b": null}]}}, "info2": true}`
	tests := []struct {
		path []string
		want string
		ok   bool
	}{
		{[]string{"info", "OS"}, `"WINNT"`, true},
		{[]string{"ver"}, `2`, true},
		{[]string{"info2"}, `true`, true},
		{[]string{"s"}, `"a\"}{["`, true},
		{[]string{"info", "deep"}, `{"a": [1, {"b": null}]}`, true},
		{[]string{"info", "deep", "a"}, `[1, {"b": null}]`, true},
		{[]string{"info", "OSx"}, `1`, true}, // escaped key
		{[]string{"info", "missing"}, ``, false},
		{[]string{"ver", "x"}, ``, false}, // through a non-object
		{[]string{"nope"}, ``, false},
		{nil, doc, true},
	}
	for _, tt := range tests {
		got, ok := Field([]byte(doc), tt.path...)
		if ok != tt.ok || string(got) != tt.want {
			t.Errorf("Field(%q) = %q, %v; want %q, %v", tt.path, got, ok, tt.want, tt.ok)
		}
	}
	for _, bad := range []string{``, `[`, `{"a"`, `{"a":`, `{"a" 1}`, `{"a":"x`, `{"x":1 "a":2}`} {
		if v, ok := Field([]byte(bad), "a", "b"); ok {
			t.Errorf("Field(%q) = %q, want not found", bad, v)
		}
	}
}

func TestString(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{`"WINNT"`: "WINNT", `"a\tb"`: "a\tb", `"\u00e9"`: "é", `12`: "12", `"`: `"`} {
		if got := String([]byte(raw)); got != want {
			t.Errorf("String(%s) = %q, want %q", raw, got, want)
		}
	}
}

// hasDuplicateKeys reports whether any object in a valid document repeats a
// key, where Field (first wins) and encoding/json (last wins) differ.
func hasDuplicateKeys(doc []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(doc))
	type frame struct {
		obj  bool
		seen map[string]bool
		key  bool // next string token is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return false
		}
		if err != nil {
			return true
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		isKey := top != nil && top.obj && top.key
		if s, ok := tok.(string); ok && isKey {
			if top.seen[s] {
				return true
			}
			top.seen[s] = true
			top.key = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{obj: true, seen: map[string]bool{}, key: true})
			continue
		case json.Delim('['):
			stack = append(stack, &frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if len(stack) > 0 && stack[len(stack)-1].obj {
			stack[len(stack)-1].key = true
		}
	}
}

// FuzzField checks Field against a full encoding/json decode.
func FuzzField(f *testing.F) {
	f.Add([]byte(`{"info":{"OS":"WINNT"}}`), "info", "OS")
	f.Add([]byte(`{"a":[1,{"b":"\\\""}],"info":{"x":{},"OS":null}}`), "info", "OS")
	f.Add([]byte(`{"s":"\"","k\u0041":{"b":2}}`), "kA", "b")
	f.Add([]byte(` { "a" : 1e5 , "b":[ ] } `), "a", "")
	f.Fuzz(func(t *testing.T, doc []byte, k1, k2 string) {
		path := []string{k1}
		if k2 != "" {
			path = append(path, k2)
		}
		got, ok := Field(doc, path...)
		if ok {
			// Whatever Field returns must be a complete piece of doc.
			if !bytes.Contains(doc, got) {
				t.Fatalf("Field returned %q, not part of the document", got)
			}
		}
		if !json.Valid(doc) || hasDuplicateKeys(doc) {
			return
		}
		var v any
		if err := json.Unmarshal(doc, &v); err != nil {
			t.Fatal(err)
		}
		want, wantOK := v, true
		for _, p := range path {
			m, isObj := want.(map[string]any)
			if !isObj {
				wantOK = false
				break
			}
			if want, wantOK = m[p]; !wantOK {
				break
			}
		}
		if ok != wantOK {
			t.Fatalf("Field(%q, %q) found=%v, encoding/json found=%v", doc, path, ok, wantOK)
		}
		if ok {
			var gv any
			if err := json.Unmarshal(got, &gv); err != nil {
				t.Fatalf("Field returned invalid JSON %q: %v", got, err)
			}
			if !reflect.DeepEqual(gv, want) {
				t.Fatalf("Field(%q, %q) = %s, encoding/json has %v", doc, path, got, want)
			}
		}
	})
}

// telemetryDoc is a saved-session-like document with info near the start
// and a large body after it, like the real pings (30-70 KB).
func telemetryDoc(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"ver":2,"info":{"reason":"saved-session","OS":"WINNT","appName":"Firefox","version":"6.1"},"histograms":{`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"H%d":{"range":[1,10000],"bucket_count":50,"values":{"0":%d,"1":3,"13":1},"sum":%d,"name":"a \"quoted\" name"}`, i, i, i*7)
	}
	b.WriteString(`},"simpleMeasurements":{"uptime":12,"main":40}}`)
	return []byte(b.String())
}

func BenchmarkField(b *testing.B) {
	doc := telemetryDoc(300)
	b.SetBytes(int64(len(doc)))
	b.Run("Field", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		for b.Loop() {
			if v, ok := Field(doc, "info", "OS"); !ok || string(v) != `"WINNT"` {
				b.Fatal(string(v))
			}
		}
	})
	// Field scans the whole document when the wanted key comes last.
	b.Run("FieldLastKey", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		for b.Loop() {
			if _, ok := Field(doc, "simpleMeasurements", "main"); !ok {
				b.Fatal("not found")
			}
		}
	})
	b.Run("encoding-json-map", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		for b.Loop() {
			var m map[string]any
			if err := json.Unmarshal(doc, &m); err != nil {
				b.Fatal(err)
			}
			if m["info"].(map[string]any)["OS"] != "WINNT" {
				b.Fatal("wrong")
			}
		}
	})
}
