package authn

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Identity is a verified caller: who the token says it is, once the signature,
// issuer, audience and validity times have checked out. The Identities
// [Verifier.Verify] returns for one token share their Audience and Claims:
// treat them as read-only.
type Identity struct {
	// Issuer is the IssuerConfig.Name that verified the token.
	Issuer string
	// IssuerURL is the token's iss claim; empty for a JWT-SVID without one.
	IssuerURL string
	// Subject is the token's sub claim; never empty. For a spiffe issuer it
	// is a SPIFFE ID in its trust domain, e.g. spiffe://example.org/ns/prod/sa/api.
	Subject string
	// Audience is the token's aud claim.
	Audience []string
	// ExpiresAt is the token's exp claim.
	ExpiresAt time.Time
	// Claims holds every claim of the token, decoded by encoding/json
	// (string, float64, bool, []any, map[string]any, nil), for policy checks.
	Claims map[string]any
}

// Verifier verifies identity tokens against the configured issuers. It is safe
// for concurrent use. Close stops its background key refreshes.
type Verifier struct {
	log       *slog.Logger
	byIss     map[string]*issuer
	byTD      map[spiffeid.TrustDomain]*issuer // spiffe issuers
	issuers   []*issuer
	ownClient *http.Client // closed on Close; nil when the caller gave one
	now       func() time.Time
	leeway    time.Duration
	cache     *tokenCache // the tokens it accepted, by their SHA-256

	ctx    context.Context // ends on Close; bounds every fetch
	cancel context.CancelFunc
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// issuer is one trusted issuer with its parser and current keys.
type issuer struct {
	cfg    IssuerConfig
	algs   []string
	parser *jwt.Parser
	log    *slog.Logger
	keys   atomic.Pointer[keySet] // nil until the first successful load
	remote *remote                // nil for jwks_file and bundle_file issuers

	spiffeTD spiffeid.TrustDomain // zero unless a spiffe issuer

	fileMu   sync.Mutex
	fileData []byte // content of the key file the current keys came from
}

// NewVerifier validates cfg, reads the jwks_file issuers' key files and starts
// the jwks_url and discovery issuers' key refreshes. A key file that cannot be
// read is an error; a key URL that cannot be reached is not: it is logged and
// retried when tokens need it, and its issuer's tokens are rejected meanwhile.
// ctx bounds the initial fetches only; the Verifier lives until Close.
func NewVerifier(ctx context.Context, cfg Config) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("authn config: %w", err)
	}
	leeway := cmp.Or(cfg.Leeway, defaultLeeway)
	minInterval := cmp.Or(cfg.RefreshInterval, defaultRefreshInterval)
	periodic := cmp.Or(cfg.PeriodicRefresh, defaultPeriodicRefresh)
	logger := cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler)).With(slog.String("component", "authn"))
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	client := cfg.HTTPClient
	var ownClient *http.Client
	if client == nil {
		client = &http.Client{Timeout: defaultHTTPTimeout, CheckRedirect: checkRedirect}
		ownClient = client
	}

	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	v := &Verifier{
		log:       logger,
		byIss:     make(map[string]*issuer, len(cfg.Issuers)),
		byTD:      make(map[spiffeid.TrustDomain]*issuer),
		ownClient: ownClient,
		now:       now,
		leeway:    leeway,
		cache:     newTokenCache(cacheSize),
		ctx:       bg,
		cancel:    cancel,
	}
	var remotes []*remote
	var watched []*issuer
	for _, ic := range cfg.Issuers {
		ic = ic.resolved()
		is := &issuer{
			cfg:  ic,
			algs: ic.algorithms(),
			log:  logger.With(slog.String("issuer", ic.Name)),
		}
		opts := []jwt.ParserOption{
			jwt.WithValidMethods(is.algs),
			jwt.WithLeeway(leeway),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithAudience(ic.Audiences...),
			jwt.WithTimeFunc(now),
		}
		if ic.SPIFFE != nil {
			// iss is optional for JWT-SVIDs: checkSPIFFE checks it.
			is.spiffeTD, _ = ic.SPIFFE.trustDomain() // validated above
			v.byTD[is.spiffeTD] = is
		} else {
			opts = append(opts, jwt.WithIssuer(ic.Issuer))
		}
		is.parser = jwt.NewParser(opts...)
		if ic.JWKSFile != "" || (ic.SPIFFE != nil && ic.SPIFFE.BundleFile != "") {
			if err := is.loadFile(); err != nil {
				v.Close()
				return nil, fmt.Errorf("issuer %s: %w", ic.Name, err)
			}
			if ic.SPIFFE != nil {
				watched = append(watched, is)
			}
		} else {
			r, err := newRemote(v, is, client, minInterval, periodic)
			if err != nil {
				v.Close()
				return nil, fmt.Errorf("issuer %s: %w", ic.Name, err)
			}
			is.remote = r
			remotes = append(remotes, r)
		}
		v.issuers = append(v.issuers, is)
		if ic.Issuer != "" {
			v.byIss[ic.Issuer] = is
		}
	}

	// Fetch every remote key set at once; a failure is logged by fetch and
	// retried later, so only the caller giving up stops the start.
	waits := make([]<-chan struct{}, 0, len(remotes))
	for _, r := range remotes {
		waits = append(waits, r.trigger())
	}
	for _, w := range waits {
		select {
		case <-w:
		case <-ctx.Done():
			v.Close()
			return nil, fmt.Errorf("authn: fetching issuer keys: %w", ctx.Err())
		}
	}
	for _, r := range remotes {
		if v.goAdd() {
			go r.run(v.ctx)
		}
	}
	for _, is := range watched {
		if v.goAdd() {
			go is.watchBundleFile(v.ctx, v.wg.Done)
		}
	}
	return v, nil
}

