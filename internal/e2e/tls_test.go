package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/af-project/af/internal/browsertest"
	"github.com/af-project/af/internal/clustertest"
	"github.com/af-project/af/internal/creds"
	"github.com/af-project/af/internal/filter"
	"github.com/af-project/af/internal/layout"
	"github.com/af-project/af/internal/miniotest"
	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/server"
	"github.com/af-project/af/internal/smtptest"
	"github.com/af-project/af/internal/synth"
	"github.com/af-project/af/internal/taskdef"
	"github.com/af-project/af/internal/testbin"
	"github.com/af-project/af/internal/tlstest"
)

// TestTLSEndToEnd runs af over https with a CA and a certificate the test
// makes (for 127.0.0.1 and localhost): the real `af serve --tls-cert
// --tls-key`, a real worker binary with --ca claiming and running the
// job in Docker against MinIO, `af submit --wait --ca` printing the right
// result, the monitor page fetched by a Go client trusting the CA and
// opened in headless Chromium pinning the test certificate. A client
// without the CA is refused with an error naming --ca and AF_CA_FILE, and
// plain http to the https port gets no API answer.
func TestTLSEndToEnd(t *testing.T) {
	t.Parallel()
	afBin, workerBin := binaries(t)
	clustertest.RequireImages(t, "af/os-count")
	dir := t.TempDir()
	m := miniotest.Start(t, clustertest.InputBucket, "af-artifacts")
	mail := smtptest.Start(t)

	ca, err := tlstest.NewCA("af e2e CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Server(tlstest.LeafOptions{}, "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	files, err := tlstest.WriteFiles(filepath.Join(dir, "tls"), "queue", ca, leaf)
	if err != nil {
		t.Fatal(err)
	}
	pub, key, err := creds.GenerateKeyPair(filepath.Join(dir, "keys"), false)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	submitTok, workTok := "s-"+server.NewToken(), "w-"+server.NewToken()
	cfg := server.Config{
		Listen: addr,
		Data:   filepath.Join(dir, "af-data"),
		Tokens: []server.Token{
			{Name: "analyst", Role: server.RoleSubmit, Token: submitTok},
			{Name: "workers", Role: server.RoleWork, Token: workTok},
		},
		S3:      server.S3Config{Endpoint: m.Endpoint, Bucket: "af-artifacts"},
		PoolKey: pub,
		SMTP:    server.SMTPConfig{Addr: mail.Addr(), From: "af@localhost", StartTLS: "never"},
		// The certificate comes from the flags, not the config.
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	serveOut := &testbin.SyncBuffer{}
	serve := exec.Command(afBin, "serve", "--config", cfgPath, "--tls-cert", files.Cert, "--tls-key", files.Key)
	serve.Env = append(os.Environ(), m.Env()...)
	serve.Stdout, serve.Stderr = serveOut, serveOut
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = serve.Process.Signal(os.Interrupt)
		_ = serve.Wait()
		if t.Failed() {
			t.Logf("af serve output:\n%s", serveOut.String())
		}
	})
	url := "https://" + addr
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(serveOut.String(), "listening on") {
		if time.Now().After(deadline) {
			t.Fatalf("af serve did not start:\n%s", serveOut.String())
		}
		time.Sleep(50 * time.Millisecond) // polling the process's output
	}
	if !strings.Contains(serveOut.String(), "listening on "+url) {
		t.Fatalf("af serve does not name its https URL:\n%s", serveOut.String())
	}

	// Data and the index, through a Go client trusting the CA.
	pool, err := queueclient.LoadCAFile(files.CA)
	if err != nil {
		t.Fatal(err)
	}
	q := queueclient.New(url, submitTok, queueclient.WithRootCAs(pool))
	want := tlsData(t, m, q)

	// Plain http on the https port: no API answer.
	if resp, err := http.Get("http://" + addr + "/api/v1/pool-key"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || bytes.Contains(body, []byte("af-pool-key")) {
			t.Errorf("plain http to the https port: %s %q", resp.Status, body)
		}
	}

	// A worker without the CA claims nothing and says what to do.
	lostOut := &testbin.SyncBuffer{}
	lost := exec.Command(workerBin, "--queue", url, "--key", key, "--worker-id", "tls-no-ca",
		"--worker-group", "e2e", "--scratch", filepath.Join(dir, "scratch-no-ca"), "--grace", "1s")
	lost.Env = append(os.Environ(), "AF_TOKEN="+workTok, "AWS_ENDPOINT_URL="+m.Endpoint, "AF_CA_FILE=")
	lost.Stdout, lost.Stderr = lostOut, lostOut
	if err := lost.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); !strings.Contains(lostOut.String(), "restart the worker with --ca FILE or AF_CA_FILE"); {
		if time.Now().After(deadline) {
			t.Fatalf("a worker without the CA did not say to pass --ca:\n%s", lostOut.String())
		}
		time.Sleep(50 * time.Millisecond) // polling the process's output
	}
	_ = lost.Process.Signal(os.Interrupt)
	_ = lost.Wait()

	// A worker trusting the CA (and reading MinIO over http).
	workerOut := &testbin.SyncBuffer{}
	worker := exec.Command(workerBin, "--queue", url, "--ca", files.CA, "--key", key, "--worker-id", "tls-w1",
		"--worker-group", "e2e", "--scratch", filepath.Join(dir, "scratch"), "--grace", "5s")
	worker.Env = append(os.Environ(), "AF_TOKEN="+workTok, "AWS_ENDPOINT_URL="+m.Endpoint)
	worker.Stdout, worker.Stderr = workerOut, workerOut
	if err := worker.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = worker.Process.Signal(os.Interrupt)
		_ = worker.Wait()
		if t.Failed() {
			t.Logf("worker output:\n%s", workerOut.String())
		}
	})

	afEnv := append(append(os.Environ(), m.Env()...), "AF_QUEUE_URL="+url, "AF_TOKEN="+submitTok, "AF_CA_FILE=", "AF_INSECURE_HTTP=")
	af := func(args ...string) (stdout, stderr string, err error) {
		cmd := exec.Command(afBin, args...)
		cmd.Dir = repoRoot()
		cmd.Env = afEnv
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err = cmd.Run()
		return o.String(), e.String(), err
	}
	out, errOut, err := af("submit", "filters/Filter.json", "af/os-count", "--ca", files.CA, "--owner", "analyst@example.com",
		"--name", "os count over https", "--max-files-per-task", "2", "--wait")
	if err != nil {
		t.Fatalf("af submit --wait --ca: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}
	// With --wait, stdout is the result alone; the graph id and the
	// monitor link go to stderr.
	match := graphIDPattern.FindStringSubmatch(errOut)
	if match == nil {
		t.Fatalf("no graph id in:\n%s", errOut)
	}
	graphID := match[1]
	monitorURL := url + "/graphs/" + graphID
	if !strings.Contains(errOut, "monitor: "+monitorURL) {
		t.Errorf("af submit does not print the https monitor URL %s:\n%s", monitorURL, errOut)
	}
	if out != want {
		t.Fatalf("af submit --wait printed\n%s\nwant only the result\n%s", out, want)
	}
	gs, err := q.Graph(context.Background(), graphID)
	if err != nil {
		t.Fatal(err)
	}
	for _, ts := range gs.Tasks {
		if n := len(ts.Runs); ts.State != taskdef.StateCompleted || n == 0 || ts.Runs[n-1].WorkerID != "tls-w1" {
			t.Errorf("task %s %s: %s, runs %+v; want completed by the https worker", ts.TaskID, ts.Name, ts.State, ts.Runs)
		}
	}

	// The CA from the environment works as --ca does; without it the
	// client is refused, told what to do.
	afEnv = append(afEnv, "AF_CA_FILE="+files.CA)
	if res, errOut, err := af("result", graphID); err != nil || res != want {
		t.Errorf("af result with AF_CA_FILE: %v %q\n%s", err, res, errOut)
	}
	afEnv = append(afEnv, "AF_CA_FILE=")
	_, errOut, err = af("status", graphID)
	if err == nil || !strings.Contains(errOut, "certificate") || !strings.Contains(errOut, "--ca FILE") || !strings.Contains(errOut, "AF_CA_FILE") {
		t.Errorf("af status without the CA: %v\n%s\nwant a refusal naming the certificate, --ca FILE and AF_CA_FILE", err, errOut)
	}

	// The owner's email links to the https page.
	msgs, err := mail.Wait(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(msgs[0].Data, []byte(monitorURL)) {
		t.Errorf("the email lacks the https monitor link %s:\n%s", monitorURL, msgs[0].Data)
	}

	// The monitor page over https, with a Go client trusting the CA.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	resp, err := hc.Get(monitorURL)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), graphID) || resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Fatalf("monitor page over https: %s %+v\n%.300s", resp.Status, resp.TLS, page)
	}
	if _, err := http.Get(monitorURL); err == nil {
		t.Error("a Go client without the CA opened the page")
	}

	// And in Chromium, which trusts the test certificate by its key
	// (every other certificate is still checked), through the emailed
	// link: its read capability opens the page without signing in.
	link := regexp.MustCompile(regexp.QuoteMeta(monitorURL) + `\?cap=[^\s"<>]+`).FindString(msgs[0].Text)
	if link == "" {
		t.Fatalf("no https monitor link with a read capability in the email:\n%s", msgs[0].Text)
	}
	br := browsertest.Start(t, browsertest.Options{TrustSPKI: []string{leaf.SPKIHash()}})
	tab := br.NewTab(t)
	if err := tab.Navigate(link, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := tab.WaitFor(`document.getElementById('app') && document.getElementById('app').dataset.live === 'false'`, time.Minute); err != nil {
		t.Fatal(err)
	}
	var proto string
	if err := tab.Eval(`location.protocol`, &proto); err != nil || proto != "https:" {
		t.Fatalf("page protocol %q (%v)", proto, err)
	}
	var done int
	if err := tab.Eval(`document.querySelectorAll('#tasks .trow[data-state="completed"]').length`, &done); err != nil || done != len(gs.Tasks) {
		t.Errorf("the page shows %d completed tasks of %d (%v)", done, len(gs.Tasks), err)
	}
	if err := tab.WaitFor(`document.getElementById('result-text').dataset.loaded === 'true'`, time.Minute); err != nil {
		t.Fatal(err)
	}
	var shown string
	if err := tab.Eval(`document.getElementById('result-text').textContent`, &shown); err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(shown) != strings.TrimSpace(want) {
		t.Errorf("the https page shows result\n%s\nwant\n%s", shown, want)
	}
	if _, err := tab.Screenshot("monitor-https"); err != nil {
		t.Fatal(err)
	}

	// The control: another certificate from the same CA, not pinned,
	// is refused by the same browser; the flag pins one key, it does
	// not turn checking off.
	otherLeaf, err := ca.Server(tlstest.LeafOptions{}, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	otherPair, err := otherLeaf.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	other := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "<html><body id=unpinned>not pinned</body></html>")
	}))
	other.TLS = &tls.Config{Certificates: []tls.Certificate{otherPair}}
	other.StartTLS()
	defer other.Close()
	tab2 := br.NewTab(t)
	err = tab2.Navigate(other.URL, 30*time.Second)
	var unpinned bool
	if evalErr := tab2.Eval(`!!document.getElementById('unpinned')`, &unpinned); err == nil && evalErr == nil && unpinned {
		t.Error("Chromium opened a page whose certificate is not pinned")
	}
	if err == nil || !strings.Contains(err.Error(), "ERR_CERT") {
		t.Errorf("navigating to the unpinned certificate: %v, want a certificate error", err)
	}
}

