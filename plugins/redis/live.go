package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	goredis "github.com/redis/go-redis/v9"
)

// errNoDryRun says the server has no ACL DRYRUN (Redis before 7.0).
var errNoDryRun = errors.New("the server has no ACL DRYRUN")

// liveGrants asks the server whether probe, a user it has just made with
// rules, may run any of refusedCommands, and returns an error naming those
// it may. The server decides with its own categories, which can hold more
// than Redis 7.0's built-in table says.
func liveGrants(ctx context.Context, c *goredis.Client, probe string, rules []string) error {
	granted, err := dryRunGrants(ctx, c, probe)
	if errors.Is(err, errNoDryRun) {
		granted, err = catGrants(ctx, c, rules)
	}
	if err != nil {
		return err
	}
	if len(granted) == 0 {
		return nil
	}
	return fmt.Errorf("on this server the rules grant %s: remove the categories that hold them, "+
		"or add -@admin and -@dangerous after them", describe(granted))
}

// dryRunArgs returns the words of an ACL DRYRUN of the refused command c:
// its name and subcommand, then filler up to its arity.
func dryRunArgs(c refusedCommand) []any {
	var args []any
	for w := range strings.SplitSeq(c.name, "|") {
		args = append(args, w)
	}
	for len(args) < max(c.arity, -c.arity) {
		args = append(args, "x")
	}
	return args
}

// dryRunGrants returns the refused commands that ACL DRYRUN says probe may
// run, in one round trip. A command the server does not know is skipped. A
// reply refusing only the filler key or channel means the command itself is
// granted.
func dryRunGrants(ctx context.Context, c *goredis.Client, probe string) ([]string, error) {
	cmds := make([]*goredis.Cmd, len(refusedCommands))
	if err := pipelined(ctx, c, func(pipe goredis.Pipeliner) {
		for i, rc := range refusedCommands {
			cmds[i] = pipe.Do(ctx, append([]any{"acl", "dryrun", probe}, dryRunArgs(rc)...)...)
		}
	}); err != nil {
		return nil, classify(err)
	}
	var granted []string
	for i, cmd := range cmds {
		name := refusedCommands[i].name
		reply, err := cmd.Text()
		switch {
		case err != nil && strings.Contains(strings.ToLower(err.Error()), "unknown subcommand"):
			return nil, errNoDryRun
		case err != nil && strings.Contains(err.Error(), "not found"):
			continue // not a command of this server's version
		case err != nil:
			return nil, fmt.Errorf("ACL DRYRUN %s: %w", name, classify(err))
		case reply == "OK", strings.Contains(reply, "permissions to access"):
			granted = append(granted, name)
		case strings.Contains(reply, "permissions to run"):
		default:
			return nil, fmt.Errorf("ACL DRYRUN %s: unexpected reply %q", name, reply)
		}
	}
	return granted, nil
}

// catGrants plays rules over refusedCommands with the categories the
// server lists (ACL CAT), for servers without ACL DRYRUN. Where the server
// lists no subcommands (Redis 6), a subcommand is in the categories of its
// command.
func catGrants(ctx context.Context, c *goredis.Client, rules []string) ([]string, error) {
	root, selectors := splitRules(rules)
	lists := append(slices.Clone(selectors), root)
	var cats []string
	for _, r := range slices.Concat(lists...) {
		lower := strings.ToLower(r)
		if len(lower) > 2 && (lower[0] == '+' || lower[0] == '-') && lower[1] == '@' && lower != "+@all" && lower != "-@all" &&
			!slices.Contains(cats, lower[2:]) {
			cats = append(cats, lower[2:])
		}
	}
	members := make(map[string][]string, len(cats))
	for _, cat := range cats {
		names, err := c.Do(ctx, "acl", "cat", cat).StringSlice()
		if err != nil {
			return nil, fmt.Errorf("ACL CAT %s: %w", cat, classify(err))
		}
		members[cat] = names
	}
	categories := func(i int) []string {
		name := refusedCommands[i].name
		var in []string
		for _, cat := range cats {
			names := members[cat]
			subs := slices.ContainsFunc(names, func(n string) bool { return strings.Contains(n, "|") })
			if slices.ContainsFunc(names, func(n string) bool {
				n = strings.ToLower(n)
				return n == name || (!subs && n == parentOf(name))
			}) {
				in = append(in, cat)
			}
		}
		return in
	}
	var granted []string
	for _, rs := range lists {
		for _, name := range simulate(rs, categories).granted() {
			if !slices.Contains(granted, name) {
				granted = append(granted, name)
			}
		}
	}
	slices.Sort(granted)
	return granted, nil
}

// splitRules returns the user's own rules of checked, normalised rules, and
// the rules of each selector.
func splitRules(rules []string) (root []string, selectors [][]string) {
	for _, rule := range rules {
		if strings.HasPrefix(rule, "(") && strings.HasSuffix(rule, ")") {
			selectors = append(selectors, strings.Fields(rule[1:len(rule)-1]))
		} else {
			root = append(root, rule)
		}
	}
	return root, selectors
}
