package browsertest

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

const page = `<!doctype html><title>t</title>
<p id="msg">waiting</p><a id="go" href="/next">next</a>
<script>
setTimeout(() => { document.getElementById('msg').textContent = 'ready'; }, 50);
setTimeout(() => { console.error('boom', 42); throw new Error('kaput'); }, 10);
</script>`

func TestBrowser(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		if r.URL.Path == "/next" {
			w.Write([]byte(`<!doctype html><p id="msg">second page</p>`))
			return
		}
		w.Write([]byte(page))
	}))
	t.Cleanup(srv.Close)

	b := Start(t)
	tab := b.NewTab(t)
	if err := tab.Navigate(srv.URL, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := tab.WaitFor(`document.getElementById('msg').textContent === 'ready'`, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	var text string
	if err := tab.Eval(`document.getElementById('msg').textContent`, &text); err != nil || text != "ready" {
		t.Fatalf("Eval = %q, %v", text, err)
	}
	var sum int
	if err := tab.Eval(`Promise.resolve(40 + 2)`, &sum); err != nil || sum != 42 {
		t.Fatalf("Eval of a promise = %d, %v", sum, err)
	}
	if err := tab.WaitFor(`false`, 200*time.Millisecond); err == nil || !strings.Contains(err.Error(), "`false`") {
		t.Fatalf("WaitFor on a condition that never holds: %v", err)
	}
	errs := strings.Join(tab.Errors(), "\n")
	if !strings.Contains(errs, "kaput") || !strings.Contains(errs, "boom") {
		t.Errorf("page errors not collected: %q", errs)
	}

	path, err := tab.Screenshot("first page")
	if err != nil {
		t.Fatal(err)
	}
	png, err := os.ReadFile(path)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("screenshot %s is not a PNG (%v)", path, err)
	}

	if err := tab.Click("#go", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := tab.WaitFor(`location.pathname === '/next' && document.getElementById('msg').textContent === 'second page'`, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	loc, err := tab.Location()
	if err != nil || loc != srv.URL+"/next" {
		t.Fatalf("Location = %q, %v", loc, err)
	}
}

func TestOutputDir(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(OutputEnv, dir)
	got := OutputDir(t)
	if !strings.HasPrefix(got, dir) || !strings.HasSuffix(got, "TestOutputDir") {
		t.Fatalf("OutputDir = %q, want under %q", got, dir)
	}
	if st, err := os.Stat(got); err != nil || !st.IsDir() {
		t.Fatalf("OutputDir not created: %v", err)
	}
}
