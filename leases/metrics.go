package leases

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// reaperMetrics are the reaper's Prometheus metrics. A nil *reaperMetrics
// records nothing.
type reaperMetrics struct {
	revokes *prometheus.CounterVec
	backlog prometheus.Gauge
	leases  *prometheus.GaugeVec
	orphans *prometheus.CounterVec
	// unsealed is how old the oldest event not yet chained is.
	unsealed prometheus.Gauge
	// revoking is how long the oldest REVOKING lease has been REVOKING.
	revoking prometheus.Gauge
}

func newReaperMetrics(reg prometheus.Registerer) (*reaperMetrics, error) {
	revokes, err := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "credbroker_reaper_revokes_total",
		Help: "Backend revokes the reaper attempted, by backend and result (success or failure).",
	}, []string{"backend", "result"}))
	if err != nil {
		return nil, err
	}
	backlog, err := register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "credbroker_reaper_backlog",
		Help: "Leases due for revocation at the reaper's last pass.",
	}))
	if err != nil {
		return nil, err
	}
	leases, err := register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "credbroker_leases",
		Help: "Live leases by state (PENDING, ACTIVE, REVOKING) at the reaper's last pass.",
	}, []string{"state"}))
	if err != nil {
		return nil, err
	}
	orphans, err := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "credbroker_sweep_orphans_revoked_total",
		Help: "Managed backend users that no lease accounted for, revoked by the sweep. Anything above zero deserves a look.",
	}, []string{"backend"}))
	if err != nil {
		return nil, err
	}
	unsealed, err := register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "credbroker_events_unsealed_age_seconds",
		Help: "Age of the oldest lease event not yet chained into the audit history, at the reaper's last pass; 0 when none waits. Events are chained within about a second: a value that keeps growing means no replica can seal.",
	}))
	if err != nil {
		return nil, err
	}
	revoking, err := register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "credbroker_leases_revoking_oldest_age_seconds",
		Help: "How long the oldest REVOKING lease has been REVOKING, at the reaper's last pass; 0 when none is. A revoke takes seconds: a value above minutes means a backend keeps refusing to delete a user, whose credential still works.",
	}))
	if err != nil {
		return nil, err
	}
	return &reaperMetrics{revokes: revokes, backlog: backlog, leases: leases, orphans: orphans, unsealed: unsealed, revoking: revoking}, nil
}

// register registers c, or returns the identical collector already
// registered (several reapers in one process share their metrics).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

func (m *reaperMetrics) countOrphan(backend string) {
	if m == nil {
		return
	}
	m.orphans.WithLabelValues(backend).Inc()
}

func (m *reaperMetrics) countRevoke(backend string, ok bool) {
	if m == nil {
		return
	}
	result := "failure"
	if ok {
		result = "success"
	}
	m.revokes.WithLabelValues(backend, result).Inc()
}

func (m *reaperMetrics) observe(st leaseStats) {
	if m == nil {
		return
	}
	m.backlog.Set(float64(st.due))
	m.unsealed.Set(st.unsealedAge.Seconds())
	m.revoking.Set(st.revokingAge.Seconds())
	for state, n := range st.byState {
		m.leases.WithLabelValues(string(state)).Set(float64(n))
	}
}
