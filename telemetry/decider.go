package telemetry

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/pbac-gateway/pbac/contract"
)

// The attributes of a policy decision's span.
const (
	AttrEntrypoint      = attribute.Key("pbac.policy.entrypoint")
	AttrPolicyVersion   = attribute.Key("pbac.policy.version")
	AttrContractVersion = attribute.Key("pbac.policy.contract_version")
	AttrAllow           = attribute.Key("pbac.decision.allow")
	AttrReasons         = attribute.Key("pbac.decision.reasons")
)

// Decider traces every decision of inner as a span "pbac.decide
// <entrypoint>": the entrypoint, the policy version that decided, allow or
// deny and the policy's reasons, under the request's span (a decision
// asked for outside any traced request starts no trace). A decision that
// could not be made is an error span. Off, it is inner itself.
func (t *Telemetry) Decider(inner contract.Decider) contract.Decider {
	if !t.Enabled() {
		return inner
	}
	d := &tracedDecider{inner: inner, tracer: t.Tracer("plugins")}
	if ap, ok := inner.(activePolicy); ok {
		// The gateway reads the active version's data (its catalogue's
		// argument rules) through the decider: that must not be lost.
		a := &tracedActiveDecider{tracedDecider: d, active: ap}
		if sd, ok := inner.(contract.SharedDecider); ok {
			// Nor may the input in two parts (the registry's).
			return &tracedSharedDecider{tracedActiveDecider: a, shared: sd}
		}
		return a
	}
	return d
}

// tracedSharedDecider traces a registry's decisions on inputs in two parts
// as it traces the others.
type tracedSharedDecider struct {
	*tracedActiveDecider
	shared contract.SharedDecider
}

func (d *tracedSharedDecider) DecideShared(ctx context.Context, entrypoint contract.Entrypoint, shared []contract.Member, rest []byte) (contract.Decision, error) {
	return d.traced(ctx, entrypoint, func(ctx context.Context) (contract.Decision, error) {
		return d.shared.DecideShared(ctx, entrypoint, shared, rest)
	})
}

// activePolicy is what a registry tells of its active version.
type activePolicy interface {
	ActivePolicy() (version string, data *contract.Data, err error)
}

type tracedActiveDecider struct {
	*tracedDecider
	active activePolicy
}

func (d *tracedActiveDecider) ActivePolicy() (string, *contract.Data, error) {
	return d.active.ActivePolicy()
}

type tracedDecider struct {
	inner  contract.Decider
	tracer trace.Tracer
}

func (d *tracedDecider) Decide(ctx context.Context, entrypoint contract.Entrypoint, input []byte) (contract.Decision, error) {
	return d.traced(ctx, entrypoint, func(ctx context.Context) (contract.Decision, error) {
		return d.inner.Decide(ctx, entrypoint, input)
	})
}

// traced makes a decision with decide in a span of its own.
func (d *tracedDecider) traced(ctx context.Context, entrypoint contract.Entrypoint, decide func(context.Context) (contract.Decision, error)) (contract.Decision, error) {
	// A decision is a step of a traced request, never a trace of its own
	// (the background work that asks policy starts none).
	if !trace.SpanFromContext(ctx).IsRecording() {
		return decide(ctx)
	}
	ctx, span := d.tracer.Start(ctx, "pbac.decide "+string(entrypoint),
		trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(AttrEntrypoint.String(string(entrypoint))))
	defer span.End()
	dec, err := decide(ctx)
	if err != nil {
		span.RecordError(err)
		kind := "error"
		if errors.Is(err, contract.ErrUndecided) {
			kind = "undecided"
		}
		span.SetAttributes(attribute.String("error.type", kind))
		span.SetStatus(codes.Error, "the policy could not decide")
		return dec, err
	}
	span.SetAttributes(
		AttrPolicyVersion.String(dec.Version),
		AttrContractVersion.Int(dec.ContractVersion),
		AttrAllow.Bool(dec.Allow),
	)
	if len(dec.Reasons) > 0 {
		span.SetAttributes(AttrReasons.StringSlice(dec.Reasons))
	}
	return dec, nil
}
