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
// credential are errors naming their index; rules that let the user outlive
// its lease are warnings.
func ExampleDriver_ParseRole() {
	d := redis.Driver{}
	role, warnings, err := d.ParseRole(section(`rules: ["~orders:*", "+@read", "(%R~audit:*   +xrange)"]`))
	fmt.Println(role.(*redis.Role).Rules, warnings, err)

	_, _, err = d.ParseRole(section(`rules: ["~orders:*", "nopass"]`))
	fmt.Println(err)

	_, warnings, _ = d.ParseRole(section(`rules: [allkeys, "+@admin"]`))
	fmt.Println(warnings[0])
	// Output:
	// [~orders:* +@read (%R~audit:* +xrange)] [] <nil>
	// rules[1]: "nopass": would let anyone log in as the issued user with any password
	// rules[1]: "+@admin" lets an issued user create ACL users or change the server's configuration, which can outlive its lease: grant only the commands the workload needs
}
