package host

import (
	"context"

	"github.com/pbac-gateway/pbac/asrv"
)

// ASDecider lets the authorization server ask the gateway's policy (the
// plugins registry, when the AS runs in process) through its own small
// interface.
func ASDecider(d Decider) asrv.Decider {
	return asrv.DeciderFunc(func(ctx context.Context, ep string, input []byte) (asrv.Decision, error) {
		dec, err := d.Decide(ctx, ep, input)
		if err != nil {
			return asrv.Decision{}, err
		}
		return asrv.Decision{Allow: dec.Allow, Reasons: dec.Reasons, Result: dec.Result}, nil
	})
}
