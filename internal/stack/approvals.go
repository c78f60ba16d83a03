package stack

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pbac-gateway/pbac/admin"
	"github.com/pbac-gateway/pbac/approvals"
	apbadger "github.com/pbac-gateway/pbac/approvals/store/badger"
	appostgres "github.com/pbac-gateway/pbac/approvals/store/postgres"
	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/config"
	"github.com/pbac-gateway/pbac/demo"
	"github.com/pbac-gateway/pbac/identity/usersfile"
)

// approvalsDir is where the approvals are kept in the data dir.
const approvalsDir = "approvals"

// openApprovals opens the approvals of held calls: their store (Badger in
// the data dir, in memory when ephemeral, or the shared PostgreSQL store),
// the key that signs requestStates, and the service with its sweeper,
// which is stopped (and the store closed) after the gateway.
func (s *Stack) openApprovals() (*approvals.Service, error) {
	cfg := s.cfg.Gateway.Approvals
	var (
		key *approvals.StateKey
		err error
	)
	switch {
	case cfg.StateKeyFile != "":
		key, err = approvals.LoadOrCreateStateKeyFile(cfg.StateKeyFile)
	case s.cfg.Ephemeral:
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		key, err = approvals.NewStateKey(b)
	default:
		key, err = approvals.LoadOrCreateStateKey(s.cfg.DataDir)
	}
	if err != nil {
		return nil, fmt.Errorf("the requestState key: %w", err)
	}
	store, err := s.openApprovalsStore()
	if err != nil {
		return nil, err
	}
	page := cfg.PageURL
	if page == "" {
		base := s.adminBase
		if base == "" {
			// No dashboard here: the link names where an approver's
			// dashboard would be, on the gateway's own address.
			base = s.base
		}
		page = base + "/ui/approvals/"
	} else if !strings.HasSuffix(page, "/") {
		page += "/"
	}
	svc, err := approvals.New(approvals.Config{Store: store, Key: key, Audit: s.trail, PageURL: page, Logger: s.log})
	if err != nil {
		return nil, errors.Join(err, store.Close())
	}
	ctx, cancel := context.WithCancel(s.bgCtx)
	var sweeper sync.WaitGroup
	sweeper.Go(func() { svc.Run(ctx) })
	// Registered before the gateway's closer, so it runs after the
	// gateway stopped taking calls.
	s.onClose(phaseGateway, "approvals", func(ctx context.Context) error {
		cancel()
		// Its own bound: the phase's may be spent by a listener that
		// drained slowly, and the sweeper stops at once when cancelled.
		wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer wcancel()
		return errors.Join(waitGroup(wctx, &sweeper, "the approvals sweeper"), store.Close())
	})
	return svc, nil
}

func (s *Stack) openApprovalsStore() (approvals.Store, error) {
	switch {
	case config.IsPostgresStore(s.cfg.Store):
		st, err := appostgres.Open(s.bgCtx, s.cfg.Store, s.log)
		if err != nil {
			return nil, err
		}
		s.log.Info("approvals: postgres", "store", st.String())
		return st, nil
	case s.cfg.Ephemeral:
		return apbadger.Open(s.bgCtx, "", s.log)
	default:
		return apbadger.Open(s.bgCtx, filepath.Join(s.cfg.DataDir, approvalsDir), s.log)
	}
}

// adminApprovals gives the admin API the approvals and the people who may
// be named as their approvers: those who sign in with a password at the
// authorization server — its own users here, or, on a replica whose AS
// runs elsewhere (a shared store's `pbac asrv`, or a remote one), the
// users file this replica is configured with, the AS's.
func (s *Stack) adminApprovals(cfg *admin.Config) error {
	cfg.Approvals = s.approvals
	if s.as != nil && s.as.served {
		cfg.Approvers = s.as.people.users
		cfg.ApproversSSO = s.as.people.sso != nil
		return nil
	}
	id := s.cfg.AuthServer.Identity
	cfg.ApproversSSO = id.OIDC != nil
	if id.UsersFile == "" {
		return nil
	}
	f, err := usersfile.Open(id.UsersFile, usersfile.Options{Logger: s.log.With("component", "users-file")})
	if err != nil {
		return fmt.Errorf("identity.users_file, for the approvers: %w", err)
	}
	cfg.Approvers = asrv.PasswordUsers(f)
	return nil
}

// demoApprover decides approvals for the demo's scenarios as a demo user
// would in the dashboard: with the groups the user source gives them and
// the roles the active data makes of those, now.
func (s *Stack) demoApprover() demo.Approver {
	if s.approvals == nil {
		return nil
	}
	return demoApprover{users: asrv.DemoUsers{}, desk: &admin.ApprovalDesk{Service: s.approvals, Registry: s.policy.registry}}
}

type demoApprover struct {
	users asrv.UserSource
	desk  *admin.ApprovalDesk
}

func (d demoApprover) Decide(ctx context.Context, id, user string, approve bool, comment string) error {
	u, err := d.users.Lookup(ctx, user)
	if err != nil {
		return fmt.Errorf("the demo user %q: %w", user, err)
	}
	p, err := d.desk.Person(u.Subject, u.Roles, u.Groups)
	if err != nil {
		return err
	}
	_, err = d.desk.Decide(ctx, id, p, approvals.ViaDashboard, approve, comment)
	return err
}
