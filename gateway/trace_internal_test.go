package gateway

import (
	"bytes"
	"context"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/pbac-gateway/pbac/jsonrpc"
)

const testParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func tracedContext(t testing.TB, g *Gateway, carrier map[string]string) context.Context {
	t.Helper()
	ctx := g.propagator.Extract(context.Background(), propagation.MapCarrier(carrier))
	if !trace.SpanContextFromContext(ctx).IsValid() {
		t.Fatalf("no span context from %v", carrier)
	}
	return ctx
}

// TestWithTraceMeta: the forwarded body gets the span's trace context in
// params._meta — replacing the caller's keys, keeping every other byte
// of the message — or stays as it was when there is nowhere to put it.
func TestWithTraceMeta(t *testing.T) {
	_, prop := defaultTracing()
	g := &Gateway{propagator: prop}
	ctx := tracedContext(t, g, map[string]string{"traceparent": testParent, "baggage": "k=v"})
	const meta = `"traceparent":"` + testParent + `","baggage":"k=v"`
	parse := func(body string) *jsonrpc.Message {
		t.Helper()
		m, err := jsonrpc.Parse([]byte(body), 64)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	for _, tc := range []struct{ name, in, want string }{
		{"no _meta", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":1}}}`,
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{` + meta + `},"name":"x","arguments":{"a":1}}}`},
		{"empty params", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{}}`,
			`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{` + meta + `}}}`},
		{"empty params with space", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{ }}`,
			`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{` + meta + `} }}`},
		{"the caller's keys replaced, others kept", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":5,"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","tracestate":"a=b","x\"y":1}}}`,
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{` + meta + `,"progressToken":5,"x\"y":1}}}`},
		{"other members byte for byte", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{ "\u0041" : [1, 2] ,"h":"a<b&c","TraceParent":"x","BAGGAGE":"y"}}}`,
			`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{` + meta + `,"\u0041" : [1, 2],"h":"a<b&c"}}}`},
		{"a response", `{"jsonrpc":"2.0","id":1,"result":{},"params":{}}`, `{"jsonrpc":"2.0","id":1,"result":{},"params":{}}`},
		{"no params", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, `{"jsonrpc":"2.0","id":1,"method":"ping"}`},
		{"_meta not an object", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":null}}`,
			`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":null}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := g.withTraceMeta(ctx, parse(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
	// Without a trace context there is nothing to write.
	in := []byte(`{"jsonrpc":"2.0","id":1,"method":"ping","params":{}}`)
	if got, err := g.withTraceMeta(context.Background(), parse(string(in))); err != nil || !bytes.Equal(got, in) {
		t.Errorf("without a context: %s %v", got, err)
	}
}

// FuzzWithTraceMeta: for any message the parser accepts, the forwarded
// body parses too, carries the span's traceparent in _meta, and differs
// from the message only there: every other member of params (arguments
// byte for byte) and of the message is what it was.
func FuzzWithTraceMeta(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":1}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"traceparent":"bad","progressToken":"p"},"name":"x"}}`,
		`{"jsonrpc":"2.0","id":"a","method":"ping","params":{}}`,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		` {"params":{"_meta":{"\u0074raceparent":1}},"jsonrpc":"2.0","id":1,"method":"m"} `,
	} {
		f.Add([]byte(s))
	}
	_, prop := defaultTracing()
	g := &Gateway{propagator: prop}
	ctx := tracedContext(f, g, map[string]string{"traceparent": testParent})
	f.Fuzz(func(t *testing.T, body []byte) {
		msg, err := jsonrpc.Parse(body, 64)
		if err != nil {
			return
		}
		out, err := g.withTraceMeta(ctx, msg)
		if err != nil {
			t.Fatalf("a parsed message failed: %v", err)
		}
		fwd, err := jsonrpc.Parse(out, 65)
		if err != nil {
			t.Fatalf("the forwarded body does not parse: %v\n%s", err, out)
		}
		if fwd.Method != msg.Method || !bytes.Equal(fwd.ID, msg.ID) || !bytes.Equal(fwd.Arguments, msg.Arguments) ||
			fwd.Name != msg.Name || fwd.URI != msg.URI || !bytes.Equal(fwd.ProgressToken, msg.ProgressToken) {
			t.Fatalf("the forwarded message differs:\n%s\n%s", body, out)
		}
		meta, metaIsObject := msg.Params["_meta"]
		metaIsObject = metaIsObject && len(meta) > 0 && meta[0] == '{'
		switch {
		case msg.IsResponse, msg.Params == nil, msg.Params["_meta"] != nil && !metaIsObject:
			if !bytes.Equal(out, msg.Raw) {
				t.Fatalf("changed a body with nowhere to put the context:\n%s\n%s", body, out)
			}
			return
		}
		if fwd.TraceParent != testParent {
			t.Fatalf("_meta.traceparent %q, want %q:\n%s", fwd.TraceParent, testParent, out)
		}
		for k, v := range msg.Params {
			if k != "_meta" && !bytes.Equal(fwd.Params[k], v) {
				t.Fatalf("params.%s changed: %s → %s", k, v, fwd.Params[k])
			}
		}
		if len(fwd.Params) != len(msg.Params)+btoi(msg.Params["_meta"] == nil) {
			t.Fatalf("params members %d → %d", len(msg.Params), len(fwd.Params))
		}
		if metaIsObject {
			before, err := jsonrpc.Members(meta)
			if err != nil {
				t.Fatal(err)
			}
			after, err := jsonrpc.Members(fwd.Params["_meta"])
			if err != nil {
				t.Fatal(err)
			}
			kept := map[string][]byte{}
			for _, m := range after {
				if isTraceKey(m.Key) && m.Key != "traceparent" && m.Key != "tracestate" && m.Key != "baggage" {
					t.Fatalf("a spelling of a trace key is left: %q in %s", m.Key, out)
				}
				kept[m.Key] = m.Whole
			}
			for _, m := range before {
				if !isTraceKey(m.Key) && !bytes.Equal(kept[m.Key], m.Whole) {
					t.Fatalf("_meta member %q changed: %s → %s", m.Key, m.Whole, kept[m.Key])
				}
			}
		}
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
