// Package browsertest drives a real headless Chromium (Debian's chromium
// package) from Go tests with chromedp: open a page, wait for a condition
// in the page with a deadline, read the DOM, and save screenshots where CI
// keeps them.
//
// It never skips: a test that needs a browser and cannot start one fails
// with the command that installs it.
package browsertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// DefaultChromium is where Debian's chromium package installs the browser.
const DefaultChromium = "/usr/bin/chromium"

// OutputEnv names the directory tests save screenshots and other artifacts
// under; CI points it at a directory it keeps.
const OutputEnv = "AF_TEST_OUTPUT"

// Binary returns the Chromium executable: $AF_CHROMIUM, else
// /usr/bin/chromium, else chromium or chromium-browser on PATH.
func Binary() (string, error) {
	if p := os.Getenv("AF_CHROMIUM"); p != "" {
		return p, nil
	}
	if _, err := os.Stat(DefaultChromium); err == nil {
		return DefaultChromium, nil
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("chromium not found: install it with `apt-get install chromium` (or set AF_CHROMIUM to a Chromium binary)")
}

// Browser is one headless Chromium process; tabs opened from it run in
// parallel.
type Browser struct {
	ctx    context.Context
	cancel context.CancelFunc
}

// Options configure Start.
type Options struct {
	// Width and Height are the window size; default 1400×1000.
	Width, Height int
	// TrustSPKI are base64 SHA-256 hashes of certificates' public keys
	// (tlstest.Leaf.SPKIHash) that Chromium accepts for https although
	// no CA it knows signed them (--ignore-certificate-errors-spki-list):
	// it pins the test's own server certificates, every other one is
	// still checked.
	TrustSPKI []string
}

// Start launches Chromium for the test (headless, GPU off, a temporary
// profile, --no-sandbox when running as root, which Chromium's sandbox
// refuses) and stops it when the test ends.
func Start(t testing.TB, opts ...Options) *Browser {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatalf("browsertest: %v", err)
	}
	o := Options{Width: 1400, Height: 1000}
	if len(opts) > 0 {
		if opts[0].Width > 0 {
			o.Width = opts[0].Width
		}
		if opts[0].Height > 0 {
			o.Height = opts[0].Height
		}
	}
	alloc := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(o.Width, o.Height),
		chromedp.DisableGPU,
		chromedp.Flag("hide-scrollbars", false),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.Flag("lang", "en-US"),
	)
	if os.Geteuid() == 0 {
		alloc = append(alloc, chromedp.NoSandbox)
	}
	if len(opts) > 0 && len(opts[0].TrustSPKI) > 0 {
		alloc = append(alloc, chromedp.Flag("ignore-certificate-errors-spki-list", strings.Join(opts[0].TrustSPKI, ",")))
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), alloc...)
	ctx, cancel := chromedp.NewContext(actx)
	b := &Browser{ctx: ctx, cancel: func() { cancel(); acancel() }}
	t.Cleanup(b.cancel)
	// The first Run starts the browser; it must not carry a timeout (that
	// would stop the browser), so a watchdog bounds it instead.
	started := make(chan error, 1)
	go func() {
		_, err := chromedp.Run(ctx, chromedp.Evaluate[chromedp.Void](`1`))
		started <- err
	}()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("browsertest: start %s: %v", bin, err)
		}
	case <-time.After(60 * time.Second):
		b.cancel()
		t.Fatalf("browsertest: %s did not start within 60s", bin)
	}
	return b
}

// Tab is one browser tab.
type Tab struct {
	t      testing.TB
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	errors []string
}

// NewTab opens a tab; it closes when the test ends. JavaScript exceptions
// and console.error calls in the tab are collected (see Errors).
func (b *Browser) NewTab(t testing.TB) *Tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	tab := &Tab{t: t, ctx: ctx, cancel: cancel}
	t.Cleanup(cancel)
	if err := chromedp.Listen(ctx, tab.onEvent); err != nil {
		t.Fatalf("browsertest: open tab: %v", err)
	}
	return tab
}

