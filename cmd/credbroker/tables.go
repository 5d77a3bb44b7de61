package main

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
)

// The renderers below print the table and wide forms. Each takes now (for
// relative times) and color (ANSI colours or none), so their output is a
// function of their arguments.

// cell is a table cell: its text and, optionally, the ANSI SGR parameters
// to colour it with ("32" green …) when colour is on.
type cell struct {
	text string
	sgr  string
}

func plain(s string) cell { return cell{text: cmp.Or(s, "-")} }

// table is rows of cells printed in columns two spaces apart, with the
// widths of the plain text (text/tabwriter would count the bytes of colour
// codes as width). Empty cells print as "-", so every column has a value.
type table struct {
	rows [][]cell
}

func (t *table) header(names ...string) {
	row := make([]cell, len(names))
	for i, n := range names {
		row[i] = cell{text: n}
	}
	t.rows = append(t.rows, row)
}

func (t *table) add(cells ...cell) { t.rows = append(t.rows, cells) }

func (t *table) write(w io.Writer, color bool) error {
	var widths []int
	for _, row := range t.rows {
		for i, c := range row {
			if i == len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(c.text))
		}
	}
	var b strings.Builder
	for _, row := range t.rows {
		for i, c := range row {
			if color && c.sgr != "" {
				b.WriteString("\x1b[" + c.sgr + "m" + c.text + "\x1b[0m")
			} else {
				b.WriteString(c.text)
			}
			if i < len(row)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c.text)+2))
			}
		}
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// block is a list of "key:  value" lines with the values aligned, for one
// object (a lease, a credential).
type block struct{ table }

func (b *block) set(key string, value cell) { b.add(cell{text: key + ":"}, value) }

// ANSI colours of states and flags.
const (
	sgrGreen  = "32"
	sgrYellow = "33"
	sgrRed    = "31"
	sgrCyan   = "36"
	sgrGrey   = "90"
)

// leaseState is a lease state as people say it: active, revoking …
func leaseState(s credbrokerv1.LeaseState) cell {
	if s == credbrokerv1.LeaseState_LEASE_STATE_UNSPECIFIED {
		return plain("")
	}
	name := strings.ToLower(strings.TrimPrefix(s.String(), "LEASE_STATE_"))
	switch s {
	case credbrokerv1.LeaseState_LEASE_STATE_ACTIVE:
		return cell{name, sgrGreen}
	case credbrokerv1.LeaseState_LEASE_STATE_PENDING:
		return cell{name, sgrCyan}
	case credbrokerv1.LeaseState_LEASE_STATE_REVOKING:
		return cell{name, sgrYellow}
	case credbrokerv1.LeaseState_LEASE_STATE_REVOKED:
		return cell{name, sgrGrey}
	}
	return cell{text: name}
}

// humanDuration writes d as people write a TTL: 15m, 1h, 1h30m, 90s (under
// two minutes in seconds, as kubectl does), with no zero units. A duration
// with a fraction of a second keeps Go's exact form (1.5s, 500ms).
func humanDuration(d time.Duration) string {
	if d < 0 {
		return "-" + humanDuration(-d)
	}
	if d == 0 || d%time.Second != 0 {
		return d.String()
	}
	if d < 2*time.Minute {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	var b strings.Builder
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if n := d / u.unit; n > 0 {
			b.WriteString(strconv.FormatInt(int64(n), 10) + u.name)
			d -= n * u.unit
		}
	}
	return b.String()
}

// duration is a protobuf duration for a table; unset is "-".
func duration(d *durationpb.Duration) string {
	if d == nil {
		return "-"
	}
	return humanDuration(d.AsDuration())
}

// approxDuration is d rounded down to the unit a person reads at a glance:
// 45s, 14m, 3h5m, 2d4h.
func approxDuration(d time.Duration) string {
	switch {
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", d/time.Second)
	case d < time.Hour:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d < 24*time.Hour:
		h, m := d/time.Hour, d%time.Hour/time.Minute
		if m == 0 {
			return fmt.Sprintf("%dh", h)
		}
		return fmt.Sprintf("%dh%dm", h, m)
	default:
		days, h := d/(24*time.Hour), d%(24*time.Hour)/time.Hour
		if h == 0 {
			return fmt.Sprintf("%dd", days)
		}
		return fmt.Sprintf("%dd%dh", days, h)
	}
}

// relativeTime is t seen from now: "in 14m", "3m ago", "now".
func relativeTime(t, now time.Time) string {
	d := t.Sub(now)
	switch {
	case d >= time.Second:
		return "in " + approxDuration(d)
	case d <= -time.Second:
		return approxDuration(-d) + " ago"
	default:
		return "now"
	}
}

