package main

import (
	"bytes"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The main job, shrunk, writes its report folder, and the page renders its
// plots in headless Chromium: every plot is laid out with a size and
// shapes (marks the page's own script sets), and the screenshot shows the
// policies' colours.
func TestMainJobReport(t *testing.T) {
	dir := t.TempDir()
	traces := filepath.Join(dir, "traces")
	require.NoError(t, os.Mkdir(traces, 0o755))
	writeTrace(t, traces, "gen", 4)
	out := filepath.Join(dir, "report")
	require.NoError(t, run([]string{"-out", out, "-traces", traces, "-scale", "0.05",
		"-workloads", "pinned-top,large-temp"}))

	page, err := os.ReadFile(filepath.Join(out, "index.html"))
	require.NoError(t, err)
	plots := len(regexp.MustCompile(`<svg class="plot"`).FindAll(page, -1))
	// pinned-top and large-temp: resident + region each; the trace: resident.
	assert.Equal(t, 5, plots)
	for _, f := range []string{"results.json", "pinned-top-resident.svg", "pinned-top-region.svg",
		"large-temp-resident.svg", "gen-resident.svg"} {
		assert.FileExists(t, filepath.Join(out, f))
	}
	assert.NotContains(t, string(page), `src="`, "the page is self-contained")
	assert.Contains(t, string(page), "The pinned top.")

	chromium := findChromium()
	if chromium == "" {
		t.Skip("chromium not installed (CI installs it): the page was written but not rendered")
	}
	headless := func(args ...string) []byte {
		base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--user-data-dir=" + t.TempDir()}
		cmd := exec.Command(chromium, append(append(base, args...), "file://"+filepath.Join(out, "index.html"))...)
		var stdout bytes.Buffer
		cmd.Stdout = &stdout
		done := make(chan error, 1)
		require.NoError(t, cmd.Start())
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(2 * time.Minute):
			cmd.Process.Kill()
			t.Fatal("chromium did not finish in 2 minutes")
		}
		return stdout.Bytes()
	}

	dom := headless("--dump-dom")
	rendered := regexp.MustCompile(`data-rendered="yes"`).FindAll(dom, -1)
	assert.Len(t, rendered, plots, "every plot is laid out and drawn")
	assert.NotContains(t, string(dom), `data-rendered="no"`)

	shot := filepath.Join(t.TempDir(), "page.png")
	headless("--window-size=1100,2600", "--screenshot="+shot)
	f, err := os.Open(shot)
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	// Count the pixels of the colours plots use: the threshold line and
	// live pages (blue) and the released pages (grey).
	var blue, grey int
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			r, g, bl = r>>8, g>>8, bl>>8
			switch {
			case near(r, 0x1f) && near(g, 0x77) && near(bl, 0xb4):
				blue++
			case near(r, 0xd0) && near(g, 0xd0) && near(bl, 0xd0):
				grey++
			}
		}
	}
	assert.Greater(t, blue, 1000, "live pages and the threshold line are drawn")
	assert.Greater(t, grey, 1000, "released pages are drawn")
}

func near(a, b uint32) bool { return a+6 >= b && a <= b+6 }

// findChromium returns the path of a Chromium binary, or "".
func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}