// goAdd registers a background goroutine unless the Verifier is closed.
func (v *Verifier) goAdd() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return false
	}
	v.wg.Add(1)
	return true
}

// Close stops the background key refreshes and waits for them to end. Verify
// keeps working with the keys already loaded. Close may be called more than
// once.
func (v *Verifier) Close() {
	v.mu.Lock()
	v.closed = true
	v.mu.Unlock()
	v.cancel()
	v.wg.Wait()
	for _, is := range v.issuers {
		is.remote.closeIdle()
	}
	if v.ownClient != nil {
		v.ownClient.CloseIdleConnections()
	}
}

// Reload re-reads every jwks_file and bundle_file and re-fetches every jwks_url and discovery
// issuer's keys, ignoring the refresh rate limit; meant for SIGHUP. An issuer
// whose keys cannot be reloaded keeps its previous keys; the errors of all
// such issuers are returned, joined.
func (v *Verifier) Reload(ctx context.Context) error {
	v.mu.Lock()
	closed := v.closed
	v.mu.Unlock()
	if closed {
		return errors.New("authn: reload: verifier is closed")
	}
	var errs []error
	for _, is := range v.issuers {
		var err error
		if is.remote != nil {
			err = is.remote.refreshNow(ctx)
		} else {
			err = is.loadFile()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("issuer %s: %w", is.cfg.Name, err))
		}
	}
	return errors.Join(errs...)
}

// loadFile reads the issuer's jwks_file or spiffe.bundle_file and swaps its
// keys in.
func (is *issuer) loadFile() error {
	is.fileMu.Lock()
	defer is.fileMu.Unlock()
	set, data, err := is.cfg.readKeyFile(is.log)
	if err != nil {
		return err
	}
	is.keys.Store(set)
	is.fileData = data
	if is.cfg.SPIFFE != nil {
		is.log.Info("issuer signing keys loaded", slog.String("bundle_file", is.cfg.SPIFFE.BundleFile), slog.Any("kids", set.kids()))
	} else {
		is.log.Info("issuer signing keys loaded", slog.String("jwks_file", is.cfg.JWKSFile), slog.Any("kids", set.kids()))
	}
	return nil
}

