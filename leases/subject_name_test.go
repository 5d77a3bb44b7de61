package leases

import (
	"strings"
	"testing"
	"time"
)

// A person's name (email or preferred_username) is kept next to the subject
// and recorded in the issued event; workloads have none and get no key.
func TestSubjectName(t *testing.T) {
	t.Parallel()
	s, b := setup(t)

	person := newLease(b, 15*time.Minute)
	person.Subject, person.Issuer, person.SubjectName = "00u1a2b3c4d5e6f7g8h9", "corp-oidc", "ada@example.com"
	if got, err := s.CreatePending(t.Context(), person); err != nil || got.SubjectName != "ada@example.com" {
		t.Fatalf("CreatePending = %+v, %v; want subject name ada@example.com", got, err)
	}
	if got := mustGet(t, s, person.ID); got.SubjectName != "ada@example.com" {
		t.Errorf("Get: subject name = %q", got.SubjectName)
	}
	if _, err := s.Activate(t.Context(), person, "corp-oidc:00u1a2b3c4d5e6f7g8h9", nil, nil); err != nil {
		t.Fatal(err)
	}
	if evs := eventsOf(t, s, person.ID); evs[0].Details["subject_name"] != "ada@example.com" || evs[0].Details["subject"] != person.Subject {
		t.Errorf("issued event details = %v; want subject and subject_name", evs[0].Details)
	}

	workload := createActive(t, s, newLease(b, 15*time.Minute))
	if workload.SubjectName != "" {
		t.Errorf("workload subject name = %q", workload.SubjectName)
	}
	if d, ok := eventsOf(t, s, workload.ID)[0].Details["subject_name"]; ok {
		t.Errorf("workload issued event has subject_name %q", d)
	}

	// The column refuses more than the broker's cap, whoever writes it.
	long := newLease(b, 15*time.Minute)
	long.SubjectName = strings.Repeat("a", 257)
	if _, err := s.CreatePending(t.Context(), long); err == nil {
		t.Errorf("CreatePending with a 257-byte subject name succeeded")
	}
}
