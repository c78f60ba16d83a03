package stack

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/pbac-gateway/pbac/admin"
	"github.com/pbac-gateway/pbac/asrv"
)

// adminClient shows a client as the admin API lists it: identity,
// verified claims, what it says of itself (whether it would act for no
// person), its review and a person's vouch, never a secret
// or a token hash.
func adminClient(c *asrv.Client, status string, noTokenYet bool) admin.Client {
	out := admin.Client{ID: c.ID, Name: c.Name, Agent: c.Agent, GrantTypes: c.GrantTypes,
		TokenEndpointAuthMethod: c.TokenEndpointAuthMethod, CreatedAt: c.CreatedAt, Status: status,
		RedirectURIs: c.RedirectURIs, ApplicationType: c.ApplicationType, ClientURI: c.URI,
		ClaimedSoftwareID: c.ClaimedSoftwareID, NoTokenYet: noTokenYet, ActsForNoPerson: c.ActsForNoPerson()}
	if out.RedirectURIs == nil {
		out.RedirectURIs = []string{}
	}
	if r := c.Review; r != nil {
		out.Review = &admin.ClientReview{Status: r.Status, Provider: r.Provider, By: r.By, At: r.At, Comment: r.Comment, Machine: r.Machine}
	}
	if v := c.Vouch; v != nil {
		out.Vouch = &admin.ClientVouch{Subject: v.Subject, Provider: v.Provider, At: v.At}
	}
	return out
}

// listClientsForReview is the admin API's and the dashboard's client list,
// with each client's review status as the AS sees it.
func listClientsForReview(as *asrv.Server) func(r *http.Request) ([]admin.Client, error) {
	return func(r *http.Request) ([]admin.Client, error) {
		list, err := as.ClientsForReview(r.Context())
		if err != nil {
			return nil, err
		}
		out := make([]admin.Client, 0, len(list))
		for _, e := range list {
			out = append(out, adminClient(e.Client, e.Status, e.NoTokenYet))
		}
		return out, nil
	}
}

// reviewClient is the admin API's and the dashboard's review of a client,
// on the AS, its errors as the admin package names them.
func reviewClient(as *asrv.Server) func(r *http.Request, id string, d admin.ClientDecision) (admin.Client, error) {
	return func(r *http.Request, id string, d admin.ClientDecision) (admin.Client, error) {
		c, err := as.ReviewClient(r.Context(), id, asrv.ClientReview{Status: d.Status, Provider: d.Provider, By: d.By, Comment: d.Comment, Machine: d.Machine})
		switch {
		case errors.Is(err, asrv.ErrUnknownClient):
			return admin.Client{}, fmt.Errorf("%w: %w", admin.ErrNoSuchClient, err)
		case errors.Is(err, asrv.ErrNotReviewable):
			return admin.Client{}, fmt.Errorf("%w: %w", admin.ErrNotReviewable, err)
		case errors.Is(err, asrv.ErrInvalidReview):
			return admin.Client{}, fmt.Errorf("%w: %w", admin.ErrBadReview, err)
		case err != nil:
			return admin.Client{}, err
		}
		return adminClient(c, c.Review.Status, false), nil
	}
}
