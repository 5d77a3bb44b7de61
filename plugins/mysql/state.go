package mysql

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/credbroker/credbroker/plugins"
)

// stateVersion is the version of the State this plugin writes.
const stateVersion = 1

// state is what Create returns as the lease's State and Revoke reads back:
// everything a revoke needs that the server does not hold itself. Revoke
// finds the user's accounts in mysql.user by name (creation statements may
// make several), and the objects it is the DEFINER of by name, so what is
// left is the role's revocation statements, as they were when the user was
// made. They come from the config, so the state holds no secret.
type state struct {
	// V is stateVersion; a state of another version is refused.
	V int `json:"v"`
	// RevocationStatements are the role's revocation_statements, with the
	// {{name}} placeholder, as ParseRole accepted them.
	RevocationStatements []string `json:"revocation_statements,omitempty"`
}

// newState returns the State of a user of role.
func newState(role *Role) []byte {
	b, err := json.Marshal(state{V: stateVersion, RevocationStatements: role.RevocationStatements})
	if err != nil {
		panic("mysql: encode the state: " + err.Error()) // a struct of an int and strings always encodes
	}
	return b
}

// decodeState reads a State that newState wrote.
func decodeState(b []byte) (state, error) {
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		return state{}, fmt.Errorf("the lease's state is not this plugin's: %w", err)
	}
	if s.V != stateVersion {
		return state{}, fmt.Errorf("the lease's state is of version %d, this plugin reads version %d", s.V, stateVersion)
	}
	// The statements were checked by ParseRole when the user was made, but
	// they are run as SQL: hold a state from elsewhere to the same rules.
	if err := validateStatements("revocation_statements", s.RevocationStatements, []string{"name", "username"}); err != nil {
		return state{}, fmt.Errorf("the lease's state: %w", err)
	}
	if err := checkRevocationStatements(s.RevocationStatements); err != nil {
		return state{}, fmt.Errorf("the lease's state: %w", err)
	}
	return s, nil
}

// Before contract v2, Revoke was given only a username, so Create recorded
// a role's revocation statements on the server: it granted the user an empty
// marker role named credbroker_rv_<key>, key being a hash of the statements
// (legacyMarkerKey), and Revoke read the marker back from SHOW GRANTS and
// looked the statements up in a registry that ParseRole filled from the
// config. Users made since keep their statements in the lease's State and
// get no marker; the markers of older users are read once more, by
// UpgradeState or by a Revoke given no State, and go with the user when it
// is dropped (DROP USER removes its role grants).
//
// The marker roles themselves are left on the server: every user of a role
// shared one, and a broker of the previous release, during a rolling
// upgrade, may still grant it. Once no lease from before contract v2 is
// left, no user holds them any more and an operator may drop them:
//
//	SELECT Role FROM mysql.roles_mapping WHERE Role LIKE 'credbroker!_rv!_%' ESCAPE '!'  -- MariaDB: who still holds one
//	DROP ROLE `credbroker_rv_…`

// legacyMarkerPrefix starts the names of the marker roles of the previous
// release.
const legacyMarkerPrefix = "credbroker_rv_"

// legacyMarker matches a marker role's name in SHOW GRANTS output; group 1
// is its key.
var legacyMarker = regexp.MustCompile(legacyMarkerPrefix + `([0-9a-f]{16})`)

// legacyMarkerKey returns the key the previous release named the marker role
// of statements by: the first 8 bytes of SHA-256 over the statements joined
// by NUL, in hex.
func legacyMarkerKey(statements []string) string {
	sum := sha256.Sum256([]byte(strings.Join(statements, "\x00")))
	return hex.EncodeToString(sum[:8])
}

// legacyStatements returns the revocation statements of a user made before
// contract v2, as the previous release's Revoke would have run them: spec's
// revocation statements when one of the user's accounts at hosts holds the
// marker role named for them, else none. spec is the lease's role as the
// config holds it now, nil when the role is gone: the previous release knew
// the statements of the roles in its config only, so a marker for
// statements the config no longer has ran nothing there either, and the
// user is dropped all the same.
func (p *Plugin) legacyStatements(ctx context.Context, username string, hosts []string, spec *Role) ([]string, error) {
	statements, _, err := p.markedStatements(ctx, username, hosts, spec)
	return statements, err
}

// markedStatements is [Plugin.legacyStatements], and also says whether any
// of the user's accounts holds a marker role at all.
func (p *Plugin) markedStatements(ctx context.Context, username string, hosts []string, spec *Role) (statements []string, marked bool, err error) {
	want := ""
	if spec != nil && len(spec.RevocationStatements) > 0 {
		want = legacyMarkerKey(spec.RevocationStatements)
	}
	for _, h := range hosts {
		grants, err := p.showGrants(ctx, username, h)
		if err != nil {
			return nil, false, err
		}
		for _, g := range grants {
			for _, m := range legacyMarker.FindAllStringSubmatch(g, -1) {
				marked = true
				if want != "" && m[1] == want {
					return slices.Clone(spec.RevocationStatements), true, nil
				}
			}
		}
	}
	return nil, marked, nil
}

// lostStateStatements returns the revocation statements of a user whose
// lease holds no state: [Plugin.legacyStatements] for a user an earlier
// release marked, and, for an unmarked one, the statements of the lease's
// role as the config holds it now. An unmarked user is one this release
// issued whose issue failed after Create (the store did not take Create's
// State, and the reaper revokes the user), or one an earlier release issued
// for a role without revocation statements, which the upgrade at start gives
// a state before the reaper meets it.
func (p *Plugin) lostStateStatements(ctx context.Context, username string, hosts []string, spec *Role) ([]string, error) {
	statements, marked, err := p.markedStatements(ctx, username, hosts, spec)
	if err != nil || marked || spec == nil {
		return statements, err
	}
	return slices.Clone(spec.RevocationStatements), nil
}

// UpgradeState derives the State of a lease written before contract v2 from
// the marker role its user holds (see legacyMarkerKey): req.Spec's
// revocation statements when the marker names them, else none. A user that
// is gone gets a State without statements, as Revoke would run none for it.
// The result is what Create would have returned, so the lease then revokes
// from its State alone, also once its role has left the config.
func (p *Plugin) UpgradeState(ctx context.Context, req plugins.UpgradeStateOf[*Role]) ([]byte, error) {
	if err := checkUsername(req.Username); err != nil {
		return nil, fmt.Errorf("upgrade the state: %w", err)
	}
	hosts, err := p.hosts(ctx, req.Username)
	var statements []string
	if err == nil {
		statements, err = p.legacyStatements(ctx, req.Username, hosts, req.Spec)
	}
	if err != nil {
		return nil, fmt.Errorf("upgrade the state of user %s: %w", quoteString(req.Username), classify(err))
	}
	return newState(&Role{RevocationStatements: statements}), nil
}