// tlsData uploads telemetry the original Filter.json partly selects,
// builds the server's index through q and returns the os-count result.
func tlsData(t *testing.T, m *miniotest.Server, q *queueclient.Client) string {
	t.Helper()
	set, err := synth.Generate(synth.Spec{
		Reasons: []string{"saved-session", "idle-daily"}, Channels: []string{"nightly", "beta"},
		Versions: []string{"30.0a1"}, BuildIDs: []string{"20140301030201", "20140115030201"},
		Days: []string{"20140307", "20140308"}, FilesPerPartition: 1, DocsPerFile: 20,
		HistogramSize: 2, Formats: []string{"gz", "zst"}, Seed: 13,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := synth.Upload(context.Background(), m.S3, clustertest.InputBucket, set.Files); err != nil {
		t.Fatal(err)
	}
	schemaPath := filepath.Join(repoRoot(), "filters", "telemetry_schema.json")
	schemaJSON, err := os.ReadFile(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	schema, err := layout.LoadSchema(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.IndexBuild(context.Background(), taskdef.IndexBuildRequest{Bucket: clustertest.InputBucket, Schema: schemaJSON}); err != nil {
		t.Fatal(err)
	}
	f, err := filter.ParseFile(filepath.Join(repoRoot(), "filters", "Filter.json"), schema)
	if err != nil {
		t.Fatal(err)
	}
	selected := 0
	counts := set.CountByOS(func(file synth.File) bool {
		if f.Match(file.Dims) {
			selected++
			return true
		}
		return false
	})
	if selected < 2 {
		t.Fatalf("the filter selects %d files; want several mappers", selected)
	}
	return synth.FormatOSCounts(counts)
}
