package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/jsonrpc"
)

// methodOf is the method policy is asked about for a message: its JSON-RPC
// method, or "response" for the client's answer to a server request.
func methodOf(msg *jsonrpc.Message) string {
	if msg.IsResponse {
		return anonymousResponse
	}
	return msg.Method
}

// askMethod asks pbac/method whether the caller with a token may make a
// request that is not a call: method on backend ("" for the aggregated
// server). An error is a decision that could not be made.
func (g *Gateway) askMethod(ctx context.Context, backend string, cl *caller, method string) (contract.Decision, time.Duration, error) {
	in := cl.input(backend, method)
	raw, err := contract.MarshalInput(&in)
	if err != nil {
		return contract.Decision{}, 0, fmt.Errorf("encode the pbac/method input: %w", err)
	}
	start := time.Now()
	d, err := g.cfg.Policy.Decide(ctx, contract.Method, raw)
	took := time.Since(start)
	g.metrics.stage("policy", took)
	if err != nil {
		return contract.Decision{}, took, fmt.Errorf("decide %s on %q: %w", method, backend, err)
	}
	return d, took, nil
}

// decideMethod decides a request that is not a call (pbac/method) and fills
// rec with the decision. A caller without a token has been decided by
// pbac/anonymous already. On deny, or when the policy cannot decide, it has
// answered 403, finished rec, and returns false.
func (g *Gateway) decideMethod(c *fiber.Ctx, backend string, cl *caller, method string, id json.RawMessage, rec *audit.Record, start time.Time) (bool, error) {
	if cl.anonymous {
		return true, nil
	}
	d, took, err := g.askMethod(c.UserContext(), backend, cl, method)
	rec.LatencyMicros["policy"] = took.Microseconds()
	if err != nil {
		// A decision that cannot be made is a deny.
		rec.Decision, rec.Reasons, rec.Status = "error", []string{"policy could not decide: " + err.Error()}, fiber.StatusForbidden
		g.log.Error("policy error", "request_id", rec.RequestID, "err", err)
		g.finish(rec, start)
		return false, g.reply(c, fiber.StatusForbidden, jsonrpc.ErrorBody(id, jsonrpc.CodeDenied, "denied: the policy could not decide",
			map[string]any{"request_id": rec.RequestID}))
	}
	rec.PolicyVersion, rec.Reasons = d.Version, d.Reasons
	if d.Allow {
		rec.Decision = "allow"
		return true, nil
	}
	rec.Decision, rec.Status = "deny", fiber.StatusForbidden
	g.finish(rec, start)
	var extra struct {
		PublicReasons []string `json:"public_reasons"`
	}
	_ = d.Decode(&extra)
	text, data := publicDenial(extra.PublicReasons, rec.RequestID, d.Version)
	return false, g.reply(c, fiber.StatusForbidden, jsonrpc.ErrorBody(id, jsonrpc.CodeDenied, text, data))
}
