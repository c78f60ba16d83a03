package stack

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"

	"github.com/pbac-gateway/pbac/approvals"
	apbadger "github.com/pbac-gateway/pbac/approvals/store/badger"
	appostgres "github.com/pbac-gateway/pbac/approvals/store/postgres"
	"github.com/pbac-gateway/pbac/config"
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
		return errors.Join(waitGroup(ctx, &sweeper, "the approvals sweeper"), store.Close())
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
