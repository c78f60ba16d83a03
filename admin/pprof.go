package admin

import (
	"net/http"
	"net/http/pprof"
	runtimepprof "runtime/pprof"
	"strings"
)

// routeProfiles serves Go's runtime profiles under /admin/debug/pprof/
// (Config.Profiling), behind the admin token like every admin route:
// profile (CPU, ?seconds=), trace, and the named profiles (heap, goroutine,
// mutex, block, allocs, threadcreate); the bare path lists them.
func routeProfiles(mux *http.ServeMux) {
	mux.HandleFunc("GET /admin/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /admin/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /admin/debug/pprof/{$}", func(w http.ResponseWriter, _ *http.Request) {
		var names []string
		for _, p := range runtimepprof.Profiles() {
			names = append(names, p.Name())
		}
		adminJSON(w, http.StatusOK, map[string]any{"profiles": append(names, "profile", "trace"),
			"usage": "GET /admin/debug/pprof/<name>[?debug=1] (profile?seconds=N for CPU) with the admin token; save the answer and read it with go tool pprof"})
	})
	mux.HandleFunc("GET /admin/debug/pprof/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if runtimepprof.Lookup(name) == nil || strings.ContainsAny(name, "/.") {
			adminJSON(w, http.StatusNotFound, map[string]string{"error": "no profile named " + name})
			return
		}
		pprof.Handler(name).ServeHTTP(w, r)
	})
}
