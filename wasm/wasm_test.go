package wasm_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/open-policy-agent/opa/v1/compile"

	"github.com/pbac-gateway/pbac/wasm"
)

// compileRego compiles the Rego file at path to a Wasm module with the given
// entrypoints, using OPA's compiler as `pbac policy build` does.
func compileRego(t testing.TB, path string, entrypoints ...string) []byte {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	c := compile.New().
		WithTarget(compile.TargetWasm).
		WithEntrypoints(entrypoints...).
		WithFS(fstest.MapFS{"policy.rego": {Data: src}}).
		WithPaths(".").
		WithOutput(&buf)
	if err := c.Build(context.Background()); err != nil {
		t.Fatalf("compile %s: %v", path, err)
	}
	gz, err := gzip.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no policy.wasm in bundle: %v", err)
		}
		if strings.HasSuffix(h.Name, "policy.wasm") {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}

var testEntrypoints = []string{"t/allow", "t/result", "t/slow", "t/hog", "t/echo"}

func testModule(t testing.TB) []byte {
	return compileRego(t, "testdata/t.rego", testEntrypoints...)
}

func newEngine(t testing.TB, cfg wasm.Config) *wasm.Engine {
	t.Helper()
	e, err := wasm.NewEngine(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close(context.Background()) })
	return e
}

