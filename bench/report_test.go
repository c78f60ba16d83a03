package bench

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// result builds a Result whose latencies (µs) are base + i%spread for n
// calls, with one slow call of max µs.
func result(n int, base, spread, slow int64, errs int64) *Result {
	r := &Result{Latency: newHistogram(), Service: newHistogram(), ErrorKinds: map[string]int64{},
		Requests: int64(n) + errs, Errors: errs, Elapsed: 20 * time.Second, Rate: 1000, CPU: time.Duration(n) * 200 * time.Microsecond}
	for i := range int64(n - 1) {
		v := (base + i%spread) * 1000
		_ = r.Latency.RecordValue(v)
		_ = r.Service.RecordValue(v - 20_000)
	}
	_ = r.Latency.RecordValue(slow * 1000)
	_ = r.Service.RecordValue(slow * 1000)
	if errs > 0 {
		r.ErrorKinds["HTTP 502: bad gateway"] = errs
	}
	return r
}

func goldenReport() *Report {
	rep := &Report{Scenario: Scenario{Loop: LoopOpen, Tool: "jira.search_issues", ArgsBytes: 15, Rate: 1000,
		DurationS: 20, WarmupS: 3, Concurrency: 8, CPUs: 2, GoVersion: "go1.26",
		CPUScope: "this process: load generator, backend, gateway and AS"}}
	rep.Modes = append(rep.Modes,
		NewModeReport(ModeDirect, result(20000, 300, 100, 4000, 0), 0),
		NewModeReport(ModeProxy, result(20000, 380, 100, 5000, 0), 0),
		NewModeReport(ModeGateway, result(20000, 600, 150, 9000, 3), 0),
		FailedMode(ModeOPASidecar, os.ErrNotExist),
	)
	rep.Compute()
	return rep
}

// TestReportGolden pins the JSON shape scripts read and the table people
// read. PBAC_UPDATE_GOLDEN=1 rewrites the files.
func TestReportGolden(t *testing.T) {
	rep := goldenReport()
	js, err := rep.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string][]byte{"report.json": js, "report.txt": table.Bytes()} {
		path := filepath.Join("testdata", name)
		if os.Getenv("PBAC_UPDATE_GOLDEN") == "1" {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the golden file (PBAC_UPDATE_GOLDEN=1 to accept):\n%s", name, got)
		}
	}

	// The fields scripts rely on, whatever else the report carries.
	var shape struct {
		Modes []struct {
			Name     string   `json:"name"`
			Requests *int64   `json:"requests"`
			Errors   *int64   `json:"errors"`
			P50      *float64 `json:"p50_us"`
			P90      *float64 `json:"p90_us"`
			P99      *float64 `json:"p99_us"`
			Max      *float64 `json:"max_us"`
		} `json:"modes"`
		AddedP50 *float64 `json:"added_p50_us"`
		AddedP99 *float64 `json:"added_p99_us"`
	}
	if err := json.Unmarshal(js, &shape); err != nil {
		t.Fatal(err)
	}
	if len(shape.Modes) != 4 || shape.AddedP50 == nil || shape.AddedP99 == nil {
		t.Fatalf("shape: %s", js)
	}
	for i, name := range Modes() {
		m := shape.Modes[i]
		if m.Name != name || m.Requests == nil || m.Errors == nil || m.P50 == nil || m.P90 == nil || m.P99 == nil || m.Max == nil {
			t.Fatalf("mode %d: %+v", i, m)
		}
	}
	// added = gateway − direct.
	if d := *shape.AddedP50 - (*shape.Modes[2].P50 - *shape.Modes[0].P50); d > 0.05 || d < -0.05 {
		t.Fatalf("added_p50_us %v is not gateway − direct", *shape.AddedP50)
	}
	if !rep.Failed() {
		t.Fatal("a mode that did not run must fail the report")
	}
}

func TestReportWithoutDirectHasNoAddedLatency(t *testing.T) {
	rep := &Report{Scenario: Scenario{Loop: LoopClosed}, Modes: []ModeReport{NewModeReport(ModeGateway, result(100, 500, 10, 900, 0), 0)}}
	rep.Compute()
	js, _ := rep.JSON()
	var m map[string]any
	_ = json.Unmarshal(js, &m)
	if v, ok := m["added_p50_us"]; !ok || v != nil {
		t.Fatalf("added_p50_us = %v (present %v), want null", v, ok)
	}
	if rep.Failed() {
		t.Fatal("a clean run failed")
	}
}

func TestReportSaysWhenAModeDidNotKeepUp(t *testing.T) {
	rep := &Report{Scenario: Scenario{Loop: LoopOpen, Rate: 1000, Concurrency: 8}, Modes: []ModeReport{
		NewModeReport(ModeDirect, result(20000, 300, 100, 4000, 0), 0),
		NewModeReport(ModeGateway, result(20000, 600, 150, 9000, 0), 0),
		// Half the rate completed: the calls queued.
		NewModeReport(ModeOPASidecar, result(10000, 900_000, 1000, 1_500_000, 0), 0),
	}}
	rep.Compute()
	if rep.Modes[1].Overloaded || !rep.Modes[2].Overloaded {
		t.Fatalf("overloaded: gateway %v, opa-sidecar %v", rep.Modes[1].Overloaded, rep.Modes[2].Overloaded)
	}
	var b bytes.Buffer
	_ = rep.WriteTable(&b)
	if !bytes.Contains(b.Bytes(), []byte("OPA sidecar over HTTP did not keep up with 1000 calls/s on 8 connections (500/s)")) {
		t.Fatalf("the table does not say the sidecar did not keep up:\n%s", b.String())
	}
}
