package asrv

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	"github.com/pbac-gateway/pbac/contract"
)

// TestResultDecoderAgreesWithUnmarshal: the remembered decoding of a
// result is what json.Unmarshal gives, however often asked and whatever a
// caller did to an earlier copy; a malformed result is an error every
// time; and the decoder stays bounded.
func TestResultDecoderAgreesWithUnmarshal(t *testing.T) {
	results := []string{
		`{"allow":true,"reasons":["token active for tier developer"],"jit_single_use":false,"tier":"developer","scopes":["jira:write","slack:read"]}`,
		`{"allow":true,"tier":"ci_agent","jit_single_use":true,"scopes":[]}`,
		`{"allow":false,"reasons":["token expired"]}`,
		`{"allow":true,"tier":"developer","scopes":"jira:write"}`,
		`{"allow":true,"tier":7}`,
		``,
	}
	var c resultDecoder
	for round := range 3 {
		for _, raw := range results {
			got, err := c.decode([]byte(raw))
			var want contract.IntrospectResult
			var werr error
			if raw != "" {
				if werr = json.Unmarshal([]byte(raw), &want); werr != nil {
					want = contract.IntrospectResult{} // an error decodes to nothing
				}
			}
			if (err != nil) != (werr != nil) || !reflect.DeepEqual(got, want) {
				t.Fatalf("round %d, %s: decode = %+v (%v), json.Unmarshal %+v (%v)", round, raw, got, err, want, werr)
			}
			if len(got.Scopes) > 0 {
				got.Scopes[0] = "changed by the caller"
			}
		}
	}
	for i := range resultDecoderEntries + 10 {
		if _, err := c.decode(fmt.Appendf(nil, `{"allow":true,"tier":"t%d"}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(c.decoded); n > resultDecoderEntries {
		t.Fatalf("the decoder holds %d results, more than %d", n, resultDecoderEntries)
	}
}
