package contract

import (
	"encoding/json"
	"slices"
	"strings"
)

// fallbackMethods are the only methods the built-in pbac/method fallback
// allows: what an MCP session needs to start, stay alive and list tools
// (tools/list is filtered by pbac/list besides), and the transport's
// bodiless GET (the server's stream) and DELETE (ending the session).
// Everything else — the resource and prompt lists, completion, logging,
// the client's answers to server requests (sampling, elicitation) — needs
// a policy that decides it.
var fallbackMethods = []string{
	"initialize", "notifications/initialized", "ping", "notifications/cancelled",
	"notifications/progress", "tools/list", "GET", "DELETE",
}

// Fallback decides ep on input (an Input, JSON-encoded) for a bundle that
// does not export ep because its contract version predates it (Optional):
// the result object, as the entrypoint would return it. ok is false when
// ep has no fallback; every entrypoint introduced after version 1 has one.
//
// pbac/method's fallback allows a caller with a token only the methods a
// session cannot do without (initialize, ping, the lifecycle
// notifications, tools/list, GET, DELETE), and only on a backend its token
// holds a scope for ("<backend>:<access>"; any scope on the aggregated
// server); it denies every other method. Before pbac/method existed the
// gateway decided no method but the calls; this keeps such a bundle usable
// without letting through what the shipped pbac/method refuses.
func Fallback(ep Entrypoint, input []byte) (result []byte, ok bool) {
	switch ep {
	case Method:
		return methodFallback(input), true
	}
	return nil, false
}

func methodFallback(input []byte) []byte {
	deny := func(reason string) []byte {
		// The reasons are about the method, the token and the bundle's
		// age: the agent may be told them.
		b, _ := json.Marshal(map[string]any{"allow": false, "reasons": []string{reason}, "public_reasons": []string{reason}})
		return b
	}
	var in Input
	if err := json.Unmarshal(input, &in); err != nil {
		return deny("the input is not a policy input")
	}
	m := in.Request.Method
	switch {
	case in.Token == nil:
		return deny("a token is required")
	case in.Now == 0:
		return deny("the decision time is missing")
	case m == "":
		return deny("no method named")
	case !slices.Contains(fallbackMethods, m):
		return deny("method " + m + " is not allowed: the active policy predates pbac/method (contract version 1), " +
			"and without it only " + strings.Join(fallbackMethods, ", ") + " are")
	case !slices.ContainsFunc(in.Token.Scp, func(sc string) bool {
		res, _, ok := strings.Cut(sc, ":")
		return ok && (in.Request.Backend == "" || res == in.Request.Backend)
	}):
		return deny("this token holds no scope on " + orAggregated(in.Request.Backend) +
			" (the built-in pbac/method fallback: the active policy predates pbac/method)")
	}
	b, _ := json.Marshal(map[string]any{"allow": true, "reasons": []string{
		"method " + m + " is allowed by the built-in pbac/method fallback (the active policy predates pbac/method)"}})
	return b
}

func orAggregated(backend string) string {
	if backend == "" {
		return "any backend"
	}
	return backend
}
