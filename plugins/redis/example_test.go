package redis_test

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/credbroker/credbroker/plugins/redis"
)

// section decodes YAML strictly, as the broker decodes configuration.
func section(src string) func(v any) error {
	return func(v any) error {
		dec := yaml.NewDecoder(strings.NewReader(src))
		dec.KnownFields(true)
		return dec.Decode(v)
	}
}

// A role's rules are ACL SETUSER rules. Rules that would weaken the issued
// credential, or that let the holder make users of its own or outlive its
// lease, are errors naming their index.
func ExampleDriver_ParseRole() {
	d := redis.Driver{}
	role, warnings, err := d.ParseRole(section(`rules: ["~orders:*", "+@read", "(%R~audit:*   +xrange)"]`))
	fmt.Println(role.Rules, warnings, err)

	_, _, err = d.ParseRole(section(`rules: ["~orders:*", "nopass"]`))
	fmt.Println(err)

	_, _, err = d.ParseRole(section(`rules: [allkeys, "+@admin"]`))
	fmt.Println(err)
	// Output:
	// [~orders:* +@read (%R~audit:* +xrange)] [] <nil>
	// rules[1]: "nopass": would let anyone log in as the issued user with any password
	// rules[1]: "+@admin": grants every administrative command, ACL SETUSER and CONFIG SET included, so a holder could make users of its own that outlive its lease: grant the categories and commands the workload needs instead, and write "-@admin" after a category that holds some of them
}
