package client

import (
	"context"
	"time"

	"connectrpc.com/connect"

	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
)

// RenewOption changes how [Client.KeepRenewed] renews.
type RenewOption func(*renewOptions)

type renewOptions struct {
	onRenew func(*credbrokerv1.Lease)
}

// OnRenew makes [Client.KeepRenewed] call f with the lease after each
// successful renewal, in KeepRenewed's goroutine, before it waits for the
// next one: a caller that shows or serves the lease's expiry keeps it
// current.
func OnRenew(f func(*credbrokerv1.Lease)) RenewOption {
	return func(o *renewOptions) { o.onRenew = f }
}

// KeepRenewed renews lease each time half of its remaining time has passed,
// until ctx ends or the lease can be renewed no further (it is not renewable,
// or it has reached its max expiry). It returns the newest lease and nil
// then; a failed renewal returns the lease as last seen and the error. A
// workload that must keep a credential issues a new one when KeepRenewed
// returns, before the returned lease's expiry.
func (c *Client) KeepRenewed(ctx context.Context, lease *credbrokerv1.Lease, opts ...RenewOption) (*credbrokerv1.Lease, error) {
	var o renewOptions
	for _, opt := range opts {
		opt(&o)
	}
	for {
		expires := lease.GetExpiresAt().AsTime()
		if !lease.GetRenewable() || !expires.Before(lease.GetMaxExpiresAt().AsTime()) {
			return lease, nil
		}
		t := time.NewTimer(time.Until(expires) / 2)
		select {
		case <-ctx.Done():
			t.Stop()
			return lease, nil
		case <-t.C:
		}
		resp, err := c.RenewLease(ctx, connect.NewRequest(&credbrokerv1.RenewLeaseRequest{LeaseId: lease.GetId()}))
		if err != nil {
			if ctx.Err() != nil {
				return lease, nil
			}
			return lease, err
		}
		lease = resp.Msg.GetLease()
		if o.onRenew != nil {
			o.onRenew(lease)
		}
	}
}
