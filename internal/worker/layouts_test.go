package worker

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/af-project/af/internal/layout"
	"github.com/af-project/af/internal/miniotest"
	"github.com/af-project/af/internal/records"
	"github.com/af-project/af/internal/taskdef"
)

// TestFeederDimsInEveryLayout: the file header a job receives before each
// file's documents carries its key and its dimensions as the payload's
// layout places them (the value of a key=value directory without its
// "key="), and a key outside the layout gets no dims.
func TestFeederDimsInEveryLayout(t *testing.T) {
	t.Parallel()
	mc := miniotest.Start(t, "data")
	gz := func(s string) []byte {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		_, _ = io.WriteString(w, s)
		_ = w.Close()
		return b.Bytes()
	}
	doc := "0ab8723b6fb3455bb34b04d97482fda2\t{\"info\":{\"OS\":\"Linux\"}}\n"
	for _, tc := range []struct {
		name     string
		fields   []string
		layout   string // the payload's
		prefix   string
		key      string
		body     []byte
		wantDims []string
	}{
		{".vN", nil, "", "", "saved_session/Firefox/nightly/22.0a1/20130226031002.20131011.v2.log.e28a4032eb744f089a1828ac7399e5d8.gz", gz(doc),
			[]string{"saved_session", "Firefox", "nightly", "22.0a1", "20130226031002", "20131011"}},
		{"without .vN", layout.Telemetry().Fields, "", "processed", "processed/idle_daily/Firefox/nightly/26.0a1/20130826074752.20130903.log.e0c7ff434e474c8aa745763eed408b9c.gz", gz(doc),
			[]string{"idle_daily", "Firefox", "nightly", "26.0a1", "20130826074752", "20130903"}},
		{"telemetry-2", []string{"submissionDate", "sourceName", "sourceVersion", "docType", "appName", "appUpdateChannel", "appVersion", "appBuildId"}, "dddddddd:any", "telemetry-2",
			"telemetry-2/20150928/telemetry/4/saved_session/Firefox/nightly/44.0a1/20150927150205/20150928035224.316_ip-172-31-25-174", []byte(doc),
			[]string{"20150928", "telemetry", "4", "saved_session", "Firefox", "nightly", "44.0a1", "20150927150205"}},
		{"hive", []string{"dt", "hour"}, "kk:any", "events", "events/dt=2024-01-01/hour=03/part-0001.json.gz", gz(doc), []string{"2024-01-01", "03"}},
		{"hive key outside the layout", []string{"dt", "hour"}, "kk:any", "events", "events/hour=03/dt=2024-01-01/part-0001.json.gz", gz(doc), nil},
	} {
		mc.Put(t, "data", tc.key, tc.body)
		schema, err := layout.FromWire(tc.fields, tc.layout)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		f := &feeder{s3: mc.S3, bucket: "data", prefix: tc.prefix, schema: schema, parallel: 1, policy: inputPolicy{maxBadLineRatio: 1}, logLine: (&lineLog{}).logf}
		var out bytes.Buffer
		if err := f.feed(context.Background(), []taskdef.InputFile{{Key: tc.key, Size: int64(len(tc.body))}}, &out); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		r := records.NewReader(bytes.NewReader(out.Bytes()))
		rec, err := r.Next()
		if err != nil || rec.File == nil {
			t.Fatalf("%s: first record %+v, %v; want the file header", tc.name, rec, err)
		}
		if rec.File.Key != tc.key || !slices.Equal(rec.File.Dims, tc.wantDims) {
			t.Errorf("%s: header key %q dims %q; want %q %q", tc.name, rec.File.Key, rec.File.Dims, tc.key, tc.wantDims)
		}
		if rec, err := r.Next(); err != nil || string(rec.ID) != "0ab8723b6fb3455bb34b04d97482fda2" {
			t.Errorf("%s: document %+v, %v", tc.name, rec, err)
		}
	}
}

// TestPayloadLayoutIsChecked: a payload whose layout does not fit its
// schema is refused by checkPayload, naming the fields, before anything
// runs; the layouts af submit writes pass.
func TestPayloadLayoutIsChecked(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		fields []string
		text   string
		ok     bool
	}{
		{nil, "", true},
		{layout.Telemetry().Fields, "", true},
		{[]string{"dt", "hour"}, "kk:any", true},
		{[]string{"a", "b", "c"}, "dkn:telemetry", true},
		{[]string{"dt", "hour"}, "k:any", false},
		{[]string{"dt", "hour"}, "kz:any", false},
		{[]string{"d.t", "hour"}, "kk:any", false},
		{[]string{"a", "b"}, "nd:any", false},
		{[]string{"a", "b"}, "dd:zip", false},
		{[]string{"a"}, "", false},
	} {
		p := okPayload()
		p.Schema, p.Layout = tc.fields, tc.text
		err := checkPayload(p, testCeilings)
		if tc.ok != (err == nil) || err != nil && !strings.Contains(err.Error(), "payload.schema and payload.layout: layout") {
			t.Errorf("checkPayload(schema %q, layout %q) = %v; want ok=%v", tc.fields, tc.text, err, tc.ok)
		}
	}
}