// rfc3339 is t in UTC to the second, as wide tables print times.
func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// timestamp is ts for a table: relative to now, or RFC 3339 when wide;
// unset is "-".
func timestamp(ts *timestamppb.Timestamp, wide bool, now time.Time) string {
	if ts == nil {
		return "-"
	}
	if wide {
		return rfc3339(ts.AsTime())
	}
	return relativeTime(ts.AsTime(), now)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// breakGlass is the break-glass flag of a lease, red when set.
func breakGlass(b bool) cell {
	if b {
		return cell{"yes", sgrRed}
	}
	return cell{text: "no"}
}

// holder is who holds a lease, for people: the name from their token when
// there is one, else the token's subject.
func holder(l *credbrokerv1.Lease) string {
	return cmp.Or(l.GetSubjectName(), l.GetSubject())
}

func list(s []string) string { return cmp.Or(strings.Join(s, ","), "-") }

// writeRoles is the table of `credbroker roles`.
func writeRoles(w io.Writer, roles []*credbrokerv1.Role, wide bool, color bool) error {
	var t table
	if wide {
		t.header("ROLE", "BACKEND", "PLUGIN", "DEFAULT TTL", "MAX TTL", "ENVIRONMENT", "OWNER", "BREAK-GLASS ONLY", "BREAK-GLASS MAX TTL")
	} else {
		t.header("ROLE", "BACKEND", "PLUGIN", "DEFAULT TTL", "MAX TTL", "ENVIRONMENT", "OWNER")
	}
	for _, r := range roles {
		row := []cell{plain(r.GetName()), plain(r.GetBackend()), plain(r.GetPlugin()), plain(duration(r.GetDefaultTtl())),
			plain(duration(r.GetMaxTtl())), plain(r.GetEnvironment()), plain(r.GetOwner())}
		if wide {
			bg := cell{text: "no"}
			if r.GetBreakGlassOnly() {
				bg = cell{"yes", sgrRed}
			}
			row = append(row, bg, plain(duration(r.GetBreakGlassMaxTtl())))
		}
		t.add(row...)
	}
	return t.write(w, color)
}

// writeLeases is the table of `credbroker lease list`.
func writeLeases(w io.Writer, leases []*credbrokerv1.Lease, wide bool, now time.Time, color bool) error {
	var t table
	cols := []string{"ID", "ROLE", "BACKEND", "USERNAME", "STATE", "EXPIRES", "HOLDER"}
	if wide {
		cols = append(cols, "SUBJECT", "ISSUER", "CREATED", "MAX EXPIRES", "RENEWABLE", "BREAK-GLASS", "REVOKED", "REVOKE REASON")
	}
	t.header(cols...)
	for _, l := range leases {
		row := []cell{plain(l.GetId()), plain(l.GetRole()), plain(l.GetBackend()), plain(l.GetUsername()),
			leaseState(l.GetState()), plain(timestamp(l.GetExpiresAt(), wide, now)), plain(holder(l))}
		if wide {
			row = append(row, plain(l.GetSubject()), plain(l.GetIssuer()), plain(timestamp(l.GetCreatedAt(), true, now)),
				plain(timestamp(l.GetMaxExpiresAt(), true, now)), plain(yesNo(l.GetRenewable())), breakGlass(l.GetBreakGlass()),
				plain(timestamp(l.GetRevokedAt(), true, now)), plain(singleLine(l.GetRevokeReason())))
		}
		t.add(row...)
	}
	return t.write(w, color)
}

// singleLine keeps free text (a revoke reason) on one table line.
func singleLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// writeLease is the block of `credbroker lease get|renew|revoke`.
func writeLease(w io.Writer, l *credbrokerv1.Lease, wide bool, now time.Time, color bool) error {
	var b block
	leaseBlock(&b, l, wide, now)
	return b.write(w, color)
}

func leaseBlock(b *block, l *credbrokerv1.Lease, wide bool, now time.Time) {
	b.set("lease", plain(l.GetId()))
	b.set("role", plain(l.GetRole()))
	b.set("backend", plain(l.GetBackend()))
	b.set("username", plain(l.GetUsername()))
	b.set("state", leaseState(l.GetState()))
	who := l.GetSubject()
	if l.GetSubjectName() != "" {
		who = l.GetSubjectName() + " (" + l.GetSubject() + ")"
	}
	b.set("holder", plain(who))
	b.set("issuer", plain(l.GetIssuer()))
	b.set("created", plain(timestamp(l.GetCreatedAt(), wide, now)))
	b.set("expires", plain(timestamp(l.GetExpiresAt(), wide, now)))
	b.set("max expiry", plain(timestamp(l.GetMaxExpiresAt(), wide, now)))
	b.set("renewable", plain(yesNo(l.GetRenewable())))
	b.set("break-glass", breakGlass(l.GetBreakGlass()))
	if l.GetRevokedAt() != nil || l.GetRevokeReason() != "" {
		b.set("revoked", plain(timestamp(l.GetRevokedAt(), wide, now)))
		b.set("revoke reason", plain(singleLine(l.GetRevokeReason())))
	}
}

// writeInventory is the table of `credbroker admin inventory`: one row per
// role with its live leases, and a row for each backend no role uses.
func writeInventory(w io.Writer, inv *credbrokerv1.GetInventoryResponse, wide bool, color bool) error {
	plugin := map[string]string{}
	unused := map[string]*credbrokerv1.InventoryBackend{}
	for _, be := range inv.GetBackends() {
		plugin[be.GetName()] = be.GetPlugin()
		unused[be.GetName()] = be
	}
	rotated := map[string]string{}
	for _, be := range inv.GetBackends() {
		rotated[be.GetName()] = "never"
		if ts := be.GetLastRootRotation(); ts != nil {
			rotated[be.GetName()] = ts.AsTime().Local().Format(time.RFC3339)
		}
	}
	var t table
	if wide {
		t.header("ROLE", "BACKEND", "PLUGIN", "ENVIRONMENT", "OWNER", "DEFAULT TTL", "MAX TTL", "POLICIES", "BREAK-GLASS POLICIES", "SWEEP", "ACTIVE LEASES", "ROOT ROTATED")
	} else {
		t.header("ROLE", "BACKEND", "ENVIRONMENT", "OWNER", "DEFAULT TTL", "MAX TTL", "POLICIES", "ACTIVE LEASES")
	}
	for _, r := range inv.GetRoles() {
		delete(unused, r.GetBackend())
		active := plain(strconv.FormatInt(r.GetActiveLeases(), 10))
		if r.GetActiveLeases() > 0 {
			active.sgr = sgrGreen
		}
		if wide {
			t.add(plain(r.GetName()), plain(r.GetBackend()), plain(plugin[r.GetBackend()]), plain(r.GetEnvironment()), plain(r.GetOwner()),
				plain(duration(r.GetDefaultTtl())), plain(duration(r.GetMaxTtl())), plain(list(r.GetPolicies())),
				plain(list(r.GetBreakGlassPolicies())), plain(sweep(inv, r.GetBackend())), active, plain(rotated[r.GetBackend()]))
		} else {
			t.add(plain(r.GetName()), plain(r.GetBackend()), plain(r.GetEnvironment()), plain(r.GetOwner()),
				plain(duration(r.GetDefaultTtl())), plain(duration(r.GetMaxTtl())), plain(list(r.GetPolicies())), active)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(unused)) {
		be := unused[name]
		if wide {
			t.add(plain(""), plain(name), plain(be.GetPlugin()), plain(be.GetEnvironment()), plain(be.GetOwner()),
				plain(""), plain(""), plain(""), plain(""), plain(yesNo(be.GetSweep())), plain("0"), plain(rotated[name]))
		} else {
			t.add(plain(""), plain(name), plain(be.GetEnvironment()), plain(be.GetOwner()), plain(""), plain(""), plain(""), plain("0"))
		}
	}
	return t.write(w, color)
}

func sweep(inv *credbrokerv1.GetInventoryResponse, backend string) string {
	for _, be := range inv.GetBackends() {
		if be.GetName() == backend {
			return yesNo(be.GetSweep())
		}
	}
	return "-"
}

// writeCreds is the block `credbroker creds` prints for a person: how to
// connect (the password among it) and the lease.
func writeCreds(w io.Writer, resp *credbrokerv1.IssueCredentialResponse, wide bool, now time.Time, color bool) error {
	cred, l := resp.GetCredential(), resp.GetLease()
	var b block
	b.set("role", plain(l.GetRole()))
	b.set("backend", plain(l.GetBackend()))
	b.set("uri", plain(cred.GetUri()))
	b.set("username", plain(cred.GetUsername()))
	b.set("password", cell{cmp.Or(cred.GetPassword(), "-"), sgrYellow})
	fields := cred.GetFields()
	first := []string{"host", "port", "database"}
	for _, k := range first {
		if v, ok := fields[k]; ok {
			b.set(k, plain(v))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		if !slices.Contains(first, k) {
			b.set(k, plain(fields[k]))
		}
	}
	b.set("env", plain(strings.Join(slices.Sorted(maps.Keys(cred.GetEnv())), " ")))
	b.set("lease", plain(l.GetId()))
	if wide {
		b.set("state", leaseState(l.GetState()))
	}
	b.set("expires", plain(timestamp(l.GetExpiresAt(), wide, now)))
	b.set("max expiry", plain(timestamp(l.GetMaxExpiresAt(), wide, now)))
	if l.GetBreakGlass() {
		b.set("break-glass", cell{"yes: recorded and audited", sgrRed})
	}
	return b.write(w, color)
}

// passwordShown is the warning `credbroker creds` writes to stderr when its
// block (with the password) goes to stdout.
const passwordShown = "warning: the password is shown above. In scripts use -o env, -o uri or -o json; " +
	"credbroker exec and credbroker connect keep it off the screen."

// revokedSummary is what `credbroker admin revoke` prints for people.
func revokedSummary(w io.Writer, resp *credbrokerv1.RevokeLeasesResponse) error {
	s := "revoked " + leasesCount(int(resp.GetRevoked()))
	if n := resp.GetRetrying(); n > 0 {
		s += fmt.Sprintf("; %s could not be revoked yet: they stay revoking and the reaper retries them", leasesCount(int(n)))
	}
	_, err := fmt.Fprintln(w, s)
	return err
}

func leasesCount(n int) string {
	if n == 1 {
		return "1 lease"
	}
	return strconv.Itoa(n) + " leases"
}
