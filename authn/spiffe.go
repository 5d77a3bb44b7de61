package authn

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

const (
	// bundleFilePoll is how often a spiffe.bundle_file is re-read to pick
	// up a changed bundle (a key rotation) without SIGHUP.
	bundleFilePoll = 2 * time.Second
	// minBundleRefresh bounds the spiffe_refresh_hint a bundle_url bundle
	// asks for from below, so a bundle endpoint cannot make the broker poll
	// it in a tight loop; the upper bound is Config.PeriodicRefresh.
	minBundleRefresh = 5 * time.Second
)

// SPIFFEConfig is the `spiffe:` block of an issuer: JWT-SVIDs of one SPIFFE
// trust domain, verified with the JWT authorities of its trust bundle.
// Exactly one of BundleFile and BundleURL is set.
//
// A token is for this issuer when its sub is a SPIFFE ID in TrustDomain,
// whether or not it carries an iss claim (SPIRE without jwt_issuer sets
// none); an iss, when present, must equal the issuer's `issuer:`.
type SPIFFEConfig struct {
	// TrustDomain is the trust domain name, e.g. "example.org" (a
	// "spiffe://example.org" form is accepted too).
	TrustDomain string `yaml:"trust_domain"`
	// BundleFile is a SPIFFE bundle in the format of
	// `spire-server bundle show -format spiffe`, re-read whenever it
	// changes (checked every 2s).
	BundleFile string `yaml:"bundle_file"`
	// BundleURL is the trust domain's SPIFFE bundle endpoint (profile
	// https_web): fetched at start, again on the bundle's
	// spiffe_refresh_hint (at least 5s, at most the periodic refresh), and
	// when a token names an unknown key (rate-limited). https is required
	// except for loopback hosts.
	BundleURL string `yaml:"bundle_url"`
}

// trustDomain parses TrustDomain; validate has reported any error.
func (s *SPIFFEConfig) trustDomain() (spiffeid.TrustDomain, error) {
	return spiffeid.TrustDomainFromString(s.TrustDomain)
}

// validate checks the spiffe block. others are the non-spiffe key sources
// (jwks_file, jwks_url, discovery) that are set as well: they conflict.
func (s *SPIFFEConfig) validate(others []string, insecureHTTP bool) []error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("spiffe.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	for _, o := range others {
		errs = append(errs, fmt.Errorf("%s: conflicts with spiffe: a spiffe issuer takes its keys from spiffe.bundle_file or spiffe.bundle_url; remove %s", o, o))
	}
	if s.TrustDomain == "" {
		add("trust_domain", "is required: the trust domain of the SPIFFE IDs, e.g. example.org")
	} else if _, err := s.trustDomain(); err != nil {
		add("trust_domain", "%q is not a SPIFFE trust domain (%v); write its name, e.g. example.org", s.TrustDomain, err)
	}
	switch {
	case s.BundleFile == "" && s.BundleURL == "":
		add("bundle_file", "no bundle: set bundle_file (from `spire-server bundle show -format spiffe`) or bundle_url (the bundle endpoint)")
	case s.BundleFile != "" && s.BundleURL != "":
		add("bundle_url", "conflicts with bundle_file: set exactly one of them")
	case s.BundleURL != "":
		if err := checkURL(s.BundleURL, insecureHTTP); err != nil {
			add("bundle_url", "%v", err)
		}
	}
	return errs
}

// parseBundle reads a SPIFFE trust bundle with go-spiffe and returns its JWT
// authorities (keys with use "jwt-svid") as a key set; X.509 authorities are
// not for tokens and are left out without a word. Keys that cannot verify
// here (weak RSA, unknown types) are skipped with a warning. A bundle with no
// usable JWT authority is an error, so a refresh that gets one keeps the
// previous keys.
func parseBundle(td spiffeid.TrustDomain, data []byte, log *slog.Logger) (*keySet, error) {
	b, err := spiffebundle.Parse(td, data)
	if err != nil {
		return nil, fmt.Errorf("is not a SPIFFE bundle: %w", err)
	}
	set := &keySet{}
	if hint, ok := b.RefreshHint(); ok {
		set.refreshHint = hint
	}
	auths := b.JWTAuthorities()
	kids := make([]string, 0, len(auths))
	for kid := range auths {
		kids = append(kids, kid)
	}
	slices.Sort(kids)
	for _, kid := range kids {
		key, err := usableKey(auths[kid])
		if err != nil {
			log.Warn("skipping bundle JWT authority", slog.String("kid", kid), slog.String("error", err.Error()))
			continue
		}
		set.keys = append(set.keys, publicKey{kid: kid, key: key})
	}
	if len(set.keys) == 0 {
		return nil, fmt.Errorf(`holds no usable JWT-SVID signing keys (keys with "use": "jwt-svid"; it has %d X.509 authorities)`, len(b.X509Authorities()))
	}
	return set, nil
}

