// Package afjobtest runs an afjob.Job in a Go test, without Docker or a
// worker: Map feeds documents through the job's Map (and Combine) exactly
// as a mapper task does, Reduce sorts pairs by key as the worker's sort and
// merge do and runs the job's Reduce, and Run does both, returning the
// job's result.
//
//	func TestCountByOS(t *testing.T) {
//		out, err := afjobtest.Run(job, []afjobtest.Doc{
//			{File: "saved_session/Firefox/release/x.gz", Dims: []string{"saved_session", "Firefox"},
//				ID: "a", JSON: `{"info":{"OS":"WINNT"}}`},
//			{ID: "b", JSON: `{"info":{"OS":"WINNT"}}`},
//		})
//		if err != nil || out != "WINNT\t2\n" {
//			t.Fatalf("got %q, %v", out, err)
//		}
//	}
package afjobtest

import (
	"bufio"
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/af-project/af/sdk/afjob"
	"github.com/af-project/af/sdk/contract"
	"github.com/af-project/af/sdk/records"
)

// Doc is one input document as a job receives it: the S3 key of its file,
// the file's dimension values, the document id and its JSON text. A Doc
// whose File is empty belongs to the previous Doc's file.
type Doc struct {
	File string
	Dims []string
	ID   string
	JSON string
}

// Pair is one key/value pair a mapper emits, both JSON.
type Pair struct {
	Key, Value string
}

// Map runs job's Map (and its Combine, as a mapper task does) over docs and
// returns the pairs it writes, in the order it writes them.
func Map(job afjob.Job, docs []Doc) ([]Pair, error) {
	var in bytes.Buffer
	w := records.NewWriter(&in)
	started := false
	for i, d := range docs {
		if d.File != "" || !started {
			file := d.File
			if file == "" {
				file = "afjobtest/file"
			}
			if err := w.BeginFile(file, d.Dims); err != nil {
				return nil, err
			}
			started = true
		}
		if strings.ContainsAny(d.ID, "\t\n") || strings.Contains(d.JSON, "\n") {
			return nil, fmt.Errorf("doc %d: the id may hold no tab or newline and the JSON no newline (one document is one line of its file)", i)
		}
		if _, bad, _, err := w.CopyLines(strings.NewReader(d.ID+"\t"+d.JSON+"\n"), nil); err != nil || bad != 0 {
			return nil, fmt.Errorf("doc %d: the worker would drop it as a bad line (an id starting with 0x1E?): %v", i, err)
		}
	}
	if err := w.Flush(); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if _, err := afjob.Run(job, contract.TaskMap, &in, &out); err != nil {
		return nil, err
	}
	return parsePairs(out.String())
}

func parsePairs(s string) ([]Pair, error) {
	var pairs []Pair
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "\t")
		if !ok {
			return nil, fmt.Errorf("map output line %q has no tab", sc.Text())
		}
		pairs = append(pairs, Pair{Key: k, Value: v})
	}
	return pairs, sc.Err()
}

// Reduce sorts pairs by the bytes of their keys, stably (the worker's
// order), runs job's Reduce over them and returns what it writes: the
// job's result.
func Reduce(job afjob.Job, pairs []Pair) (string, error) {
	sorted := slices.Clone(pairs)
	slices.SortStableFunc(sorted, func(a, b Pair) int { return strings.Compare(a.Key, b.Key) })
	var in strings.Builder
	for i, p := range sorted {
		if strings.ContainsAny(p.Key, "\t\n") || strings.Contains(p.Value, "\n") {
			return "", fmt.Errorf("pair %d: a key may hold no tab or newline and a value no newline (they are JSON)", i)
		}
		in.WriteString(p.Key + "\t" + p.Value + "\n")
	}
	var out bytes.Buffer
	if _, err := afjob.Run(job, contract.TaskReduce, strings.NewReader(in.String()), &out); err != nil {
		return "", err
	}
	return out.String(), nil
}

// Run maps docs, as one mapper task, and reduces the pairs: the job's
// result for these documents.
func Run(job afjob.Job, docs []Doc) (string, error) {
	pairs, err := Map(job, docs)
	if err != nil {
		return "", fmt.Errorf("map: %w", err)
	}
	out, err := Reduce(job, pairs)
	if err != nil {
		return "", fmt.Errorf("reduce: %w", err)
	}
	return out, nil
}
