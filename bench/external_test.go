package bench

import (
	"bytes"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"
)

// externalRun builds one run's result: n calls of latency µs, two of them
// of slow µs (which p99 picks up when n is 100).
func externalRun(target string, round int, rate float64, n int, latency, slow int64, cpu map[string]time.Duration) ExternalRun {
	r := &Result{Latency: newHistogram(), Service: newHistogram(), ErrorKinds: map[string]int64{},
		Requests: int64(n), Elapsed: time.Second, Rate: rate}
	for i := range n {
		v := latency
		if i >= n-2 {
			v = slow
		}
		_ = r.Latency.RecordValue(v * 1000)
		_ = r.Service.RecordValue(v * 1000)
	}
	return NewExternalRun(target, round, r, cpu)
}

func TestExternalCompute(t *testing.T) {
	ms := func(v int) time.Duration { return time.Duration(v) * time.Millisecond }
	rep := &ExternalReport{Scenario: ExternalScenario{Rates: []float64{200}, Rounds: 3}}
	// Round by round: direct 500, 600, 700 µs; nginx +100, +50, +150;
	// the gateway +400, +900, +600. 100 calls, so CPU per call is the
	// milliseconds given ×10 µs.
	for i, d := range []int64{500, 600, 700} {
		round := i + 1
		rep.Runs = append(rep.Runs,
			externalRun(TargetDirect, round, 200, 100, d, 5000, map[string]time.Duration{ProcBackend: ms(30 + i)}),
			externalRun(TargetNginx, round, 200, 100, d+[]int64{100, 50, 150}[i], 5000, map[string]time.Duration{ProcBackend: ms(30), ProcNginx: ms(5)}),
			externalRun(TargetGateway, round, 200, 100, d+[]int64{400, 900, 600}[i], 6000, map[string]time.Duration{ProcBackend: ms(30), ProcGateway: ms(40 + 10*i)}),
		)
	}
	// The gateway held 1, 3 and 2 connections to the backend.
	for i, n := range []int{1, 3, 2} {
		rep.Runs[3*i+2].BackendConns = &n
	}
	rep.Compute()
	if g := rep.Summaries(TargetGateway); len(g) != 1 || g[0].BackendConns == nil || *g[0].BackendConns != (Spread{2, 1, 3}) {
		t.Errorf("the gateway's connections to the backend: %+v, want median 2 in 1..3", g)
	}
	if d := rep.Summaries(TargetDirect); len(d) != 1 || d[0].BackendConns != nil {
		t.Errorf("direct's connections to the backend: %+v, want none", d)
	}
	tests := []struct {
		name       string
		target     string
		p50        Spread
		added50    *Spread
		added99    *Spread
		cpuProc    string
		cpuPerCall float64
	}{
		{"direct is the baseline, no added figures", TargetDirect, Spread{600, 500, 700}, nil, nil, ProcBackend, 310},
		{"nginx adds its hop, median over rounds", TargetNginx, Spread{650, 600, 850}, &Spread{100, 50, 150}, &Spread{0, 0, 0}, ProcNginx, 50},
		{"the gateway's added p50 and its spread", TargetGateway, Spread{1300, 900, 1500}, &Spread{600, 400, 900}, &Spread{1000, 1000, 1000}, ProcGateway, 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ss := rep.Summaries(tt.target)
			if len(ss) != 1 {
				t.Fatalf("%d summaries of %s, want 1", len(ss), tt.target)
			}
			s := ss[0]
			if s.Rounds != 3 || s.Requests != 300 || s.Errors != 0 {
				t.Errorf("rounds %d, requests %d, errors %d; want 3, 300, 0", s.Rounds, s.Requests, s.Errors)
			}
			if !near(s.P50, &tt.p50) {
				t.Errorf("p50 %+v, want %+v", *s.P50, tt.p50)
			}
			if !near(s.AddedP50, tt.added50) {
				t.Errorf("added p50 %+v, want %+v", s.AddedP50, tt.added50)
			}
			if !near(s.AddedP99, tt.added99) {
				t.Errorf("added p99 %+v, want %+v", s.AddedP99, tt.added99)
			}
			if got := s.CPU[tt.cpuProc]; got != tt.cpuPerCall {
				t.Errorf("CPU of %s %.1f µs/call, want %.1f", tt.cpuProc, got, tt.cpuPerCall)
			}
		})
	}
	if rep.Failed() {
		t.Error("a report with figures for every run and no errors failed")
	}
	var md bytes.Buffer
	if err := rep.WriteMarkdown(&md, "pbac bench external"); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`\| gateway \| 200 \| 300 \| 0 \| 130\d \[90\d\.\.150\d\] \|`).MatchString(md.String()) {
		t.Errorf("the Markdown has no gateway row as expected:\n%s", md.String())
	}
}

// near tells whether two spreads agree within the histograms' precision
// (three significant digits: a few µs at these latencies).
func near(got, want *Spread) bool {
	if got == nil || want == nil {
		return got == want
	}
	close := func(a, b float64) bool { return math.Abs(a-b) <= 5 }
	return close(got.Median, want.Median) && close(got.Min, want.Min) && close(got.Max, want.Max)
}

func TestExternalFailed(t *testing.T) {
	ok := externalRun(TargetDirect, 1, 100, 100, 500, 900, nil)
	tests := []struct {
		name   string
		runs   []ExternalRun
		failed bool
	}{
		{"no runs", nil, true},
		{"every run has figures", []ExternalRun{ok}, false},
		{"more than 1% errors", []ExternalRun{ok, {Target: TargetGateway, Requests: 100, Errors: 2, P50: 900}}, true},
		{"a run without figures", []ExternalRun{ok, {Target: TargetNginx, Requests: 100}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := &ExternalReport{Runs: tt.runs}
			if got := rep.Failed(); got != tt.failed {
				t.Errorf("Failed() = %v, want %v", got, tt.failed)
			}
		})
	}
}