// Verify checks a bearer token (without the "Bearer " prefix) and returns the
// identity it proves. The token must be a signed JWT from a configured issuer,
// picked by its iss claim (or, for a JWT-SVID whose iss names no issuer or is
// absent, by the trust domain of its SPIFFE ID sub), signed with an algorithm that issuer allows and a
// key from its key set, carrying one of its audiences, a sub, and an exp that
// has not passed; nbf and iat must not be in the future, each within the
// configured leeway.
//
// Every error wraps ErrUnauthenticated and is a *VerifyError whose message is
// short, safe to show the caller, and never contains the token. The detailed
// reason is logged: at Info for tokens naming a configured issuer, at Debug
// otherwise.
//
// A token accepted once is remembered (see the package documentation, Token
// cache) and accepted again without checking its signature for as long as
// it would be accepted afresh, for at most a minute.
func (v *Verifier) Verify(ctx context.Context, token string) (Identity, error) {
	cacheable := token != "" && len(token) <= MaxTokenSize
	var sum [sha256.Size]byte
	if cacheable {
		sum = sha256.Sum256([]byte(token))
		if id, ok := v.cached(sum, v.now()); ok {
			v.logVerified(ctx, id, true)
			return id, nil
		}
	}
	ok, rej := v.verify(ctx, token)
	if rej != nil {
		v.logRejection(ctx, rej)
		return Identity{}, rej.VerifyError
	}
	if cacheable {
		// The time after the checks: a hit is only ever at or after it.
		v.remember(sum, ok, v.now())
	}
	v.logVerified(ctx, ok.id, false)
	return ok.id, nil
}

func (v *Verifier) logVerified(ctx context.Context, id Identity, cached bool) {
	if !v.log.Enabled(ctx, slog.LevelDebug) {
		return // spare building the attributes of every call
	}
	v.log.LogAttrs(ctx, slog.LevelDebug, "token verified",
		slog.String("issuer", id.Issuer), slog.String("subject", clip(id.Subject, 256)), slog.Bool("cached", cached))
}

func (v *Verifier) verify(ctx context.Context, raw string) (verified, *rejection) {
	if raw == "" {
		return verified{}, reject(ReasonEmpty, "token is empty", "")
	}
	if len(raw) > MaxTokenSize {
		return verified{}, reject(ReasonTooLarge, fmt.Sprintf("token is larger than %d KiB", MaxTokenSize>>10),
			fmt.Sprintf("%d bytes", len(raw)))
	}
	header, unverified, err := peek(raw)
	if err != nil {
		return verified{}, reject(ReasonMalformed, "token is malformed: not a signed JWT", err.Error())
	}
	iss, _ := unverified["iss"].(string)
	sub, _ := unverified["sub"].(string)
	is := v.byIss[iss]
	if is == nil && iss == "" && len(v.byTD) == 0 {
		return verified{}, reject(ReasonNoIssuer, "token has no issuer (iss) claim", "")
	}
	if is == nil {
		// A JWT-SVID, with or without iss, is for the issuer of its
		// subject's trust domain; checkSPIFFE checks its iss.
		if id, err := spiffeid.FromString(sub); err == nil {
			is = v.byTD[id.TrustDomain()]
		}
	}
	if is == nil {
		if iss == "" {
			return verified{}, reject(ReasonNoIssuer,
				"token has no issuer (iss) claim and its subject is not a SPIFFE ID of a trusted trust domain", "sub: "+clip(sub, 256))
		}
		return verified{}, reject(ReasonUnknownIssuer, fmt.Sprintf("token issuer %q is not trusted", clip(iss, 128)), "")
	}
	ok, rej := v.verifyFor(ctx, is, raw, header)
	if rej != nil {
		rej.issuer = is.cfg.Name
		rej.subject = sub
	}
	return ok, rej
}

