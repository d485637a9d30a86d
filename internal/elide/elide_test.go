package elide

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// syntaxError is what a job with a syntax error prints: af_helper's
// frames first, the user's file and line at the bottom.
var syntaxError = "af_helper: importing /job/job.py failed:\nTraceback (most recent call last):\n" +
	strings.Repeat("  File \"/usr/lib/python3/dist-packages/af_helper.py\", line 120, in load_module\n    spec.loader.exec_module(mod)\n", 8) +
	"  File \"/job/job.py\", line 7\n    def map(key dims):\n            ^^^^\nSyntaxError: invalid syntax\n"

func TestCutsKeepTheUsersLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cut  func(string) string
		max  int
	}{
		{"Middle", func(s string) string { return Middle(s, 300) }, 300},
		{"Tail", func(s string) string { return Tail(s, 200) }, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := tc.cut(syntaxError)
			for _, want := range []string{`File "/job/job.py", line 7`, "SyntaxError: invalid syntax", "bytes cut …]"} {
				if !strings.Contains(got, want) {
					t.Errorf("cut lost %q:\n%s", want, got)
				}
			}
			if len(got) > tc.max+40 {
				t.Errorf("cut is %d bytes, want about %d", len(got), tc.max)
			}
		})
	}
}

func TestCuts(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 100) + " the end"
	for _, tc := range []struct {
		name, got, wantPrefix, wantSuffix string
	}{
		{"short Middle unchanged", Middle("abc", 10), "abc", "abc"},
		{"short Tail unchanged", Tail("abc", 10), "abc", "abc"},
		{"short Line squeezes space", Line("a\n  b", 10), "a b", "a b"},
		{"Line keeps head and tail", Line("the job exited with code 1: SyntaxError: invalid syntax (/job/job.py line 3)", 60), "the job exited", "(/job/job.py line 3)"},
		{"Middle counts what it cut", Middle(strings.Repeat("x", 100), 30), "xxxxxxxxxx\n[… 70 bytes cut …]\n", "xxxx"},
		{"Tail cuts on a rune start", Tail(long, 11), "[… ", "the end"},
		{"Line cuts on rune starts", Line(long, 20), "é", "the end"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if !strings.HasPrefix(tc.got, tc.wantPrefix) || !strings.HasSuffix(tc.got, tc.wantSuffix) || !utf8.ValidString(tc.got) {
				t.Fatalf("got %q, want %q … %q (valid UTF-8)", tc.got, tc.wantPrefix, tc.wantSuffix)
			}
		})
	}
}
