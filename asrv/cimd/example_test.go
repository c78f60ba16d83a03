package cimd_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/pbac-gateway/pbac/asrv/cimd"
)

// An air-gapped authorization server pins the documents of the clients it
// admits and fetches nothing; any other URL client id is refused.
func ExampleResolver_pinned() {
	const id = "https://agent.example/oauth/client.json"
	r, err := cimd.New(cimd.Config{
		Fetch: false,
		Pinned: map[string][]byte{id: []byte(`{
			"client_id": "https://agent.example/oauth/client.json",
			"client_name": "Example Agent",
			"redirect_uris": ["http://127.0.0.1/callback"],
			"grant_types": ["authorization_code", "refresh_token"],
			"token_endpoint_auth_method": "none"}`)},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()
	ctx := context.Background()

	d, err := r.Resolve(ctx, id)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(d.ClientName, d.Origin, d.Pinned)
	fmt.Println(d.MatchRedirectURI("http://127.0.0.1:53124/callback"))

	_, err = r.Resolve(ctx, "https://other.example/client.json")
	fmt.Println(errors.Is(err, cimd.ErrNotPinned), errors.Is(err, cimd.ErrNotAllowed))
	// Output:
	// Example Agent https://agent.example true
	// http://127.0.0.1/callback true
	// true true
}