// period is how long a remote waits before its next scheduled fetch: the
// bundle's spiffe_refresh_hint when its current keys carry one (bounded by
// minBundleRefresh and the periodic refresh), else the periodic refresh.
func (r *remote) period() time.Duration {
	if set := r.iss.keys.Load(); set != nil && set.refreshHint > 0 {
		return min(max(set.refreshHint, minBundleRefresh), max(r.periodic, minBundleRefresh))
	}
	return r.periodic
}

// parseKeys parses a fetched key document: a SPIFFE bundle for a bundle_url
// issuer, a JWK Set otherwise.
func (r *remote) parseKeys(body []byte, log *slog.Logger) (*keySet, error) {
	if r.iss.spiffeTD != (spiffeid.TrustDomain{}) {
		return parseBundle(r.iss.spiffeTD, body, log)
	}
	return parseJWKS(body, log)
}

// watchBundleFile re-reads the issuer's bundle_file every bundleFilePoll and
// swaps in its keys when its content changed, until ctx ends. A file that
// cannot be read or parsed is logged once per change and the previous keys
// stay.
func (is *issuer) watchBundleFile(ctx context.Context, done func()) {
	defer done()
	path := is.cfg.SPIFFE.BundleFile
	log := is.log.With(slog.String("bundle_file", path))
	var lastErr string
	t := time.NewTicker(bundleFilePoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		set, changed, err := is.reloadBundleFile(log)
		switch {
		case err != nil:
			if err.Error() != lastErr {
				lastErr = err.Error()
				log.Warn("bundle_file cannot be used; still serving the previous keys", slog.Any("error", err))
			}
		case changed:
			lastErr = ""
			log.Info("issuer signing keys reloaded: bundle_file changed", slog.Any("kids", set.kids()))
		}
	}
}

// reloadBundleFile reads the bundle_file and, when its content differs from
// what the current keys came from, parses it and swaps its keys in. A file
// that does not parse is remembered, so it is reported once, not every poll.
func (is *issuer) reloadBundleFile(log *slog.Logger) (set *keySet, changed bool, err error) {
	// Read under the lock loadFile (SIGHUP) holds too, so an older read can
	// never be swapped in over a newer one.
	is.fileMu.Lock()
	defer is.fileMu.Unlock()
	data, err := readBounded(is.cfg.SPIFFE.BundleFile, maxJWKSSize)
	if err != nil {
		return nil, false, err
	}
	if bytes.Equal(data, is.fileData) {
		return nil, false, nil
	}
	is.fileData = data
	if set, err = parseBundle(is.spiffeTD, data, log); err != nil {
		return nil, false, err
	}
	is.keys.Store(set)
	return set, true, nil
}

// readBounded reads a key file of at most maxJWKSSize bytes.
func readBounded(path string, limit int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(data) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return data, nil
}

// checkSPIFFE checks the verified claims of a token for a spiffe issuer: sub
// must be a SPIFFE ID in the trust domain, and an iss must be the configured
// issuer. It returns the SPIFFE ID.
func checkSPIFFE(is *issuer, claims map[string]any) (spiffeid.ID, *rejection) {
	sub, _ := claims["sub"].(string)
	id, err := spiffeid.FromString(sub)
	if err != nil {
		return spiffeid.ID{}, reject(ReasonInvalidClaim, "token subject (sub) is not a valid SPIFFE ID", err.Error())
	}
	if id.TrustDomain() != is.spiffeTD {
		return spiffeid.ID{}, reject(ReasonInvalidClaim,
			fmt.Sprintf("token subject is not in trust domain %s", is.spiffeTD), "sub: "+clip(sub, 256))
	}
	if iss, ok := claims["iss"]; ok {
		s, _ := iss.(string)
		if rej := spiffeIssuerMismatch(is, s); rej != nil {
			return spiffeid.ID{}, rej
		}
	}
	return id, nil
}

// spiffeIssuerMismatch refuses an iss a spiffe issuer was not configured for.
func spiffeIssuerMismatch(is *issuer, iss string) *rejection {
	switch {
	case is.cfg.Issuer == "":
		return reject(ReasonUnknownIssuer,
			fmt.Sprintf("token issuer %q is not trusted: the issuer for trust domain %s accepts JWT-SVIDs without iss only", clip(iss, 128), is.spiffeTD),
			"set issuer: on the spiffe issuer to accept this iss")
	case iss != is.cfg.Issuer:
		return reject(ReasonUnknownIssuer, fmt.Sprintf("token issuer %q is not trusted", clip(iss, 128)),
			"spiffe issuer expects iss "+is.cfg.Issuer)
	}
	return nil
}