func load(t testing.TB, e *wasm.Engine, module []byte, data string) *wasm.Policy {
	t.Helper()
	var d []byte
	if data != "" {
		d = []byte(data)
	}
	p, err := e.Load(context.Background(), module, d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	return p
}

func TestEval(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t, wasm.NewConfig())
	p := load(t, e, testModule(t), `{"items": [1, 2, 3]}`)

	tests := []struct {
		name, entrypoint, input, want string
	}{
		{"allow for alice", "t/allow", `{"user": "alice"}`, `true`},
		{"deny for bob", "t/allow", `{"user": "bob"}`, `false`},
		{"missing input field defaults", "t/allow", `{}`, `false`},
		{"builtin bridged (sprintf) and data read", "t/result", `{"user": "bob"}`,
			`{"allow":false,"greeting":"hello bob","items":3}`},
		{"input round trips", "t/echo", `{"a":[1,"x",null,{"b":true}]}`, `{"a":[1,"x",null,{"b":true}]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := p.Eval(ctx, tc.entrypoint, []byte(tc.input))
			if err != nil {
				t.Fatal(err)
			}
			assertJSONEqual(t, got, tc.want)
		})
	}
	if got := p.Builtins(); len(got) != 1 || got[0] != "sprintf" {
		t.Errorf("Builtins() = %v, want [sprintf]", got)
	}
	if got := strings.Join(p.Entrypoints(), ","); got != "t/allow,t/echo,t/hog,t/result,t/slow" {
		t.Errorf("Entrypoints() = %s", got)
	}
}

func TestEvalErrors(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t, wasm.NewConfig().WithMaxInputBytes(1024))
	p := load(t, e, testModule(t), `{"items": []}`)
	tests := []struct {
		name, entrypoint, input string
		want                    error
	}{
		{"unknown entrypoint", "t/nope", `{}`, wasm.ErrUnknownEntrypoint},
		{"invalid JSON", "t/allow", `{"user":`, wasm.ErrInvalidInput},
		{"invalid UTF-8 in a string", "t/allow", "{\"user\":\"\xff\"}", wasm.ErrInvalidInput},
		{"oversized input", "t/allow", `{"x":"` + strings.Repeat("a", 2000) + `"}`, wasm.ErrInvalidInput},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := p.Eval(ctx, tc.entrypoint, []byte(tc.input))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	// The policy keeps working after rejected inputs.
	got, err := p.Eval(ctx, "t/allow", []byte(`{"user":"alice"}`))
	if err != nil {
		t.Fatal(err)
	}
	assertJSONEqual(t, got, `true`)
}

func TestLoadRejects(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t, wasm.NewConfig())
	module := testModule(t)
	tests := []struct {
		name         string
		module, data []byte
		want         error
	}{
		{"not wasm", []byte("not a module"), nil, wasm.ErrInvalidPolicy},
		{"truncated module", module[:len(module)/2], nil, wasm.ErrInvalidPolicy},
		{"data not JSON", module, []byte(`{"items":`), wasm.ErrInvalidData},
		{"network builtin", compileRego(t, "testdata/http.rego", "h/allow"), nil, wasm.ErrUnsupportedBuiltin},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := e.Load(ctx, tc.module, tc.data)
			if err == nil {
				_ = p.Close(ctx)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestDeadlineStopsRunawayPolicy(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t, wasm.NewConfig().WithEvalTimeout(50*time.Millisecond).WithMaxInstances(1))
	data := bigData()
	p := load(t, e, testModule(t), string(data))

	start := time.Now()
	_, err := p.Eval(ctx, "t/slow", []byte(`{}`))
	if !errors.Is(err, wasm.ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Fatalf("runaway evaluation was not stopped promptly: %v", elapsed)
	}
	// The pool replaces the dead instance; the next decision works.
	got, err := p.Eval(ctx, "t/allow", []byte(`{"user":"alice"}`))
	if err != nil {
		t.Fatal(err)
	}
	assertJSONEqual(t, got, `true`)
}

func TestContextDeadlineIsHonoured(t *testing.T) {
	e := newEngine(t, wasm.NewConfig().WithEvalTimeout(10*time.Second).WithMaxInstances(1))
	data := bigData()
	p := load(t, e, testModule(t), string(data))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := p.Eval(ctx, "t/slow", []byte(`{}`)); !errors.Is(err, wasm.ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	// The same deadline given as a value, beside a context without one.
	start := time.Now()
	if _, err := p.EvalBy(context.Background(), start.Add(50*time.Millisecond), "t/slow", []byte(`{}`)); !errors.Is(err, wasm.ErrTimeout) {
		t.Fatalf("EvalBy: err = %v, want ErrTimeout", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("EvalBy stopped after %s, its deadline was 50ms", took)
	}
	// A deadline already past: no evaluation.
	if _, err := p.EvalBy(context.Background(), time.Now().Add(-time.Millisecond), "t/allow", []byte(`{"user":"alice"}`)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("EvalBy past its deadline: err = %v, want DeadlineExceeded", err)
	}
}

func TestMemoryCap(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t, wasm.NewConfig().WithMaxMemoryPages(64).WithEvalTimeout(20*time.Second))
	p := load(t, e, testModule(t), `{"items": []}`)
	_, err := p.Eval(ctx, "t/hog", []byte(`{}`))
	if !errors.Is(err, wasm.ErrAborted) {
		t.Fatalf("err = %v, want ErrAborted (memory cap)", err)
	}
	got, err := p.Eval(ctx, "t/allow", []byte(`{"user":"alice"}`))
	if err != nil {
		t.Fatal(err)
	}
	assertJSONEqual(t, got, `true`)
}

func TestWithDataSharesModule(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t, wasm.NewConfig())
	p1 := load(t, e, testModule(t), `{"items": [1]}`)
	p2, err := p1.WithData(ctx, []byte(`{"items": [1, 2, 3, 4]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close(ctx)
	if p1.ModuleHash() != p2.ModuleHash() {
		t.Fatal("module hash changed on a data-only update")
	}
	for _, tc := range []struct {
		p    *wasm.Policy
		want string
	}{{p1, `1`}, {p2, `4`}} {
		got, err := tc.p.Eval(ctx, "t/result", []byte(`{"user":"x"}`))
		if err != nil {
			t.Fatal(err)
		}
		var r struct{ Items json.RawMessage }
		if err := json.Unmarshal(got, &r); err != nil {
			t.Fatal(err)
		}
		assertJSONEqual(t, r.Items, tc.want)
	}
	// Closing the first policy leaves the shared module usable by the second.
	if err := p1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := p2.Eval(ctx, "t/allow", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := p1.Eval(ctx, "t/allow", []byte(`{}`)); !errors.Is(err, wasm.ErrClosed) {
		t.Fatalf("eval on closed policy: err = %v, want ErrClosed", err)
	}
}

func TestConcurrentEval(t *testing.T) {
	ctx := context.Background()
	// Generous deadlines: this is about sharing instances, and on a loaded
	// machine under -race an evaluation can overrun the default 100 ms.
	e := newEngine(t, wasm.NewConfig().WithMaxInstances(4).WithEvalTimeout(30*time.Second))
	p := load(t, e, testModule(t), `{"items": [1, 2]}`)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for g := range 32 {
		wg.Go(func() {
			for i := range 200 {
				user := fmt.Sprintf("u%d-%d", g, i)
				got, err := p.Eval(ctx, "t/result", fmt.Appendf(nil, `{"user":%q}`, user))
				if err != nil {
					errs <- err
					return
				}
				want := fmt.Sprintf(`{"allow":false,"greeting":"hello %s","items":2}`, user)
				if !jsonEqual(got, []byte(want)) {
					errs <- fmt.Errorf("got %s, want %s", got, want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestCompilationCacheOnDisk(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	module := testModule(t)
	for i := range 2 {
		e, err := wasm.NewEngine(ctx, wasm.NewConfig().WithCacheDir(dir))
		if err != nil {
			t.Fatal(err)
		}
		p, err := e.Load(ctx, module, nil)
		if err != nil {
			t.Fatalf("load %d: %v", i, err)
		}
		if _, err := p.Eval(ctx, "t/allow", []byte(`{"user":"alice"}`)); err != nil {
			t.Fatal(err)
		}
		_ = p.Close(ctx)
		_ = e.Close(ctx)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) == 0 {
		t.Fatalf("cache dir is empty after two engines: %v", err)
	}
}

// bigData makes data for the runaway entrypoint: 4000^3 iterations.
func bigData() []byte {
	big := map[string]string{}
	for i := range 4000 {
		big[fmt.Sprintf("k%d", i)] = "v"
	}
	data, _ := json.Marshal(map[string]any{"big": big, "items": []int{}})
	return data
}

func assertJSONEqual(t testing.TB, got []byte, want string) {
	t.Helper()
	if !jsonEqual(got, []byte(want)) {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return bytes.Equal(ja, jb)
}

// TestSurrogatesReadAsGoReadsThem: the module reads an escaped surrogate
// pair as its character and an unpaired surrogate as U+FFFD, as Go's
// decoder (OPA's Go evaluator's, the gateway's, a backend's) does, whether
// the input comes whole or in parts. OPA's Wasm parser alone reads
// "\udb40\udc01" (U+E0001) as U+D0001 and aborts on an unpaired one.
func TestSurrogatesReadAsGoReadsThem(t *testing.T) {
	ctx := context.Background()
	p := load(t, newEngine(t, wasm.NewConfig()), testModule(t), `{}`)
	for _, s := range []string{`"\ud83d\ude00"`, `"/public/\udb40\udc01"`, `"\ud840\udc00\uDBFF\uDFFF"`, `"\ud800"`, `"a\udc00\ud800b"`,
		`"\ud800\ud800\udc00"`, `"\\ud800\\udc00"`} {
		in := []byte(`{"v":` + s + `,"k` + s[1:len(s)-1] + `":1}`)
		out, err := p.Eval(ctx, "t/echo", in)
		if err != nil {
			t.Fatalf("Eval %s: %v", in, err)
		}
		if !jsonEqual(out, in) {
			t.Errorf("Eval %s read %s, not what Go reads", in, out)
		}
		out, err = p.EvalShared(ctx, time.Time{}, "t/echo", []wasm.Member{{Name: "shared", Value: []byte(s)}}, []byte(`{"rest":`+s+`}`))
		if err != nil {
			t.Fatalf("EvalShared %s: %v", s, err)
		}
		if want := []byte(`{"rest":` + s + `,"shared":` + s + `}`); !jsonEqual(out, want) {
			t.Errorf("EvalShared %s read %s, not what Go reads of %s", s, out, want)
		}
	}
}

// TestDataSurrogatesReadAsGoReadsThem: policy data with escaped surrogates
// (as Python's json.dumps writes non-ASCII) is read as Go reads it, as an
// input is.
func TestDataSurrogatesReadAsGoReadsThem(t *testing.T) {
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "d.rego")
	if err := os.WriteFile(src, []byte("package d\n\nx := data.x\n\neq if input.v == data.x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	module := compileRego(t, src, "d/x", "d/eq")
	value := `"\udb40\udc01 \ud800\u0041 \ud800\ud800 \udc00\ud800 \ud83d\ude00"`
	p := load(t, newEngine(t, wasm.NewConfig()), module, `{"x":`+value+`}`)
	var want string
	if err := json.Unmarshal([]byte(value), &want); err != nil {
		t.Fatal(err)
	}
	out, err := p.Eval(ctx, "d/x", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	var got string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("d/x: %s", out)
	}
	if got != want {
		t.Errorf("data.x reads %q, Go reads %q", got, want)
	}
	in, _ := json.Marshal(map[string]string{"v": want})
	if out, err := p.Eval(ctx, "d/eq", in); err != nil || string(out) != "true" {
		t.Errorf("input.v == data.x for the same string: %s, %v", out, err)
	}
	if !bytes.Equal(p.Data(), []byte(`{"x":`+value+`}`)) {
		t.Errorf("Data() = %s, want the data as given", p.Data())
	}
}
