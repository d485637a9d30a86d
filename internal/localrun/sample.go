package localrun

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/af-project/af/internal/records"
	"github.com/af-project/af/internal/taskdef"
	"github.com/af-project/af/internal/worker"
)

// SampleOptions say how many documents to show and how.
type SampleOptions struct {
	// Docs is how many documents to print (default 5). They come from up
	// to Docs files spread over the selection (Selection.Sample), shared
	// out evenly over them, the first ones of each file.
	Docs int
	// JSON prints one JSON object a line ({"file", "dims", "key",
	// "value"}) instead of the readable form.
	JSON bool
	Out  io.Writer
	// Logf gets the feeder's notes (bad files and lines).
	Logf func(format string, args ...any)
}

// sampleDoc is one document of `af sample --json`.
type sampleDoc struct {
	File  string          `json:"file"`
	Dims  []string        `json:"dims"`
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"`
}

// PrintSample prints documents of the selection as a mapper receives
// them: fed through the worker's own feeder (decompressed, framed, bad
// lines dropped) and decoded as the helpers decode the stream, so key is
// map()'s key (the document id), dims its dims and value its value. It
// returns how many it printed.
func PrintSample(ctx context.Context, sel Selection, o SampleOptions) (int, error) {
	if o.Docs <= 0 {
		o.Docs = 5
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	files := sel.Sample(o.Docs).Files
	if len(files) == 0 {
		return 0, fmt.Errorf("%w in %s", ErrNoFiles, sel.Where)
	}
	// The documents are shared out over the files: the first Docs %
	// len(files) of them give one more.
	quota := func(nFile int) int {
		q := o.Docs / len(files)
		if nFile <= o.Docs%len(files) {
			q++
		}
		return q
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	fed := make(chan error, 1)
	go func() {
		err := worker.Feed(ctx, taskdef.Payload{Bucket: sel.Bucket, Prefix: sel.Prefix, Schema: sel.Schema.Fields, Layout: sel.Schema.Layout(), Inputs: files}, sel.Objects, pw, o.Logf)
		pw.CloseWithError(err)
		fed <- err
	}()
	rd := records.NewReader(pr)
	var (
		file    *records.FileHeader
		nFile   int
		inFile  int
		printed int
		err     error
	)
	for printed < o.Docs {
		var r records.Record
		r, err = rd.Next()
		if err != nil {
			break
		}
		if r.File != nil {
			h := *r.File
			file, inFile = &h, 0
			nFile++
			continue
		}
		if file == nil || inFile >= quota(nFile) {
			continue
		}
		inFile++
		printed++
		if o.JSON {
			err = printJSON(o.Out, file, r)
		} else {
			err = printReadable(o.Out, sel, file, nFile, len(files), inFile, r)
		}
		if err != nil {
			break
		}
	}
	cancel()
	_ = pr.CloseWithError(errors.New("sample done"))
	ferr := <-fed
	switch {
	case err != nil && !errors.Is(err, io.EOF):
		if ferr != nil && ctx.Err() == nil {
			return printed, ferr
		}
		return printed, err
	case ferr != nil && printed < o.Docs && !errors.Is(ferr, context.Canceled):
		return printed, ferr
	}
	return printed, nil
}

func printJSON(w io.Writer, file *records.FileHeader, r records.Record) error {
	v := json.RawMessage(bytes.Clone(r.JSON))
	if !json.Valid(v) {
		// The job gets the line as it is; --json must stay JSON.
		s, _ := json.Marshal(string(r.JSON))
		v = s
	}
	dims := file.Dims
	if dims == nil {
		dims = []string{}
	}
	b, err := json.Marshal(sampleDoc{File: file.Key, Dims: dims, Key: string(r.ID), Value: v})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func printReadable(w io.Writer, sel Selection, file *records.FileHeader, nFile, files, inFile int, r records.Record) error {
	var b strings.Builder
	if inFile == 1 {
		fmt.Fprintf(&b, "== file %d of %d: %s\n", nFile, files, file.Key)
		var named []string
		for i, d := range file.Dims {
			name := fmt.Sprintf("dims[%d]", i)
			if i < len(sel.Schema.Fields) {
				name = fmt.Sprintf("dims[%d] %s", i, sel.Schema.Fields[i])
			}
			named = append(named, fmt.Sprintf("   %-28s %q", name, d))
		}
		if len(named) == 0 {
			named = append(named, "   (no dims: the key is outside the layout)")
		}
		fmt.Fprintf(&b, "%s\n", strings.Join(named, "\n"))
	}
	fmt.Fprintf(&b, "key:   %s\n", sanitize(string(r.ID)))
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, r.JSON, "       ", "  "); err == nil {
		fmt.Fprintf(&b, "value: %s\n\n", pretty.String())
	} else {
		fmt.Fprintf(&b, "value: %s\n       (not valid JSON: %v)\n\n", sanitize(string(r.JSON)), err)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// sanitize escapes control characters for the terminal.
func sanitize(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return s
	}
	q := fmt.Sprintf("%q", s)
	return q[1 : len(q)-1]
}
