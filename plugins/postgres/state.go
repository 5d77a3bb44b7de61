package postgres

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/credbroker/credbroker/plugins"
)

// stateVersion is the version of the state this release writes.
const stateVersion = 1

// state is what Create returns for the lease store to keep beside the lease:
// exactly what Revoke needs, so a user revokes the same way whether its role
// is still in the config, was changed, or was removed. It holds no secret.
// Its JSON form is versioned:
//
//	{"v":1,"revocation_statements":["REVOKE … FROM {{name}}"],"reassign_owned_to":"attic"}
type state struct {
	// V is the state's version, 1.
	V int `json:"v"`
	// RevocationStatements are the role's revocation_statements when the
	// user was issued, with their {{name}} placeholders.
	RevocationStatements []string `json:"revocation_statements,omitempty"`
	// ReassignOwnedTo is the role's reassign_owned_to when the user was
	// issued: the role that receives what the user owns at revoke, after the
	// same checks as at start. Empty: what the user owns is dropped.
	ReassignOwnedTo string `json:"reassign_owned_to,omitempty"`
	// RevocationStatementsUnknown is set only in a state derived from a user
	// an earlier release issued (see [Plugin.UpgradeState]) whose role had
	// revocation_statements that the role no longer has, or that is gone:
	// they are lost, and only the built-in revocation runs, which removes the
	// user completely on its own. That release did the same.
	RevocationStatementsUnknown bool `json:"revocation_statements_unknown,omitempty"`
}

// stateOf is the state of a user issued now for role.
func stateOf(role *Role) state {
	return state{
		V:                    stateVersion,
		RevocationStatements: slices.Clone(role.RevocationStatements),
		ReassignOwnedTo:      role.ReassignOwnedTo,
	}
}

// encode returns the state's JSON, refusing one the lease store would not
// keep.
func (s state) encode() ([]byte, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	if len(b) > plugins.MaxStateSize {
		return nil, fmt.Errorf("the state of the user (its revocation_statements) is %d bytes, more than the %d the lease store keeps", len(b), plugins.MaxStateSize)
	}
	return b, nil
}

// decodeState reads a state [state.encode] wrote, strictly: an unknown
// version or field, or a value no role of this release could have, is an
// error, since Revoke cannot know what such a state asks of it.
func decodeState(b []byte) (state, error) {
	var s state
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return state{}, fmt.Errorf("read the lease's state: %w", err)
	}
	if dec.More() {
		return state{}, errors.New("read the lease's state: data after the JSON object")
	}
	if s.V != stateVersion {
		return state{}, fmt.Errorf("read the lease's state: version %d, this release knows %d (was it written by a newer release?)", s.V, stateVersion)
	}
	var errs []error
	if err := validateStatements("revocation_statements", s.RevocationStatements, []string{"name", "username"}); err != nil {
		errs = append(errs, err)
	}
	if s.ReassignOwnedTo != "" {
		if err := validateReassignTarget(s.ReassignOwnedTo); err != nil {
			errs = append(errs, fmt.Errorf("reassign_owned_to: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return state{}, fmt.Errorf("read the lease's state: %w", err)
	}
	return s, nil
}

// derivedState is the state of a user whose lease holds none: one an
// earlier release issued ([legacyState]), or one this release issued whose
// state was lost because the lease store could not record Create's answer
// (the issue then failed, and the reaper revokes the user). For the latter
// the role's current spec is the best account of what the user was issued
// with; without it, the revocation statements are unknown.
func derivedState(info roleInfo, spec *Role) state {
	switch {
	case !info.v2:
		return legacyState(info, spec)
	case spec != nil:
		return stateOf(spec)
	default:
		return state{V: stateVersion, RevocationStatementsUnknown: true}
	}
}

// legacyState derives the state of a user an earlier release issued from
// the comment it put on the role and the role's current spec (nil when the
// role is gone). That comment named the revocation statements by
// [legacyRevocationKey] and held reassign_owned_to itself. The statements
// are taken from spec only when their key is the one in the comment: the
// statements the user was issued with. Otherwise they are lost, as they were
// for that release when no role of the config had them, and the state says
// so.
func legacyState(info roleInfo, spec *Role) state {
	s := state{V: stateVersion, ReassignOwnedTo: info.reassignOwnedTo}
	if info.revocationKey == "" {
		return s
	}
	if spec != nil && len(spec.RevocationStatements) > 0 && legacyRevocationKey(spec.RevocationStatements) == info.revocationKey {
		s.RevocationStatements = slices.Clone(spec.RevocationStatements)
	} else {
		s.RevocationStatementsUnknown = true
	}
	return s
}

// legacyRevocationKey is the key by which releases before contract v2 named
// a role's revocation statements in the comment of each user they issued
// (";revocation_statements=<key>"): the first 16 bytes of the SHA-256 of the
// statements joined by NUL bytes, in hex.
func legacyRevocationKey(statements []string) string {
	sum := sha256.Sum256([]byte(strings.Join(statements, "\x00")))
	return hex.EncodeToString(sum[:16])
}
