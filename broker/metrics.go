package broker

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the broker's Prometheus series. Labels carry role and backend
// names only, never a username or anything secret.
type metrics struct {
	issued       *prometheus.CounterVec
	issueSeconds *prometheus.HistogramVec
	renewed      *prometheus.CounterVec
	backendUp    *prometheus.GaugeVec
	limited      *prometheus.CounterVec
	rootRotated  *prometheus.GaugeVec
	rotatePeriod *prometheus.GaugeVec
	breakGlass   *prometheus.CounterVec
	storeUp      prometheus.Gauge
	// tlsNotAfter has no labels; it is a vector so that it has no series
	// until a certificate is loaded (a broker without tls exports none).
	tlsNotAfter *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credbroker_issue_total",
			Help: "Credential issue requests by role and result (ok, denied, backend_error); denials of roles that do not exist count under role \"\".",
		}, []string{"role", "result"}),
		issueSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "credbroker_issue_duration_seconds",
			Help:    "Time to issue a credential, by backend.",
			Buckets: prometheus.ExponentialBuckets(0.002, 2, 12),
		}, []string{"backend"}),
		renewed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credbroker_renew_total",
			Help: "Lease renewals by role.",
		}, []string{"role"}),
		backendUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "credbroker_backend_up",
			Help: "1 when the backend's admin connection passed its last check, 0 when it failed: alarm on 0 before issues start failing.",
		}, []string{"backend", "plugin"}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credbroker_requests_limited_total",
			Help: "Calls refused with resource_exhausted because one identity exceeded limits.request_rate, by procedure.",
		}, []string{"procedure"}),
		rootRotated: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "credbroker_root_rotation_timestamp_seconds",
			Help: "When the broker last rotated the backend's admin password (Unix seconds); absent for a backend it never rotated. Alarm on its age past connection.rotate.period.",
		}, []string{"backend"}),
		rotatePeriod: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "credbroker_root_rotation_period_seconds",
			Help: "The backend's connection.rotate.period in seconds: how often the broker rotates its admin password. No series for a backend rotated only by hand.",
		}, []string{"backend"}),
		breakGlass: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credbroker_break_glass_total",
			Help: "Break-glass credentials issued, by role. Each one is emergency access someone should review; the reason is in the lease's break_glass event.",
		}, []string{"role"}),
		storeUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "credbroker_store_up",
			Help: "1 when the lease store (PostgreSQL) answered the last periodic ping, 0 when it did not: while it is 0 nothing is issued, renewed or revoked.",
		}),
		tlsNotAfter: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "credbroker_tls_certificate_expiry_timestamp_seconds",
			Help: "NotAfter of the serving TLS certificate (tls.cert_file), in Unix seconds, as loaded at start or by the last reload (SIGHUP). No series without tls.",
		}, nil),
	}
	// New has just reached the store: it is up until a check says otherwise.
	m.storeUp.Set(1)
	if reg != nil {
		reg.MustRegister(m.issued, m.issueSeconds, m.renewed, m.backendUp, m.limited, m.rootRotated, m.rotatePeriod, m.breakGlass, m.storeUp, m.tlsNotAfter)
	}
	return m
}