func TestSpliceSection(t *testing.T) {
	const start, end, heading = "<!-- s -->", "<!-- e -->", "## External"
	tests := []struct {
		name, doc, want string
		err             bool
	}{
		{"appended to a file without the section", "# Results\n\nbefore\n", "# Results\n\nbefore\n\n## External\n\n<!-- s -->\nnew\n<!-- e -->\n", false},
		{"an empty file gets the section alone", "", "## External\n\n<!-- s -->\nnew\n<!-- e -->\n", false},
		{"the section is replaced, the rest kept", "a\n<!-- s -->\nold\nolder\n<!-- e -->\nafter\n", "a\n<!-- s -->\nnew\n<!-- e -->\nafter\n", false},
		{"an end marker alone is refused", "a\n<!-- e -->\n", "", true},
		{"markers out of order are refused", "<!-- e -->\n<!-- s -->\n", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SpliceSection([]byte(tt.doc), start, end, heading, []byte("new\n"))
			if (err != nil) != tt.err {
				t.Fatalf("error %v, want error %v", err, tt.err)
			}
			if string(got) != tt.want {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

// TestSectionsPerBackend: a run on the light backend and one on the demo
// backend each rewrite their own section of the same file.
func TestSectionsPerBackend(t *testing.T) {
	if start, end := ExternalSectionMarkers(BackendDemo, false); start != ExternalSectionStart || end != ExternalSectionEnd {
		t.Fatalf("the demo backend's markers %q, %q are not ExternalSectionStart and End", start, end)
	}
	doc := []byte("# Benchmark results\n")
	for i, run := range []struct {
		backend, text string
		pinned        bool
	}{
		{"demo", "demo 1\n", false}, {"light", "light 1\n", false}, {"light", "pinned light 1\n", true}, {"demo", "pinned demo 1\n", true},
		{"demo", "demo 2\n", false}, {"light", "light 2\n", false}, {"light", "pinned light 2\n", true}, {"demo", "pinned demo 2\n", true},
	} {
		start, end := ExternalSectionMarkers(run.backend, run.pinned)
		var err error
		if doc, err = SpliceSection(doc, start, end, "## "+run.backend, []byte(run.text)); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
	}
	s := string(doc)
	for _, want := range []string{"\ndemo 2", "\nlight 2", "pinned light 2", "pinned demo 2"} {
		if !strings.Contains(s, want) {
			t.Errorf("no %q in:\n%s", want, s)
		}
	}
	for _, gone := range []string{"demo 1", "light 1"} { // pinned or not
		if strings.Contains(s, gone) {
			t.Errorf("%q was not replaced:\n%s", gone, s)
		}
	}
}

// TestWriteMarkdown: the Markdown table has as many cells in each row as
// in its header and separator, one CPU column per process, and the text
// names the targets that ran and the proxies' versions, with Caddy and
// without.
func TestWriteMarkdown(t *testing.T) {
	ms := func(v int) time.Duration { return time.Duration(v) * time.Millisecond }
	cpu := map[string]time.Duration{ProcBackend: ms(30), ProcNginx: ms(5), ProcGateway: ms(40)}
	for _, tt := range []struct {
		name    string
		targets []string
		caddy   string
		want    []string
	}{
		{"every target", Targets(), "2.6.2", []string{"(direct, nginx, caddy, gateway)", ", nginx/1.22.1, Caddy 2.6.2;"}},
		{"no caddy", []string{TargetDirect, TargetNginx, TargetGateway}, "", []string{"(direct, nginx, gateway)", ", nginx/1.22.1;"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rep := &ExternalReport{Scenario: ExternalScenario{Tool: "jira.search_issues", Rates: []float64{200}, Rounds: 1,
				Nginx: "nginx/1.22.1", Caddy: tt.caddy, LoadStart: "1 1 1", LoadEnd: "1 1 1"}}
			for i, target := range tt.targets {
				rep.Runs = append(rep.Runs, externalRun(target, 1, 200, 100, int64(500+100*i), 900, cpu))
			}
			rep.Compute()
			var b strings.Builder
			if err := rep.WriteMarkdown(&b, "pbac bench external"); err != nil {
				t.Fatal(err)
			}
			doc := b.String()
			for _, want := range tt.want {
				if !strings.Contains(doc, want) {
					t.Errorf("no %q in\n%s", want, doc)
				}
			}
			var rows []string
			for _, line := range strings.Split(doc, "\n") {
				if strings.HasPrefix(line, "|") {
					rows = append(rows, line)
				}
			}
			if len(rows) != 2+len(tt.targets) {
				t.Fatalf("%d table lines, want a header, a separator and %d rows:\n%s", len(rows), len(tt.targets), doc)
			}
			// target, rate, calls, errors, p50, p99, added p50, added p99,
			// one CPU column per process, connections.
			cells := 8 + len(Procs()) + 1
			for _, row := range rows {
				if n := strings.Count(row, "|") - 1; n != cells {
					t.Errorf("%d cells, want %d: %s", n, cells, row)
				}
			}
			for _, p := range Procs() {
				if p != ProcLoad && !strings.Contains(rows[0], " "+p+" |") {
					t.Errorf("the header has no CPU column for %s: %s", p, rows[0])
				}
			}
		})
	}
}
