package main

import (
	"strings"
	"syscall"
	"testing"
	"time"

	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
)

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]syscall.Signal{
		"SIGTERM": syscall.SIGTERM, "TERM": syscall.SIGTERM, "term": syscall.SIGTERM,
		"HUP": syscall.SIGHUP, "SIGINT": syscall.SIGINT, "15": syscall.SIGTERM, "9": syscall.SIGKILL,
		"usr1": syscall.SIGUSR1,
	} {
		if got, err := parseSignal(in); err != nil || got != want {
			t.Errorf("parseSignal(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "-1", "999", "SIGBOGUS", "SIG", "TERM "} {
		if got, err := parseSignal(bad); err == nil {
			t.Errorf("parseSignal(%q) = %v, want an error", bad, got)
		}
	}
}

func TestRotateMargin(t *testing.T) {
	for ttl, want := range map[time.Duration]time.Duration{
		2 * time.Second:  time.Second,
		3 * time.Second:  time.Second,
		15 * time.Minute: 5 * time.Minute,
		time.Hour:        20 * time.Minute,
	} {
		if got := rotateMargin(ttl); got != want {
			t.Errorf("rotateMargin(%s) = %s, want %s", ttl, got, want)
		}
	}
}

// TestShellNote: the note connect prints before opening a shell shows the
// URI with its password masked and names the variables, the plugin's
// declared ones first.
func TestShellNote(t *testing.T) {
	cred := &credbrokerv1.Credential{
		Username: "cb_events_x", Password: "s3cretpw", Uri: "amqp://cb_events_x:s3cretpw@127.0.0.1:5672/orders",
		Env: map[string]string{"AMQP_URL": "amqp://cb_events_x:s3cretpw@127.0.0.1:5672/orders", "RABBITMQ_USERNAME": "cb_events_x",
			"RABBITMQ_PASSWORD": "s3cretpw", "RABBITMQ_VHOST": "orders", "EXTRA": "1"},
	}
	note := shellNote(cred, "rabbitmq")
	if strings.Contains(note, "s3cretpw") {
		t.Fatalf("the note holds the password: %q", note)
	}
	for _, want := range []string{
		"amqp://cb_events_x:xxxxx@127.0.0.1:5672/orders",
		"user cb_events_x in RABBITMQ_USERNAME, RABBITMQ_PASSWORD, RABBITMQ_VHOST, AMQP_URL, EXTRA",
	} {
		if !strings.Contains(note, want) {
			t.Errorf("the note %q does not hold %q", note, want)
		}
	}
}
