package broker

import (
	"context"
	"fmt"
	"sync"

	"github.com/credbroker/credbroker/leases"
)

// issuedLeases remembers the id of every lease a server wrote, for
// [Server.RevokeIssued]. Only `credbroker dev` turns it on
// ([Options.TrackIssued]); a production broker's leases outlive its
// process by design.
type issuedLeases struct {
	mu  sync.Mutex
	ids []string
}

// add remembers id; a nil set remembers nothing.
func (l *issuedLeases) add(id string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	l.ids = append(l.ids, id)
	l.mu.Unlock()
}

func (l *issuedLeases) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.ids...)
}

// RevokeIssuedResult counts what [Server.RevokeIssued] did.
type RevokeIssuedResult struct {
	// Revoked leases are gone, with their backend users.
	Revoked int
	// Retrying leases could not be revoked now (a backend did not answer):
	// they are REVOKING, and the reaper of the next server on the same
	// store retries them.
	Retrying int
}

// RevokeIssued revokes every lease this server wrote that is not revoked
// yet (ACTIVE, PENDING, or REVOKING and waiting for a retry), as actor with
// reason, once the server stopped serving and before Close. It needs
// [Options.TrackIssued]; without it there is nothing to revoke.
func (s *Server) RevokeIssued(ctx context.Context, reason, actor string) (RevokeIssuedResult, error) {
	var out RevokeIssuedResult
	if s.svc.issued == nil {
		return out, nil
	}
	for _, id := range s.svc.issued.list() {
		l, err := s.store.Get(ctx, id)
		if err != nil {
			return out, fmt.Errorf("revoke the leases issued: %w", err)
		}
		if l.State == leases.StateRevoked {
			continue
		}
		got, err := s.reaper.Revoke(ctx, id, reason, actor)
		if err != nil {
			return out, fmt.Errorf("revoke the leases issued: %w", err)
		}
		switch got.State {
		case leases.StateRevoked:
			out.Revoked++
		default:
			out.Retrying++
		}
	}
	return out, nil
}
