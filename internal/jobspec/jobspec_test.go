package jobspec

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/af-project/af/internal/taskdef"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		in         string
		wantMap    []string
		wantReduce []string
		check      func(t *testing.T, s Spec)
	}{
		{
			name:       "python",
			in:         "language: python\nmapper: /job/job.py\nreducer: /job/job.py\n",
			wantMap:    []string{"python3", "-m", "af_helper", "map", "/job/job.py"},
			wantReduce: []string{"python3", "-m", "af_helper", "reduce", "/job/job.py"},
			check: func(t *testing.T, s Spec) {
				if s.MaxBadFiles != 0 || s.MaxBadLineRatio != 1 || s.Decompress != DecompressAuto || s.Combine != CombineAuto {
					t.Errorf("defaults wrong: %+v", s)
				}
			},
		},
		{
			name:       "relative paths, reducer defaults to mapper, arguments",
			in:         "language: Python\nmapper: job.py\narguments: [\"--x\", \"1\"]\ncombine: false\n",
			wantMap:    []string{"python3", "-m", "af_helper", "map", "--combine", "false", "/job/job.py", "--x", "1"},
			wantReduce: []string{"python3", "-m", "af_helper", "reduce", "--combine", "false", "/job/job.py", "--x", "1"},
		},
		{
			name:       "combine module",
			in:         "language: python\nmapper: m.py\nreducer: r.py\ncombine: c.py\n",
			wantMap:    []string{"python3", "-m", "af_helper", "map", "--combine", "/job/c.py", "/job/m.py"},
			wantReduce: []string{"python3", "-m", "af_helper", "reduce", "--combine", "/job/c.py", "/job/r.py"},
		},
		{
			name:       "go",
			in:         "language: go\nmapper: /job/os-count\nmax_bad_files: 2\nmax_bad_line_ratio: 0.01\ndecompress: none\n",
			wantMap:    []string{"/job/os-count", "map"},
			wantReduce: []string{"/job/os-count", "reduce"},
			check: func(t *testing.T, s Spec) {
				if s.MaxBadFiles != 2 || s.MaxBadLineRatio != 0.01 || s.Decompress != DecompressNone {
					t.Errorf("thresholds/decompress not read: %+v", s)
				}
			},
		},
		{
			name:       "binary",
			in:         "language: binary\nmapper: /bin/m\nreducer: /bin/r\narguments: [a]\n",
			wantMap:    []string{"/bin/m", "a"},
			wantReduce: []string{"/bin/r", "a"},
		},
		{
			name:       "AF original form",
			in:         "language: python\nscript: \"mapper.py\"\narguments: []",
			wantMap:    []string{"python3", "-m", "af_helper", "map", "--af-original", "/home/worker/mapper.py"},
			wantReduce: []string{"python3", "-m", "af_helper", "reduce", "--af-original", "/home/worker/mapper.py"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := Parse("x.yml", []byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Command(taskdef.KindMapper); !slices.Equal(got, tt.wantMap) {
				t.Errorf("map command = %q, want %q", got, tt.wantMap)
			}
			if got := s.Command(taskdef.KindReducer); !slices.Equal(got, tt.wantReduce) {
				t.Errorf("reduce command = %q, want %q", got, tt.wantReduce)
			}
			if tt.check != nil {
				tt.check(t, s)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in, want string }{
		{"empty", "", "empty file"},
		{"not yaml", "language: [python\n", "line 1: not valid YAML"},
		{"unknown field", "language: python\nmapper: a\nmaper: b\n", `line 3: unknown key "maper"; did you mean mapper? remove it or use one of: language, mapper,`},
		{"no language", "mapper: /job/job.py\n", "key language is missing; add a line language: python"},
		{"bad language", "language: ruby\nmapper: x\n", `line 1: key language: "ruby" is not one of python, go, binary`},
		{"no mapper", "language: go\n", "key mapper is missing; add a line mapper: with the job's binary"},
		{"script and mapper", "language: python\nscript: a.py\nmapper: b.py\n", "line 2: keys script and mapper/reducer are both set"},
		{"script not python", "language: go\nscript: a\n", "needs language: python"},
		{"bad decompress", "language: go\nmapper: a\ndecompress: zip\n", `line 3: key decompress: "zip" is not auto or none`},
		{"negative bad files", "language: go\nmapper: a\nmax_bad_files: -1\n", "line 3: key max_bad_files: -1 is negative"},
		{"ratio too big", "language: go\nmapper: a\nmax_bad_line_ratio: 1.5\n", "line 3: key max_bad_line_ratio: 1.5 is not between 0 and 1"},
		{"ratio not a number", "language: go\nmapper: a\nmax_bad_line_ratio: lots\n", `line 3: key max_bad_line_ratio: "lots" is not a number between 0 and 1`},
		{"combine for go", "language: go\nmapper: a\ncombine: true\n", "combine applies to language: python only"},
		{"combine list", "language: python\nmapper: a\ncombine: [a]\n", "line 3: key combine: want auto, true, false or a module file"},
		{"set twice", "language: python\nmapper: a\nlanguage: go\n", "line 3: key language is set twice (first at line 1); keep one"},
		{"not a mapping", "- a\n", "line 1: the file is not a mapping of keys to values"},
		{"tab", "language: python\n\tmapper: a\n", "line 2: not valid YAML: found a tab character"},
		{"wrong type", "language: python\nmapper: a\narguments: x\n", `line 3: key arguments: "x" is not a list of strings`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("/etc/analysis-tools.yml", []byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "/etc/analysis-tools.yml: ") {
				t.Errorf("err = %v, want it to name the file and say %q", err, tt.want)
			}
		})
	}
}

func TestThresholds(t *testing.T) {
	t.Parallel()
	def, err := Parse("x", []byte("language: go\nmapper: a\n"))
	if err != nil {
		t.Fatal(err)
	}
	strict, err := Parse("x", []byte("language: go\nmapper: a\nmax_bad_files: 1\nmax_bad_line_ratio: 0.1\n"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		s               Spec
		badFiles        int
		badLines, lines int64
		wantFiles       bool
		wantLines       bool
	}{
		{def, 0, 0, 0, false, false},
		{def, 1, 100, 100, true, false}, // default: any corrupt file fails; bad lines never do
		{strict, 1, 10, 100, false, false},
		{strict, 2, 11, 100, true, true},
	}
	for i, tt := range tests {
		if got := tt.s.TooManyBadFiles(tt.badFiles); got != tt.wantFiles {
			t.Errorf("%d: TooManyBadFiles(%d) = %v", i, tt.badFiles, got)
		}
		if got := tt.s.TooManyBadLines(tt.badLines, tt.lines); got != tt.wantLines {
			t.Errorf("%d: TooManyBadLines(%d, %d) = %v", i, tt.badLines, tt.lines, got)
		}
	}
}

// TestRepoSpecs parses the specs shipped with the example images.
func TestRepoSpecs(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"../../analysis-tools.yml", "../../images/os-count-go/analysis-tools.yml"} {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(p, data); err != nil {
			t.Error(err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("language: python\nmapper: /job/job.py\n"))
	f.Add([]byte("language: python\nscript: m.py\narguments: [a, b]\n"))
	f.Add([]byte("language: go\nmapper: x\ncombine: c\nmax_bad_line_ratio: .5\nmax_bad_files: 3\n"))
	f.Add([]byte("language: binary\nmapper: [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse("f", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f: ") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		for _, k := range []taskdef.Kind{taskdef.KindMapper, taskdef.KindReducer} {
			cmd := s.Command(k)
			if len(cmd) == 0 || cmd[0] == "" {
				t.Fatalf("empty command for %s from %q", k, data)
			}
		}
		if s.MaxBadFiles < 0 || s.MaxBadLineRatio < 0 || s.MaxBadLineRatio > 1 {
			t.Fatalf("thresholds out of range: %+v", s)
		}
	})
}
