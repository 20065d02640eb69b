package report

import (
	"bytes"
	"context"
	"flag"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
)

// -update-screenshot writes the browser test's screenshot to
// docs/report.png, the picture README shows.
var updateScreenshot = flag.Bool("update-screenshot", false, "write the HTML report's screenshot to docs/report.png")

// screenshotSize fits the whole page of week's data.
const screenshotW, screenshotH = 1280, 2900

// A week of decisions renders into a page that headless Chromium loads
// without a console error, with every chart in its DOM and the hostile
// sender as text. Chromium is part of the test rig
// (scripts/install-test-deps.sh): without it the test fails.
func TestHTMLInBrowser(t *testing.T) {
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium not found: install it (scripts/install-test-deps.sh)")
	}
	d := dbtest.Open(t, db.SQLite)
	week(t, d, true)
	dir := t.TempDir()
	file := filepath.Join(dir, "report.html")
	if err := os.WriteFile(file, []byte(renderHTML(t, d, 0)), 0o644); err != nil {
		t.Fatal(err)
	}

	// The console check must be able to fail: a page that logs an error
	// and throws is caught.
	canary := filepath.Join(dir, "canary.html")
	os.WriteFile(canary, []byte(`<!DOCTYPE html><script>console.error("canary"); throw new Error("canary")</script>`), 0o644)
	if _, errs := chromium(t, bin, canary, "--dump-dom"); len(errs) == 0 {
		t.Fatal("the console check caught nothing on a page that logs an error")
	}

	dom, errs := chromium(t, bin, file, "--dump-dom")
	for _, e := range errs {
		t.Errorf("console: %s", e)
	}
	checkDOM(t, dom)

	shot := filepath.Join(screenshotDir(t), "report.png")
	if _, errs := chromium(t, bin, file, "--hide-scrollbars", "--screenshot="+shot,
		"--window-size="+itoa(screenshotW)+","+itoa(screenshotH)); len(errs) > 0 {
		t.Errorf("console while taking the screenshot: %q", errs)
	}
	checkScreenshot(t, shot)
	t.Logf("screenshot: %s", shot)
	if *updateScreenshot {
		b, _ := os.ReadFile(shot)
		if err := os.WriteFile("../docs/report.png", b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// checkDOM looks in the DOM Chromium built for each chart, its
// accessible title, and the hostile sender as text.
func checkDOM(t *testing.T, dom string) {
	t.Helper()
	for _, id := range chartIDs {
		re := regexp.MustCompile(`<svg id="` + id + `" class="chart [a-z]+"[^>]*>\s*<title id="` + id + `-t">[^<]+</title>`)
		if !re.MatchString(dom) {
			t.Errorf("DOM lacks the chart %s with its title", id)
		}
	}
	if n := strings.Count(dom, "<rect "); n < 100 {
		t.Errorf("DOM has %d rects, want the bars of a week", n)
	}
	if strings.Contains(dom, "<script") || strings.Contains(dom, "<img") {
		t.Error("client-supplied text became an element")
	}
	if !strings.Contains(dom, "&lt;script&gt;alert(\"x\")&lt;/script&gt;@evil.example") {
		t.Error("the hostile sender is not in the DOM as text")
	}
}

// checkScreenshot decodes the PNG and checks it is the window's size and
// not blank.
func checkScreenshot(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != screenshotW || b.Dy() != screenshotH {
		t.Errorf("screenshot is %v, want %dx%d", b, screenshotW, screenshotH)
	}
	colors := map[uint32]bool{}
	for y := 0; y < img.Bounds().Dy(); y += 7 {
		for x := 0; x < img.Bounds().Dx(); x += 7 {
			r, g, b, _ := img.At(x, y).RGBA()
			colors[r>>12<<8|g>>12<<4|b>>12] = true
		}
	}
	if len(colors) < 8 {
		t.Errorf("screenshot has %d colours: blank?", len(colors))
	}
}

// screenshotDir is where the screenshot stays after the test:
// $MXPOLICYD_TEST_ARTIFACTS if set, else a directory under the system's
// temp dir.
func screenshotDir(t *testing.T) string {
	dir := os.Getenv("MXPOLICYD_TEST_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "mxpolicyd-report-test")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// consoleLine is how Chromium logs a console message with
// --enable-logging=stderr: "[...:INFO:CONSOLE:1] "text", source: ...".
var consoleLine = regexp.MustCompile(`:CONSOLE[:(]|Uncaught `)

// chromium loads file in headless Chromium with args and returns its
// stdout and the console messages it logged. The flags keep it off the
// network: no background requests, updates or sync.
func chromium(t *testing.T, bin, file string, args ...string) (string, []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	all := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(), "--enable-logging=stderr", "--v=0"}, args...)
	cmd := exec.CommandContext(ctx, bin, append(all, "file://"+file)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var errs []string
	for _, l := range strings.Split(stderr.String(), "\n") {
		if consoleLine.MatchString(l) {
			errs = append(errs, l)
		}
	}
	return stdout.String(), errs
}