func (tab *Tab) onEvent(ev any) {
	var msg string
	switch e := ev.(type) {
	case *runtime.EventExceptionThrown:
		if d := e.ExceptionDetails; d != nil {
			msg = "exception: " + d.Text
			if d.Exception != nil && d.Exception.Description != "" {
				msg += " " + d.Exception.Description
			}
		}
	case *runtime.EventConsoleAPICalled:
		if e.Type != runtime.ConsoleAPICalledTypeError {
			return
		}
		var parts []string
		for _, a := range e.Args {
			if len(a.Value) > 0 {
				parts = append(parts, string(a.Value))
			} else {
				parts = append(parts, a.Description)
			}
		}
		msg = "console.error: " + strings.Join(parts, " ")
	default:
		return
	}
	tab.mu.Lock()
	tab.errors = append(tab.errors, msg)
	tab.mu.Unlock()
}

// Errors returns the JavaScript exceptions and console errors seen so far.
func (tab *Tab) Errors() []string {
	tab.mu.Lock()
	defer tab.mu.Unlock()
	return append([]string(nil), tab.errors...)
}

// Context is the tab's chromedp context, for actions this package does
// not wrap. Bound each call with a timeout derived from it.
func (tab *Tab) Context() context.Context { return tab.ctx }

// Navigate opens url and waits for the document to load.
func (tab *Tab) Navigate(url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(tab.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		return fmt.Errorf("navigate to %s: %w", url, err)
	}
	return nil
}

// WaitFor waits until the JavaScript expression is truthy in the page, at
// most timeout, checking on every animation frame. The error says which
// expression never held.
func (tab *Tab) WaitFor(expr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			left = time.Millisecond
		}
		ctx, cancel := context.WithTimeout(tab.ctx, left+5*time.Second)
		_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(left)))
		cancel()
		if err == nil {
			return nil
		}
		// A navigation destroys the page's JavaScript context under the
		// poll; the condition is then checked again in the new page.
		if navigating(err) && time.Now().Before(deadline) && tab.ctx.Err() == nil {
			t := time.NewTimer(20 * time.Millisecond)
			select {
			case <-t.C:
			case <-tab.ctx.Done():
				t.Stop()
			}
			continue
		}
		return fmt.Errorf("wait %s for `%s`: %w", timeout, expr, err)
	}
}

func navigating(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "Cannot find context") || strings.Contains(msg, "context was destroyed") ||
		strings.Contains(msg, "Inspected target navigated")
}

// WaitVisible waits until an element matching the CSS selector is in the
// DOM and visible.
func (tab *Tab) WaitVisible(selector string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(tab.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(selector))); err != nil {
		return fmt.Errorf("wait %s for %s to be visible: %w", timeout, selector, err)
	}
	return nil
}

// Eval evaluates a JavaScript expression and decodes its JSON value into
// out (nil to ignore it). Promises are awaited.
func (tab *Tab) Eval(expr string, out any) error {
	ctx, cancel := context.WithTimeout(tab.ctx, 30*time.Second)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		return fmt.Errorf("evaluate `%s`: %w", expr, err)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("evaluate `%s`: decode %s: %w", expr, raw, err)
	}
	return nil
}

// Click clicks the first element matching the CSS selector.
func (tab *Tab) Click(selector string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(tab.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(selector))); err != nil {
		return fmt.Errorf("click %s: %w", selector, err)
	}
	return nil
}

// Location is the tab's current URL.
func (tab *Tab) Location() (string, error) {
	ctx, cancel := context.WithTimeout(tab.ctx, 10*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Location())
}

// Screenshot saves a PNG of the whole page as <OutputDir>/<name>.png and
// logs and returns its path.
func (tab *Tab) Screenshot(name string) (string, error) {
	ctx, cancel := context.WithTimeout(tab.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		return "", fmt.Errorf("screenshot %s: %w", name, err)
	}
	dir := OutputDir(tab.t)
	path := filepath.Join(dir, safeName(name)+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		return "", fmt.Errorf("screenshot %s: %w", name, err)
	}
	tab.t.Logf("screenshot: %s", path)
	return path, nil
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func safeName(s string) string { return strings.Trim(unsafeChars.ReplaceAllString(s, "_"), "_") }

// OutputDir is where the test keeps files worth looking at after it ran:
// $AF_TEST_OUTPUT/<test name> when set, else a directory under the system
// temporary directory that outlives the test (logged, so it can be found).
func OutputDir(t testing.TB) string {
	t.Helper()
	base := os.Getenv(OutputEnv)
	if base == "" {
		base = filepath.Join(os.TempDir(), "af-test-output")
	}
	dir := filepath.Join(base, safeName(t.Name()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("browsertest: output dir: %v", err)
	}
	return dir
}
