package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// closeTimeout bounds closing a connection that is not fit to go back to
// its pool.
const closeTimeout = 5 * time.Second

// stepError is the error of the step of a pipeline the server refused; the
// steps before it succeeded, those after it never ran, and none of them is
// committed.
type stepError struct {
	index int    // the step's index in the pipeline
	what  string // the step's description
	err   error  // the server's error
}

func (e *stepError) Error() string { return e.what + ": " + e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

// failedStep returns the index of the step err says the server refused, or
// -1 when err is not a step's.
func failedStep(err error) int {
	var se *stepError
	if errors.As(err, &se) {
		return se.index
	}
	return -1
}

// pipeline sends steps to the server in one round trip, as one implicit
// transaction: PostgreSQL runs them in order and commits them at the Sync
// that ends the pipeline only if every one succeeded; the first to fail
// rolls them all back, and the server skips the rest. So no catalog lock a
// step takes is held while the server waits for the broker, and nothing
// half-done is ever committed.
//
// The server holds the whole pipeline, Sync included, once it is sent: when
// ctx ends before the answer, pgx closes the connection and asks the server
// to cancel what it runs, so the steps roll back unless they had committed
// already (then the user exists whole, and the broker revokes it with the
// failed lease, as after any failed Create).
//
// The steps run on a connection of their own from pool. It goes back to the
// pool only when the pipeline succeeded and the connection is idle outside
// any transaction; after any error it is closed instead, so no later call
// can meet a transaction or a late cancel request of this one. An error the
// server returned for a step is a *stepError naming it; when ctx ended, the
// error matches ctx.Err() too.
func pipeline(ctx context.Context, pool *pgxpool.Pool, steps []step) (err error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer func() {
		pg := conn.Conn().PgConn()
		if err == nil && !pg.IsClosed() && !pg.IsBusy() && pg.TxStatus() == 'I' {
			conn.Release()
			return
		}
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
		defer cancel()
		_ = conn.Hijack().Close(closeCtx)
		if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
			err = fmt.Errorf("%w: %w", ctxErr, err)
		}
	}()
	batch := &pgconn.Batch{}
	types := conn.Conn().TypeMap()
	for _, s := range steps {
		values, oids, err := encodeArgs(types, s.args)
		if err != nil {
			return fmt.Errorf("%s: %w", s.what, err)
		}
		if !s.prepare {
			batch.ExecParams(s.sql, values, oids, nil, nil)
			continue
		}
		// Prepared once per connection (a round trip of its own, the first
		// time), named after its text.
		sd, err := conn.Conn().Prepare(ctx, s.sql, s.sql)
		if err != nil {
			return fmt.Errorf("%s: prepare: %w", s.what, err)
		}
		batch.ExecPrepared(sd.Name, values, nil, nil)
	}
	results := conn.Conn().PgConn().ExecBatch(ctx, batch)
	// Each step that succeeded yields one result without error; the one that
	// failed yields a result with its error or none, and ends the batch.
	done := 0
	for results.NextResult() {
		if _, err := results.ResultReader().Close(); err != nil {
			break
		}
		done++
	}
	if err := results.Close(); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && done < len(steps) {
			return &stepError{index: done, what: steps[done].what, err: err}
		}
		return err
	}
	return nil
}

// encodeArgs encodes a step's arguments in text format, with their types:
// the few Go types the plugin's statements bind.
func encodeArgs(types *pgtype.Map, args []any) ([][]byte, []uint32, error) {
	values := make([][]byte, len(args))
	oids := make([]uint32, len(args))
	for i, a := range args {
		var oid uint32
		switch a.(type) {
		case string:
			// Sent untyped, as pgx sends a string: the server takes the type
			// the statement needs there (name, for a role name).
			oid = pgtype.TextOID
		case []string:
			oid, oids[i] = pgtype.TextArrayOID, pgtype.TextArrayOID
		case int64:
			oid, oids[i] = pgtype.Int8OID, pgtype.Int8OID
		case int:
			oid, oids[i] = pgtype.Int4OID, pgtype.Int4OID
		case uint32:
			oid, oids[i] = pgtype.OIDOID, pgtype.OIDOID
		default:
			return nil, nil, fmt.Errorf("argument %d: cannot bind a %T", i+1, a)
		}
		// A nil buffer would encode "" as nil, which binds NULL.
		b, err := types.Encode(oid, pgtype.TextFormatCode, a, []byte{})
		if err != nil {
			return nil, nil, fmt.Errorf("argument %d: %w", i+1, err)
		}
		values[i] = b
	}
	return values, oids, nil
}
