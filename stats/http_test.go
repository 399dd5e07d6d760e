package stats

import (
	"encoding/json"
	"expvar"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/pprof/profile"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeSource serves a fixed snapshot and a profile whose allocations grow
// each time it is taken (as a running service's would).
type fakeSource struct{ taken atomic.Int64 }

func (f *fakeSource) Stats() Snapshot { return Snapshot{LiveBlocks: 7, LiveBytes: 700, Resident: 4096} }

func (f *fakeSource) HeapProfile() *HeapProfile {
	h := testProfile()
	h.Records[0].AllocObjects += 100 * f.taken.Add(1)
	h.Records[0].AllocBytes = h.Records[0].AllocObjects * 4096
	return h
}

func get(t *testing.T, srv *httptest.Server, path string) (*http.Response, []byte) {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, b
}

func TestHandler(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("/debug/offheap/", Handler(&fakeSource{}))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	t.Run("heap", func(t *testing.T) {
		resp, b := get(t, srv, "/debug/offheap/heap")
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "application/octet-stream", resp.Header.Get("Content-Type"))
		p, err := profile.ParseData(b)
		require.NoError(t, err)
		require.Len(t, p.Sample, 2)
		assert.Contains(t, p.Sample[0].Location[0].Line[0].Function.Name, "allocatingFunction")
	})
	t.Run("debug", func(t *testing.T) {
		resp, b := get(t, srv, "/debug/offheap/heap?debug=1")
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.True(t, strings.HasPrefix(string(b), "heap profile: "), string(b))
		assert.Contains(t, string(b), "allocatingFunction")
	})
	t.Run("delta", func(t *testing.T) {
		resp, b := get(t, srv, "/debug/offheap/heap?seconds=1")
		require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
		p, err := profile.ParseData(b)
		require.NoError(t, err)
		assert.Positive(t, p.DurationNanos)
		var alloc int64
		for _, s := range p.Sample {
			alloc += s.Value[0]
		}
		// Two profiles taken a second apart differ by the 100 sampled
		// allocations made between them, scaled: nothing else changed.
		sc, _ := scale(100, 100*4096, DefaultProfileRate)
		assert.InDelta(t, sc, alloc, 2)
	})
	t.Run("bad", func(t *testing.T) {
		resp, _ := get(t, srv, "/debug/offheap/heap?seconds=x")
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
		resp, _ = get(t, srv, "/debug/offheap/heap?seconds=1&debug=1")
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	})
	t.Run("stats", func(t *testing.T) {
		resp, b := get(t, srv, "/debug/offheap/stats")
		require.Equal(t, http.StatusOK, resp.StatusCode)
		var s Snapshot
		require.NoError(t, json.Unmarshal(b, &s))
		assert.Equal(t, Snapshot{LiveBlocks: 7, LiveBytes: 700, Resident: 4096}, s)
	})
	t.Run("index", func(t *testing.T) {
		resp, b := get(t, srv, "/debug/offheap/")
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Contains(t, string(b), `href="/debug/offheap/heap?debug=1"`)
		assert.Contains(t, string(b), `href="/debug/offheap/stats"`)
	})
}

func TestPublish(t *testing.T) {
	Publish("offheap_test", &fakeSource{})
	v := expvar.Get("offheap_test")
	require.NotNil(t, v)
	var s Snapshot
	require.NoError(t, json.Unmarshal([]byte(v.String()), &s))
	assert.Equal(t, uint64(4096), s.Resident)
}

// TestHandlerSecondsBounds: seconds= is capped (issue 11, item 16: a value
// past 9.2e9 overflowed into an immediate empty delta, and 999999 held the
// request 11 days). Past MaxDeltaSeconds, or at least the server's
// WriteTimeout, is a 400 at once.
func TestHandlerSecondsBounds(t *testing.T) {
	srv := httptest.NewUnstartedServer(Handler(&fakeSource{}))
	srv.Config.WriteTimeout = 5 * time.Second
	srv.Start()
	defer srv.Close()
	for _, sec := range []string{"9300000000", "999999", "3601", "5", "99999999999999999999"} {
		start := time.Now()
		resp, body := get(t, srv, "/debug/offheap/heap?seconds="+sec)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "seconds=%s: %s", sec, body)
		assert.Less(t, time.Since(start), 2*time.Second, "seconds=%s answered at once", sec)
	}
	resp, body := get(t, srv, "/debug/offheap/heap?seconds=1")
	assert.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
}
