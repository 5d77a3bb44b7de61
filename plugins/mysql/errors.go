package mysql

import (
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/go-sql-driver/mysql"

	"github.com/credbroker/credbroker/plugins"
)

// Server error numbers the plugin acts on.
const (
	erConCount         = 1040 // ER_CON_COUNT_ERROR: too many connections
	erAccessDenied     = 1045 // ER_ACCESS_DENIED_ERROR: the admin's login failed
	erServerShutdown   = 1053 // ER_SERVER_SHUTDOWN
	erNoSuchThread     = 1094 // ER_NO_SUCH_THREAD: KILL of a thread that ended
	erHostBlocked      = 1129 // ER_HOST_IS_BLOCKED
	erHostNotAllowed   = 1130 // ER_HOST_NOT_PRIVILEGED
	erNonexistingGrant = 1141 // ER_NONEXISTING_GRANT: SHOW GRANTS of an account that is gone
	erUserConnections  = 1203 // ER_TOO_MANY_USER_CONNECTIONS
	erConnectionKilled = 1927 // ER_CONNECTION_KILLED (MariaDB)
)

// classify marks err with [plugins.ErrUnavailable] when it says the server
// could not be reached or dropped the connection, so the broker answers
// `unavailable` rather than `internal`.
func classify(err error) error {
	if err == nil || errors.Is(err, plugins.ErrUnavailable) || !connectionFailure(err) {
		return err
	}
	return fmt.Errorf("%w: %w", plugins.ErrUnavailable, err)
}

func connectionFailure(err error) bool {
	// Any failure to connect, whether the network, the server's limits or the
	// admin's authentication failed, leaves the plugin unable to work.
	switch serverError(err) {
	case erConCount, erAccessDenied, erServerShutdown, erHostBlocked, erHostNotAllowed,
		erUserConnections, erConnectionKilled:
		return true
	case 0:
	default:
		return false
	}
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, driver.ErrBadConn) || errors.Is(err, mysql.ErrInvalidConn) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// serverError returns the number of the server error err holds, or 0 when
// err did not come from the server.
func serverError(err error) uint16 {
	var myErr *mysql.MySQLError
	if errors.As(err, &myErr) {
		return myErr.Number
	}
	return 0
}

// refused reports whether the server answered err to a statement, which
// means the statement did nothing; any other failure leaves open whether it
// ran.
func refused(err error) bool {
	return serverError(err) != 0 && !connectionFailure(err)
}
