package mysql

import (
	"context"

	"github.com/credbroker/credbroker/plugins"
)

// EncodeState returns the State Create returns for a user of role.
func EncodeState(role *Role) []byte { return newState(role) }

// noLockDriver opens plugins that behave as on a server without ALTER USER
// … ACCOUNT LOCK (MariaDB before 10.4, MySQL before 5.7.6).
type noLockDriver struct{ Driver }

func (d noLockDriver) Open(ctx context.Context, c *Connection) (plugins.TypedPlugin[*Role], error) {
	p, err := d.Driver.Open(ctx, c)
	if err != nil {
		return nil, err
	}
	p.(*Plugin).canLock = false
	return p, nil
}

// WithoutAccountLock returns the driver, its plugins behaving as on a server
// without ACCOUNT LOCK.
func WithoutAccountLock() plugins.Driver { return plugins.Typed(noLockDriver{}) }
