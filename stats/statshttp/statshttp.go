// Package statshttp serves an allocator's state to a service's debug port:
// its heap profile for `go tool pprof`, its stats.Snapshot as JSON, and a
// value for expvar. It is kept out of the allocator and of package stats so
// that importing them links no net/http and registers nothing on any mux;
// this package registers nothing either, until the program mounts Handler
// or publishes Var where it chooses.
package statshttp

import (
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"path"
	"strconv"
	"time"

	"github.com/brkmap/alloc/stats"
	"github.com/google/pprof/profile"
)

// Source is what the handler serves: an allocator's counters and its heap
// profile. *alloc.Allocator is one; this package does not import it (the
// arrows point from the allocator to its stats, never back).
type Source interface {
	Stats() stats.Snapshot
	HeapProfile() *stats.HeapProfile
}

// Handler serves an allocator's state over HTTP, for a service's debug
// port. Mount it under a prefix of your choice, for example
//
//	mux.Handle("/debug/offheap/", statshttp.Handler(a))
//
// It answers by the last element of the path:
//
//   - heap: the heap profile of live off-heap allocations, in pprof's
//     format, for `go tool pprof http://host/debug/offheap/heap`. The query
//     parameters are net/http/pprof's where they apply: debug=1 (or more)
//     gives the legacy text format instead; seconds=N gives the difference
//     between profiles taken N seconds apart (what was allocated and freed
//     meanwhile). gc= does not apply — nothing here is garbage collected
//     — and is ignored.
//   - stats: the current Snapshot as JSON.
//   - anything else: a small index of the two.
func Handler(src Source) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch path.Base(r.URL.Path) {
		case "heap":
			serveHeap(w, r, src)
		case "stats":
			w.Header().Set("Content-Type", "application/json")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			_ = enc.Encode(src.Stats())
		default:
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			base := html.EscapeString(path.Clean(r.URL.Path + "/x/.."))
			if base == "/" {
				base = ""
			}
			fmt.Fprintf(w, `<html><body><p>Off-heap allocator</p><ul>
<li><a href="%[1]s/heap?debug=1">heap</a>: live off-heap allocations, sampled (pprof: go tool pprof URL)</li>
<li><a href="%[1]s/stats">stats</a>: the allocator's Snapshot as JSON</li>
</ul></body></html>
`, base)
		}
	})
}

func httpError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Go-Pprof", "1")
	w.Header().Del("Content-Disposition")
	w.WriteHeader(status)
	fmt.Fprintln(w, msg)
}

// MaxDeltaSeconds caps the seconds of a delta heap profile (one hour): a
// request may not hold the handler longer, whatever the server's
// WriteTimeout (which caps it too, as net/http/pprof does).
const MaxDeltaSeconds = 3600

// exceedsWriteTimeout reports whether a profile of sec seconds would
// outlast the serving http.Server's WriteTimeout, as net/http/pprof asks.
func exceedsWriteTimeout(r *http.Request, sec int64) bool {
	srv, ok := r.Context().Value(http.ServerContextKey).(*http.Server)
	return ok && srv.WriteTimeout > 0 && float64(sec) >= srv.WriteTimeout.Seconds()
}

func serveHeap(w http.ResponseWriter, r *http.Request, src Source) {
	debug, _ := strconv.Atoi(r.FormValue("debug"))
	sec, err := strconv.ParseInt(r.FormValue("seconds"), 10, 64)
	if r.FormValue("seconds") == "" {
		sec, err = 0, nil
	}
	switch {
	case err != nil || sec < 0:
		httpError(w, http.StatusBadRequest, "bad seconds")
		return
	case sec > MaxDeltaSeconds:
		httpError(w, http.StatusBadRequest, fmt.Sprintf("seconds above %d", MaxDeltaSeconds))
		return
	case exceedsWriteTimeout(r, sec):
		httpError(w, http.StatusBadRequest, "profile duration exceeds server's WriteTimeout")
		return
	case sec > 0 && debug != 0:
		httpError(w, http.StatusBadRequest, "seconds and debug cannot be used together")
		return
	}
	if sec > 0 {
		p0 := src.HeapProfile().Profile()
		t := time.NewTimer(time.Duration(sec) * time.Second)
		defer t.Stop()
		select {
		case <-r.Context().Done():
			httpError(w, http.StatusRequestTimeout, "the request ended before the profile did")
			return
		case <-t.C:
		}
		p1 := src.HeapProfile().Profile()
		p, err := delta(p0, p1)
		if err != nil {
			httpError(w, http.StatusInternalServerError, err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", `attachment; filename="heap-delta"`)
		_ = p.Write(w)
		return
	}
	h := src.HeapProfile()
	if debug > 0 {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_ = h.WriteText(w)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="heap"`)
	if err := h.Write(w); err != nil {
		httpError(w, http.StatusInternalServerError, err.Error())
	}
}

// delta returns p1 - p0, timed as the interval between them, as
// net/http/pprof's delta profiles.
func delta(p0, p1 *profile.Profile) (*profile.Profile, error) {
	ts, dur := p1.TimeNanos, p1.TimeNanos-p0.TimeNanos
	p0.Scale(-1)
	p, err := profile.Merge([]*profile.Profile{p0, p1})
	if err != nil {
		return nil, fmt.Errorf("stats: delta heap profile: %w", err)
	}
	p.TimeNanos, p.DurationNanos = ts, dur
	return p, nil
}

// Var returns src's Snapshot as an expvar.Var: its String is the Snapshot
// as JSON, taken afresh (with Stats, so measured) each time /debug/vars is
// read. Publish it yourself, which is where expvar (and its /debug/vars on
// http.DefaultServeMux) comes into the program:
//
//	expvar.Publish("offheap", statshttp.Var(a))
//
// This package does not import expvar, so that importing it registers
// nothing.
func Var(src interface{ Stats() stats.Snapshot }) JSONVar { return JSONVar{src} }

// JSONVar is an expvar.Var (see Var).
type JSONVar struct {
	src interface{ Stats() stats.Snapshot }
}

// String returns the Snapshot as JSON, as expvar.Var asks.
func (v JSONVar) String() string {
	b, err := json.Marshal(v.src.Stats())
	if err != nil {
		return strconv.Quote(err.Error()) // still valid JSON, as expvar needs
	}
	return string(b)
}
