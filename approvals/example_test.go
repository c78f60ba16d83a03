package approvals_test

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/pbac-gateway/pbac/approvals"
)

func Example() {
	dir, err := os.MkdirTemp("", "pbac-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	key, err := approvals.LoadOrCreateStateKey(dir)
	if err != nil {
		panic(err)
	}
	now := time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)
	call := approvals.Call{ClientID: "ci-bot-client", Subject: "alice", Method: "tools/call",
		Tool: "jenkins.trigger_deploy", Arguments: []byte(`{"job":"deploy-prod"}`)}

	// The gateway holds the call and hands the client a requestState ...
	s, err := approvals.SignState(key, approvals.NewState("apr_1", "v12", call, now.Add(15*time.Minute)))
	if err != nil {
		panic(err)
	}
	// ... which the retry must echo with the very same call.
	st, err := approvals.VerifyState(key, s, call, now.Add(time.Minute))
	fmt.Println(st.ApprovalID, st.PolicyVersion, err)

	other := call
	other.Arguments = []byte(`{"job":"deploy-prod","force":true}`)
	_, err = approvals.VerifyState(key, s, other, now.Add(time.Minute))
	fmt.Println(errors.Is(err, approvals.ErrStateOtherRequest), err)
	// Output:
	// apr_1 v12 <nil>
	// true requestState is bound to another request: approval was for other arguments
}