// verifyFor verifies a token that names is as its issuer.
func (v *Verifier) verifyFor(ctx context.Context, is *issuer, raw string, header map[string]any) (verified, *rejection) {
	alg, _ := header["alg"].(string)
	switch {
	case alg == "":
		return verified{}, reject(ReasonMalformed, "token has no algorithm (alg) header", "")
	case strings.EqualFold(alg, "none"):
		return verified{}, reject(ReasonAlgorithm, `token algorithm "none" is never accepted`, "unsigned token")
	case strings.HasPrefix(strings.ToUpper(alg), "HS"):
		return verified{}, reject(ReasonAlgorithm,
			fmt.Sprintf("token algorithm %q is never accepted: HMAC cannot be verified with public keys", clip(alg, 16)),
			"allowed: "+strings.Join(is.algs, ", "))
	case !slices.Contains(is.algs, alg):
		return verified{}, reject(ReasonAlgorithm, fmt.Sprintf("token algorithm %q is not allowed for this issuer", clip(alg, 16)),
			"allowed: "+strings.Join(is.algs, ", "))
	}
	if _, ok := header["crit"]; ok {
		return verified{}, reject(ReasonCritical, "token has critical (crit) header extensions that are not supported", "")
	}
	kidv, hasKID := header["kid"]
	kid, ok := kidv.(string)
	if hasKID && !ok {
		return verified{}, reject(ReasonMalformed, "token key id (kid) header is not a string", "")
	}

	claims := jwt.MapClaims{}
	var keyRej *rejection
	var keys *keySet // the set the key came from
	_, err := is.parser.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		key, set, rej := v.keyFor(ctx, is, t.Method.Alg(), kid, hasKID)
		if rej != nil {
			keyRej = rej
			return nil, rej
		}
		keys = set
		return key, nil
	})
	if err != nil {
		if keyRej != nil {
			return verified{}, keyRej
		}
		return verified{}, classify(err, is, claims)
	}

	sub, err := claims.GetSubject()
	if err != nil {
		return verified{}, reject(ReasonInvalidClaim, "token subject (sub) claim is not a string", err.Error())
	}
	if sub == "" {
		return verified{}, reject(ReasonNoSubject, "token has no subject (sub) claim", "")
	}
	issURL := is.cfg.Issuer
	if is.cfg.SPIFFE != nil {
		sid, rej := checkSPIFFE(is, claims)
		if rej != nil {
			return verified{}, rej
		}
		sub = sid.String()
		issURL, _ = claims["iss"].(string)
	}
	aud, _ := claims.GetAudience()
	exp, _ := claims.GetExpirationTime() // required, so present after validation
	if rej := v.checkLifetime(is, exp.Time, claims); rej != nil {
		return verified{}, rej
	}
	out := verified{
		id: Identity{
			Issuer:    is.cfg.Name,
			IssuerURL: issURL,
			Subject:   sub,
			Audience:  []string(aud),
			ExpiresAt: exp.Time,
			Claims:    map[string]any(claims),
		},
		is:   is,
		keys: keys,
	}
	if nbf, _ := claims.GetNotBefore(); nbf != nil { // a wrong type was refused by the parser
		out.notBefore = nbf.Time
	}
	return out, nil
}

// checkLifetime refuses a token of an issuer with max_token_lifetime that
// was made to live longer: exp - iat, or, without iat, exp - now (allowing
// the clock leeway).
func (v *Verifier) checkLifetime(is *issuer, exp time.Time, claims jwt.MapClaims) *rejection {
	limit := is.cfg.MaxTokenLifetime
	if limit <= 0 {
		return nil
	}
	iat, _ := claims.GetIssuedAt() // a wrong type was refused by the parser
	var lifetime time.Duration
	var from string
	if iat != nil {
		lifetime, from = exp.Sub(iat.Time), "iat"
	} else {
		lifetime, from = exp.Sub(v.now())-v.leeway, "now"
	}
	if lifetime <= limit {
		return nil
	}
	return reject(ReasonLifetime,
		fmt.Sprintf("token lifetime is longer than this issuer allows (max_token_lifetime %s): ask the issuer for a shorter-lived token", limit),
		fmt.Sprintf("exp - %s = %s", from, lifetime.Round(time.Second)))
}

// keyFor finds the key(s) the token may be verified with, and the key set
// they are from, refreshing a remote key set once (rate-limited) when none
// match.
func (v *Verifier) keyFor(ctx context.Context, is *issuer, alg, kid string, hasKID bool) (any, *keySet, *rejection) {
	set := is.keys.Load()
	found := set.find(kid, hasKID)
	refresh := ""
	if len(found) == 0 && is.remote != nil {
		ran, err := is.remote.refreshUnknownKID(ctx)
		if err != nil {
			r := reject(ReasonCanceled, "token verification was canceled while fetching issuer keys", err.Error())
			r.cause = err
			return nil, nil, r
		}
		if ran {
			set = is.keys.Load()
			found = set.find(kid, hasKID)
			refresh = "; keys refreshed"
		} else {
			refresh = "; key refresh skipped: rate-limited"
		}
	}
	if len(found) == 0 {
		known := "known kids: " + strings.Join(set.kids(), ", ") + refresh
		switch {
		case set == nil:
			return nil, nil, reject(ReasonKeysUnavailable, "the issuer's signing keys could not be fetched yet; try again later", "")
		case !hasKID:
			return nil, nil, reject(ReasonUnknownKey, "token has no key id (kid) and the issuer publishes no keys", "")
		default:
			return nil, nil, reject(ReasonUnknownKey, fmt.Sprintf("token key id %q is not in the issuer's key set", clip(kid, 64)), known)
		}
	}
	var usable []jwt.VerificationKey
	for _, k := range found {
		if fits(alg, k) {
			usable = append(usable, k.key)
		}
	}
	switch len(usable) {
	case 0:
		return nil, nil, reject(ReasonAlgorithm, fmt.Sprintf("token algorithm %q does not match the issuer's key %q", alg, clip(kid, 64)),
			"the key's type or alg does not allow this algorithm")
	case 1:
		return usable[0], set, nil
	default:
		return jwt.VerificationKeySet{Keys: usable}, set, nil
	}
}

