package rabbitmq

import (
	"regexp"
	"testing"
)

func TestMatchesSystemName(t *testing.T) {
	t.Parallel()
	tests := map[string]bool{
		"":                        false, // RabbitMQ: allows nothing
		"^$":                      false,
		".*":                      true,
		"^.*$":                    true,
		"orders":                  true, // amq.orders: matched anywhere
		`orders\.`:                true,
		`^orders\.`:               false,
		`^(orders|payments)\.`:    false,
		`^(orders|amq)\.`:         true,
		`^amq\.gen-.*`:            true,
		`^amq\.`:                  true,
		`^amqp\.`:                 false,
		`^am`:                     true,
		`^a`:                      true,
		`^b`:                      false,
		`(?i)^AMQ\.`:              true,
		`\Aamq`:                   true,
		`^amq\z`:                  false,
		`^amq\.$`:                 true, // the name "amq." itself
		`^amq$`:                   false,
		`\bgen-`:                  true, // amq.gen-…: "." then "g" is a word boundary
		`\Bgen-`:                  true, // amq.xgen-
		`^\Bamq`:                  false,
		`^amq\.\B`:                true, // "." then "." is no word boundary: amq..
		`^amq\.\b`:                true,
		`^.{3}\.`:                 true,
		`^.{5}\.`:                 true,
		`^[^a]`:                   false,
		`^\w+$`:                   false, // "." is not a word character
		`\n`:                      true,  // amq.x\ny
		`(?m)^x`:                  true,  // amq.\nx
		`^x|^y`:                   false,
		`x^`:                      false, // nothing can match
		`$x`:                      false,
		`(?s)^a.q..`:              true,
		`^amq.`:                   true,
		`^amq[^.]`:                false,
		`^(?:o|a)(?:r|m)`:         true,
		`^(?i)K`:                  false,
		`^orders\.|\.gen-`:        true,
		`^orders\.(?:amq\.|x)`:    false,
		`^[b-z]+\.(amq\.)?gen-.*`: false,
	}
	for pattern, want := range tests {
		if got := matchesSystemName(pattern); got != want {
			t.Errorf("matchesSystemName(%q) = %v, want %v", pattern, got, want)
		}
		// Where the answer is no, no amq. name may match, as RabbitMQ matches.
		if re := regexp.MustCompile(pattern); pattern != "" && !want {
			for _, n := range append(systemNames, "amq.", "amq.x", "amq..", "amq.\nx", "amq.xgen-", "amq.orders.q") {
				if re.MatchString(n) {
					t.Errorf("%q matches %q", pattern, n)
				}
			}
		}
	}
}

func TestWarnings(t *testing.T) {
	t.Parallel()
	for url, want := range map[string]string{
		"http://127.0.0.1:15672":          "",
		"http://localhost:15672":          "",
		"http://[::1]:15672":              "",
		"https://mq.internal:15671":       "",
		"http://mq.internal:15672/rabbit": "management_url http://mq.internal:15672/rabbit is plain http off loopback",
		"http://10.0.0.5:15672":           "use https://",
	} {
		got := (&Plugin{mgmtURL: url}).Warnings(t.Context())
		switch {
		case want == "" && len(got) > 0:
			t.Errorf("%s: Warnings = %q, want none", url, got)
		case want != "" && (len(got) != 1 || !regexp.MustCompile(regexp.QuoteMeta(want)).MatchString(got[0])):
			t.Errorf("%s: Warnings = %q, want one containing %q", url, got, want)
		}
	}
}
