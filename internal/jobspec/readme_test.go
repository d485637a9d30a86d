package jobspec

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// TestReadmeDocumentsEveryField: images/README.md, the job author's
// reference, has a row for every field analysis-tools.yml accepts, and no
// row for a field it does not.
func TestReadmeDocumentsEveryField(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../images/README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(data), "\n## analysis-tools.yml\n")
	if !ok {
		t.Fatal(`images/README.md has no "## analysis-tools.yml" section`)
	}
	table, _, _ = strings.Cut(table, "\n## ")
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\|").FindAllStringSubmatch(table, -1) {
		documented[m[1]] = true
	}
	accepted := map[string]bool{}
	rt := reflect.TypeOf(raw{})
	for i := range rt.NumField() {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("yaml"), ",")
		accepted[name] = true
		if !documented[name] {
			t.Errorf("analysis-tools.yml field %q has no row in images/README.md's table", name)
		}
	}
	for name := range documented {
		if !accepted[name] {
			t.Errorf("images/README.md documents field %q, which analysis-tools.yml does not accept", name)
		}
	}
	// The defaults the table states are Parse's.
	s, err := Parse("t.yml", []byte("language: python\nmapper: job.py\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Reducer != "/job/job.py" || s.Combine != CombineAuto || s.Decompress != DecompressAuto || len(s.Arguments) != 0 || s.MaxBadFiles != 0 || s.MaxBadLineRatio != 1 {
		t.Errorf("defaults %+v differ from the README's", s)
	}
	for _, row := range []string{"| `reducer` | a path in the image | the mapper |", "| `combine` | `auto`, `true`, `false` or a module file | `auto` |",
		"| `decompress` | `auto` or `none` (`false`, `no`) | `auto` |", "| `max_bad_files` | a whole number ≥ 0 | `0` |", "| `max_bad_line_ratio` | a number from 0 to 1 | `1.0` |"} {
		if !strings.Contains(table, row) {
			t.Errorf("README's table lacks the row beginning %s", row)
		}
	}
}