// classify turns a jwt parse error into the reason a caller can act on.
func classify(err error, is *issuer, claims jwt.MapClaims) *rejection {
	detail := err.Error()
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return reject(ReasonMalformed, "token is malformed: not a signed JWT", detail)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return reject(ReasonSignature, "token signature is invalid", detail)
	case !errors.Is(err, jwt.ErrTokenInvalidClaims):
		return reject(ReasonMalformed, "token is malformed: cannot be verified", detail)
	}
	_, hasExp := claims["exp"]
	switch {
	case !hasExp:
		return reject(ReasonNoExpiry, "token has no expiry (exp) claim", detail)
	case errors.Is(err, jwt.ErrInvalidType):
		return reject(ReasonInvalidClaim, "token has a registered claim (exp, nbf, iat, iss or aud) of the wrong type", detail)
	case errors.Is(err, jwt.ErrTokenExpired):
		if exp, _ := claims.GetExpirationTime(); exp != nil {
			detail = "expired at " + exp.UTC().Format(time.RFC3339)
		}
		return reject(ReasonExpired, "token expired", detail)
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return reject(ReasonNotYetValid, "token is not valid yet (nbf is in the future)", detail)
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return reject(ReasonIssuedInFuture, "token is issued in the future (iat); check the issuer's clock", detail)
	case errors.Is(err, jwt.ErrTokenInvalidAudience), errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		aud, _ := claims.GetAudience()
		want := is.cfg.Audiences
		switch {
		case len(aud) == 0:
			return reject(ReasonAudience, "token has no audience (aud) claim; it must include "+strings.Join(want, " or "), "")
		case len(want) == 1:
			return reject(ReasonAudience, "token audience does not include "+want[0], "token aud: "+clip(strings.Join(aud, ", "), 256))
		default:
			return reject(ReasonAudience, "token audience does not include any of "+strings.Join(want, ", "),
				"token aud: "+clip(strings.Join(aud, ", "), 256))
		}
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return reject(ReasonUnknownIssuer, "token issuer is not trusted", detail)
	}
	return reject(ReasonInvalidClaim, "token claims are invalid", detail)
}

func (v *Verifier) logRejection(ctx context.Context, r *rejection) {
	level := slog.LevelDebug
	if r.issuer != "" {
		level = slog.LevelInfo
	}
	if !v.log.Enabled(ctx, level) {
		return // a flood of junk tokens at the default level builds no attributes
	}
	attrs := []slog.Attr{slog.String("reason", string(r.Reason)), slog.String("error", r.Message)}
	if r.issuer != "" {
		attrs = append(attrs, slog.String("issuer", r.issuer))
	}
	if r.subject != "" {
		attrs = append(attrs, slog.String("subject", clip(r.subject, 256)))
	}
	if r.detail != "" {
		attrs = append(attrs, slog.String("detail", r.detail))
	}
	v.log.LogAttrs(ctx, level, "token rejected", attrs...)
}

// peek decodes a compact JWS's header and claims without verifying anything,
// to choose the issuer and check the algorithm before any key is touched.
func peek(raw string) (header, claims map[string]any, err error) {
	if strings.Count(raw, ".") != 2 {
		return nil, nil, errors.New("not three dot-separated segments")
	}
	h, c, _ := strings.Cut(raw, ".")
	c, _, _ = strings.Cut(c, ".")
	if header, err = decodeSegment(h); err != nil {
		return nil, nil, fmt.Errorf("header: %w", err)
	}
	if claims, err = decodeSegment(c); err != nil {
		return nil, nil, fmt.Errorf("claims: %w", err)
	}
	return header, claims, nil
}

func decodeSegment(seg string) (map[string]any, error) {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return nil, errors.New("not base64url")
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		return nil, errors.New("not a JSON object")
	}
	return m, nil
}

// clip shortens caller-controlled text for messages and logs.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
