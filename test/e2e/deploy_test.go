package e2e_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/credbroker/credbroker/test/harness"
)

// Paths of the deployment files, from this package's folder.
const (
	dashboardFile  = "../../deploy/grafana/credbroker.json"
	alertsFile     = "../../deploy/prometheus/alerts.yaml"
	operationsFile = "../../docs/operations.md"
)

// afterRotation lists the metrics alerts.yaml may name that have no series
// until a backend's admin password was rotated or without connection.rotate,
// which this test's broker (no store.kek) never has; broker's TestRotateRoot
// checks their values. The dashboard may name none.
var afterRotation = map[string]string{
	// Unix time of a backend's last successful root rotation.
	"credbroker_root_rotation_timestamp_seconds": "root rotation",
	// A backend's connection.rotate.period.
	"credbroker_root_rotation_period_seconds": "connection.rotate",
}

var metricName = regexp.MustCompile(`credbroker_[a-z0-9_]+`)

// TestDeployFiles checks deploy/: the Grafana dashboard is valid JSON whose
// every panel queries the templated data source, the alert rules are
// complete, and every metric either names is one a real broker exports. The
// broker is exercised (issue, renew, revoke, a denial, break-glass, a caller
// over its rate limit, an orphan swept, tls) so that every metric family has
// a series, then scraped.
func TestDeployFiles(t *testing.T) {
	t.Parallel()
	dashboard := dashboardExprs(t)
	alerts := alertExprs(t)
	if t.Failed() {
		t.FailNow()
	}

	want := map[string][]string{} // metric → where it is used
	for where, expr := range dashboard {
		for _, m := range metricName.FindAllString(expr, -1) {
			want[m] = append(want[m], where)
		}
	}
	for where, expr := range alerts {
		for _, m := range metricName.FindAllString(expr, -1) {
			if _, ok := afterRotation[m]; !ok {
				want[m] = append(want[m], where)
			}
		}
	}
	for m := range afterRotation {
		for where, expr := range dashboard {
			if slices.Contains(metricName.FindAllString(expr, -1), m) {
				t.Errorf("%s queries %s, which has no series before a root rotation (%s)", where, m, afterRotation[m])
			}
		}
	}

	families := exercisedBroker(t, func(families map[string]string) bool {
		return len(missing(want, families)) == 0
	})
	for _, m := range missing(want, families) {
		t.Errorf("%s: the broker exports no metric %s", strings.Join(want[m], ", "), m)
	}
	for m, work := range afterRotation {
		if _, ok := families[m]; ok {
			t.Errorf("the broker exports %s without a %s: check it like the others, not in afterRotation", m, work)
		}
	}
}

// missing returns the metrics of want that families lacks, sorted; a
// histogram's _bucket, _sum and _count series belong to its family.
func missing(want map[string][]string, families map[string]string) []string {
	var out []string
	for m := range want {
		if _, ok := families[m]; ok {
			continue
		}
		found := false
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(m, suffix); ok && families[base] == "histogram" {
				found = true
			}
		}
		if !found {
			out = append(out, m)
		}
	}
	slices.Sort(out)
	return out
}

