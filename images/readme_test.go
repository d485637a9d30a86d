package images_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/af-project/af/internal/layout"
	"github.com/af-project/af/internal/records"
)

// TestReadmeSampleDocument: the sample in images/README.md ("What a job
// receives") is what the worker's framing makes of the real file, and what
// a Python job in af/python is called with.
func TestReadmeSampleDocument(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	const key = "saved_session/Firefox/nightly/22.0a1/20130226031002.20131011.v2.log.e28a4032eb744f089a1828ac7399e5d8.lzma"
	schema, err := layout.LoadSchema("../filters/telemetry_schema.json")
	if err != nil {
		t.Fatal(err)
	}
	dims, err := schema.Parse("", key)
	if err != nil {
		t.Fatal(err)
	}
	var f inputFile
	for _, rf := range realFiles(t) {
		if rf.key == key {
			f = rf
		}
	}
	if f.key == "" {
		t.Fatal("the README's sample file is not among the test pings")
	}
	f.dims = dims
	framed := frame(t, []inputFile{f})
	lines := strings.SplitAfter(string(framed), "\n")
	if len(lines) != 3 || lines[2] != "" {
		t.Fatalf("framed sample has %d lines, want a marker and one document", len(lines)-1)
	}
	_, sample, _ := strings.Cut(string(readme), "the job's input\nis these two lines, the second cut short here:\n\n```\n")
	sample, _, _ = strings.Cut(sample, "```")
	readmeLines := strings.Split(strings.TrimSuffix(sample, "\n"), "\n")
	if len(readmeLines) != 2 {
		t.Fatalf("README's sample has %d lines, want 2:\n%s", len(readmeLines), sample)
	}
	marker := strings.Replace(readmeLines[0], `\x1e`, "\x1e", 1) + "\n"
	if marker != lines[0] {
		t.Errorf("README's marker line\n%q\nis not the worker's\n%q", marker, lines[0])
	}
	head, _, _ := strings.Cut(strings.Replace(readmeLines[1], `\t`, "\t", 1), " …")
	if !strings.HasPrefix(lines[1], head) {
		t.Errorf("README's data line begins %q; the file's line begins %.200q", head, lines[1])
	}
	var hdr records.FileHeader
	if err := json.Unmarshal([]byte(lines[0][1:]), &hdr); err != nil {
		t.Fatal(err)
	}
	wantDims, _ := json.Marshal(hdr.Dims)
	if !bytes.Contains(readme, []byte("`dims`: `"+strings.ReplaceAll(string(wantDims), `","`, `", "`)+"`")) {
		t.Errorf("README's table does not show dims %s", wantDims)
	}

	// What the Python job is called with.
	requireImage(t, "af/python")
	jobDir := t.TempDir()
	os.Chmod(jobDir, 0o755)
	job := `
def map(key, dims, value, context):
    context.write("call", [key, dims, value.endswith("\n"), value.startswith('{"info": {"adapterDriverVersion"'), context.file])
def reduce(key, values, context):
    pass
`
	if err := os.WriteFile(filepath.Join(jobDir, "job.py"), []byte(job), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := scratchDir(t)
	stderr, err := run(t, runOpts{img: "af/python", cmd: []string{"python3", "-m", "af_helper", "map", "/job/job.py"},
		scratch: dir, input: framed, mounts: []string{jobDir + ":/job:ro"}})
	if err != nil {
		t.Fatalf("map: %v\n%s", err, stderr)
	}
	out, err := os.ReadFile(filepath.Join(dir, "output"))
	if err != nil {
		t.Fatal(err)
	}
	want := `"call"` + "\t" + `["024b73d7-2e26-4545-8077-1cc930904eae",` + string(wantDims) + `,true,true,"` + key + `"]` + "\n"
	if string(out) != want {
		t.Errorf("the Python job was called with\n%s\nwant\n%s", out, want)
	}
}