// dashboardExprs parses the dashboard strictly and returns the PromQL of
// every target and templating query, by where it is.
func dashboardExprs(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		Expr       string `json:"expr"`
		RefID      string `json:"refId"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
	}
	type panel struct {
		ID         int    `json:"id"`
		Type       string `json:"type"`
		Title      string `json:"title"`
		Datasource *struct {
			UID string `json:"uid"`
		} `json:"datasource"`
		Targets []target         `json:"targets"`
		Panels  []map[string]any `json:"panels"`
		GridPos *struct{ W, H int }
	}
	var dash struct {
		UID           string            `json:"uid"`
		Title         string            `json:"title"`
		SchemaVersion int               `json:"schemaVersion"`
		Panels        []json.RawMessage `json:"panels"`
		Templating    struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Fatalf("%s: data after the dashboard's JSON object", dashboardFile)
	}
	if dash.UID == "" || dash.Title == "" || dash.SchemaVersion < 39 || len(dash.Panels) == 0 {
		t.Fatalf("%s: uid %q, title %q, schemaVersion %d, %d panels: want a uid, a title, schemaVersion 39 or later and panels",
			dashboardFile, dash.UID, dash.Title, dash.SchemaVersion, len(dash.Panels))
	}

	exprs := map[string]string{}
	vars := map[string]string{}
	for _, v := range dash.Templating.List {
		vars[v.Name] = v.Type
		if q, ok := v.Query.(map[string]any); ok {
			if s, ok := q["query"].(string); ok {
				exprs["dashboard variable "+v.Name] = s
			}
		}
	}
	if vars["datasource"] != "datasource" {
		t.Errorf("%s: no templated data source variable ${datasource}", dashboardFile)
	}
	ids := map[int]string{}
	for _, raw := range dash.Panels {
		pdec := json.NewDecoder(bytes.NewReader(raw))
		var p panel
		if err := pdec.Decode(&p); err != nil {
			t.Fatalf("%s: panel %s: %v", dashboardFile, raw, err)
		}
		where := fmt.Sprintf("dashboard panel %q", p.Title)
		if prev, dup := ids[p.ID]; dup || p.ID == 0 {
			t.Errorf("%s: id %d is missing or also %s's", where, p.ID, prev)
		}
		ids[p.ID] = p.Title
		if p.Title == "" || p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 {
			t.Errorf("%s (id %d): needs a title and a gridPos", where, p.ID)
		}
		if p.Type == "row" {
			if len(p.Panels) > 0 {
				t.Errorf("%s: a collapsed row; keep rows open so every panel is checked", where)
			}
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("%s: data source is not ${datasource}", where)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: no query", where)
		}
		for _, tg := range p.Targets {
			if tg.Expr == "" || tg.Datasource.UID != "${datasource}" {
				t.Errorf("%s, query %s: expr %q on data source %q; want PromQL on ${datasource}", where, tg.RefID, tg.Expr, tg.Datasource.UID)
				continue
			}
			if !metricName.MatchString(tg.Expr) {
				t.Errorf("%s, query %s: %q names no credbroker metric", where, tg.RefID, tg.Expr)
			}
			exprs[where+" query "+tg.RefID] = tg.Expr
		}
	}
	return exprs
}

// alertExprs parses the alert rules and returns each rule's expression by
// rule. Each rule must carry a severity and say what to do, with a runbook
// section that docs/operations.md has.
func alertExprs(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	ops, err := os.ReadFile(operationsFile)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(ops))
	for sc.Scan() {
		if h, ok := strings.CutPrefix(sc.Text(), "### "); ok {
			anchors[strings.ToLower(strings.TrimSpace(h))] = true
		}
	}

	exprs := map[string]string{}
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			where := "alert " + r.Alert
			if r.Alert == "" {
				t.Errorf("%s: group %s has a rule that is not an alert", alertsFile, g.Name)
				continue
			}
			if _, dup := exprs[where]; dup {
				t.Errorf("%s: two rules named %s", alertsFile, r.Alert)
			}
			exprs[where] = r.Expr
			if s := r.Labels["severity"]; s != "critical" && s != "warning" && s != "info" {
				t.Errorf("%s: severity %q, want critical, warning or info", where, s)
			}
			for _, a := range []string{"summary", "description", "runbook"} {
				if r.Annotations[a] == "" {
					t.Errorf("%s: no %s annotation", where, a)
				}
			}
			if anchor, ok := strings.CutPrefix(r.Annotations["runbook"], "docs/operations.md#"); !ok || !anchors[anchor] {
				t.Errorf("%s: runbook %q is not a section of docs/operations.md (### %s)", where, r.Annotations["runbook"], r.Alert)
			}
		}
	}
	if len(exprs) == 0 {
		t.Fatalf("%s: no alert rules", alertsFile)
	}
	return exprs
}

// exercisedBroker starts a broker with tls, a break-glass policy and a
// request rate limit on a Redis server of its own (whose orphans the sweep
// may revoke), uses every path that counts something, then scrapes /metrics
// until done accepts its metric families (name → type), for up to 30 s, and
// returns the last scrape's.
func exercisedBroker(t *testing.T, done func(map[string]string) bool) map[string]string {
	t.Helper()
	dir := t.TempDir()
	ca := newCA(t, "credbroker deploy test CA")
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	ca.writeServerCert(t, 1, certFile, keyFile)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	httpClient := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	rd := harness.StartRedisServer(t)
	iss := harness.NewIssuer(t, "test")
	store := harness.NewStore(t)
	const backend = "cache"
	cfg := harness.ServicesConfig(iss, rd.BackendYAML(backend), fmt.Sprintf(`metrics_listen: %s
tls: {cert_file: %s, key_file: %s}
reaper: {interval: 1s, pending_grace: 3s, sweep_interval: 2s}
limits: {request_rate: 5, request_burst: 10}
roles:
  - name: cache
    backend: %s
    default_ttl: 10m
    max_ttl: 1h
    break_glass_max_ttl: 5m
    redis:
      rules: ["~deploy:*", "+@read"]
policies:
  - {name: app, issuer: test, subject: app, roles: [cache]}
  - {name: oncall, issuer: test, subject: oncall, break_glass_roles: [cache]}
`, harness.MetricsListenPlaceholder, certFile, keyFile, backend))
	b := harness.StartBrokerWith(t, harness.Options{Config: cfg, Env: store.StoreEnv(), HTTPClient: httpClient})
	app := iss.Token(t, "app", nil, time.Hour)
	oncall := iss.Token(t, "oncall", nil, time.Hour)

	cred := issue(t, b, app, map[string]any{"role": "cache"})
	seen := &secrets{b: b}
	seen.addIssued(cred)
	if status, r := b.Call(t, app, "RenewLease", map[string]any{"leaseId": cred.LeaseID}); status != http.StatusOK {
		t.Fatalf("RenewLease: HTTP %d %v", status, r)
	}
	if status, r := b.Call(t, app, "RevokeLease", map[string]any{"leaseId": cred.LeaseID}); status != http.StatusOK {
		t.Fatalf("RevokeLease: HTTP %d %v", status, r)
	}
	// Break-glass without a reason is a denial; with one, break-glass.
	if status, r := b.Call(t, oncall, "IssueCredential", map[string]any{"role": "cache"}); status != http.StatusForbidden {
		t.Fatalf("break-glass role without a reason: HTTP %d %v, want 403", status, r)
	}
	seen.addIssued(issue(t, b, oncall, map[string]any{"role": "cache", "breakGlassReason": "deploy test"}))
	// Another identity goes over limits.request_rate.
	flood := iss.Token(t, "flood", nil, time.Hour)
	limited := false
	for range 50 {
		if status, _ := b.Call(t, flood, "ListRoles", map[string]any{}); status == http.StatusTooManyRequests {
			limited = true
			break
		}
	}
	if !limited {
		t.Fatal("50 quick calls of one identity were never refused by limits.request_rate")
	}
	// A user of the broker's kind that no lease accounts for: the sweep's.
	rd.Do(t, "ACL", "SETUSER", harness.RandomName("cb_orphan_"), "on", ">x")

	var families map[string]string
	deadline := time.Now().Add(30 * time.Second)
	for {
		families = scrapeFamilies(t, httpClient, b.MetricsAddr)
		if done(families) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("the broker exports %d credbroker metric families: %v", len(families), slices.Sorted(maps.Keys(families)))
	seen.check(t, store)
	return families
}

// scrapeFamilies returns the credbroker_ metric families on /metrics, by
// their # TYPE lines.
func scrapeFamilies(t *testing.T, c *http.Client, addr string) map[string]string {
	t.Helper()
	res, err := c.Get(addr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: HTTP %d", res.StatusCode)
	}
	families := map[string]string{}
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" && strings.HasPrefix(f[2], "credbroker_") {
			families[f[2]] = f[3]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read /metrics: %v", err)
	}
	return families
}
