package redis

import (
	"fmt"
	"slices"
	"strings"
)

// A holder of an issued user must not be able to make a user of its own, read
// another user's password (or the admin's), or keep the server from removing
// its user when the lease ends: whatever it did then would outlive its lease.
// The commands that allow it are refused in every role, granted by name or
// through a category; this file says which they are and works out, rule by
// rule, what a role's rules grant.

// refusedCategories may not be granted at all (+@cat), even when later rules
// take the refused commands away again: they hold every administrative
// command, and each Redis version adds more. allcommands is +@all.
var refusedCategories = []string{"all", "admin", "dangerous"}

// refusedCommand is a command, or one subcommand of a command with
// subcommands (named "command|subcommand"), that no role may grant.
type refusedCommand struct {
	name string
	// arity is the command's arity as COMMAND INFO gives it (negative: at
	// least that many words), so ACL DRYRUN gets enough arguments.
	arity int
	// categories are the ACL categories (without "@") the command is in on
	// Redis 7.0.
	categories []string
}

// Categories of the refused commands on Redis 7.0 (COMMAND INFO).
var (
	catAdmin     = []string{"admin", "slow", "dangerous"}
	catAdminConn = []string{"admin", "slow", "dangerous", "connection"}
	catMigrate   = []string{"keyspace", "write", "slow", "dangerous"}
)

// refusedCommands are every command and subcommand no role may grant, with
// their categories on Redis 7.0. Subcommands not listed (ACL WHOAMI, CONFIG
// HELP, CLIENT SETNAME, CLUSTER SLOTS …) may be granted.
var refusedCommands = []refusedCommand{
	{"acl|deluser", -3, catAdmin},
	{"acl|dryrun", -4, catAdmin},
	{"acl|getuser", 3, catAdmin},
	{"acl|list", 2, catAdmin},
	{"acl|load", 2, catAdmin},
	{"acl|log", -2, catAdmin},
	{"acl|save", 2, catAdmin},
	{"acl|setuser", -3, catAdmin},
	{"acl|users", 2, catAdmin},
	{"bgrewriteaof", 1, catAdmin},
	{"bgsave", -1, catAdmin},
	{"client|kill", -3, catAdminConn},
	{"client|list", -2, catAdminConn},
	{"client|no-evict", 3, catAdminConn},
	{"client|pause", -3, catAdminConn},
	{"client|unblock", -3, catAdminConn},
	{"client|unpause", 2, catAdminConn},
	{"cluster|addslots", -3, catAdmin},
	{"cluster|addslotsrange", -4, catAdmin},
	{"cluster|bumpepoch", 2, catAdmin},
	{"cluster|delslots", -3, catAdmin},
	{"cluster|delslotsrange", -4, catAdmin},
	{"cluster|failover", -2, catAdmin},
	{"cluster|flushslots", 2, catAdmin},
	{"cluster|forget", 3, catAdmin},
	{"cluster|meet", -4, catAdmin},
	{"cluster|replicate", 3, catAdmin},
	{"cluster|reset", -2, catAdmin},
	{"cluster|saveconfig", 2, catAdmin},
	{"cluster|set-config-epoch", 3, catAdmin},
	{"cluster|setslot", -4, catAdmin},
	{"config|get", -3, catAdmin},
	{"config|resetstat", 2, catAdmin},
	{"config|rewrite", 2, catAdmin},
	{"config|set", -4, catAdmin},
	{"debug", -2, catAdmin},
	{"failover", -1, catAdmin},
	{"migrate", -6, catMigrate},
	{"module|list", 2, catAdmin},
	{"module|load", -3, catAdmin},
	{"module|loadex", -3, catAdmin},
	{"module|unload", 3, catAdmin},
	{"monitor", 1, catAdmin},
	{"psync", -3, catAdmin},
	{"replconf", -1, catAdmin},
	{"replicaof", 3, catAdmin},
	{"save", 1, catAdmin},
	{"shutdown", -1, catAdmin},
	{"slaveof", 3, catAdmin},
	{"slowlog|get", -2, catAdmin},
	{"sync", 1, catAdmin},
}

// whyRefused says, per command, what a holder could do with it.
var whyRefused = map[string]string{
	"acl":          "it creates ACL users, which outlive the lease, and reads other users' password hashes",
	"config":       "CONFIG SET rewrites the server's settings (aclfile, dir, requirepass) and CONFIG GET reveals requirepass, the default user's password",
	"module":       "it loads code into the server",
	"debug":        "it changes the server's internals and can crash it",
	"shutdown":     "it stops the server, so the user cannot be revoked until it is back",
	"replicaof":    "it makes the server a copy of another server, one the holder may control",
	"slaveof":      "it makes the server a copy of another server, one the holder may control",
	"failover":     "it hands the primary's role to a replica",
	"migrate":      "it moves keys to any server, one the holder may control",
	"save":         "it writes the dataset to disk at will (and, with CONFIG, anywhere)",
	"bgsave":       "it writes the dataset to disk at will (and, with CONFIG, anywhere)",
	"bgrewriteaof": "it rewrites the append-only file at will",
	"client":       "CLIENT KILL, PAUSE and UNBLOCK end or stall other users' connections, the admin's revokes included, and CLIENT LIST shows every connection",
	"monitor":      "it shows every command every client sends",
	"sync":         "it streams a copy of every key, other users' included",
	"psync":        "it streams a copy of every key, other users' included",
	"replconf":     "it acts as a replica, to stream a copy of every key",
	"cluster":      "it changes the cluster's nodes or slots, so revokes can miss a node",
	"slowlog":      "SLOWLOG GET shows other clients' commands with their arguments",
}

// parentOf returns the command of a "command|subcommand" name, or name.
func parentOf(name string) string {
	command, _, _ := strings.Cut(name, "|")
	return command
}

// directGrant returns the refused commands that the +command or
// +command|subcommand rule (lower case, without the +) grants by name: every
// refused subcommand of a command, the command itself, or, for a command
// without subcommands, its use with one first argument (+debug|reload).
func directGrant(name string) []string {
	return simulate([]string{"+" + name}, builtinCategories).granted()
}

// commandSet is what a list of ACL rules grants of refusedCommands: by[i] is
// the rule that last granted refusedCommands[i], "" when it is not granted.
type commandSet struct {
	by []string
}

// simulate applies rules, in order, to a user (or selector) that starts with
// no commands, as Redis does, and returns which refused commands they grant.
// categories gives the categories of refusedCommands[i]: the built-in
// table for Redis 7.0 at config time, the live server's at start. Rules
// that are not command rules are skipped.
func simulate(rules []string, categories func(i int) []string) commandSet {
	set := commandSet{by: make([]string, len(refusedCommands))}
	mark := func(rule string, grant bool, match func(i int, c refusedCommand) bool) {
		for i, c := range refusedCommands {
			if match(i, c) {
				set.by[i] = ""
				if grant {
					set.by[i] = rule
				}
			}
		}
	}
	all := func(int, refusedCommand) bool { return true }
	for _, rule := range rules {
		lower := strings.ToLower(rule)
		switch {
		case lower == "allcommands":
			mark(rule, true, all)
			continue
		case lower == "nocommands":
			mark(rule, false, all)
			continue
		case lower == "" || (lower[0] != '+' && lower[0] != '-'):
			continue
		}
		grant, name := lower[0] == '+', lower[1:]
		if category, ok := strings.CutPrefix(name, "@"); ok {
			if category == "all" {
				mark(rule, grant, all)
			} else {
				mark(rule, grant, func(i int, _ refusedCommand) bool { return slices.Contains(categories(i), category) })
			}
			continue
		}
		command, sub, hasSub := strings.Cut(name, "|")
		switch {
		case !hasSub: // +cmd, -cmd: the command and every subcommand
			mark(rule, grant, func(_ int, c refusedCommand) bool { return parentOf(c.name) == command })
		case grant: // +cmd|sub: the subcommand, or a command used with first argument sub
			mark(rule, true, func(_ int, c refusedCommand) bool { return c.name == name || c.name == command })
		default: // -cmd|sub: the subcommand only (Redis refuses -cmd|firstarg)
			mark(rule, false, func(_ int, c refusedCommand) bool { return c.name == command+"|"+sub })
		}
	}
	return set
}

// builtinCategories are the categories of refusedCommands[i] on Redis 7.0.
func builtinCategories(i int) []string { return refusedCommands[i].categories }

// granted returns the refused commands in s, in table order.
func (s commandSet) granted() []string {
	var out []string
	for i, by := range s.by {
		if by != "" {
			out = append(out, refusedCommands[i].name)
		}
	}
	return out
}

// grantError explains, for each rule that grants refused commands, which
// ones and why they are refused; where is "" for the user's own rules or
// "in the selector rules[3], " for a selector's. It returns nil when s
// grants none.
func (s commandSet) grantError(where string) error {
	var rules []string
	byRule := make(map[string][]string)
	for i, by := range s.by {
		if by == "" {
			continue
		}
		if _, ok := byRule[by]; !ok {
			rules = append(rules, by)
		}
		byRule[by] = append(byRule[by], refusedCommands[i].name)
	}
	if len(rules) == 0 {
		return nil
	}
	var msgs []string
	for _, rule := range rules {
		msgs = append(msgs, fmt.Sprintf("%s%q grants %s", where, rule, describe(byRule[rule])))
	}
	return fmt.Errorf("%s: add -@admin and -@dangerous after it, or grant only the commands the workload needs",
		strings.Join(msgs, "; "))
}

// headline are the refused commands an error names first: the ones that
// show best what is at stake.
var headline = []string{"acl|setuser", "config|get", "config|set", "module|load", "shutdown", "replicaof", "migrate", "client|kill"}

// describeLimit is the most commands an error names; the rest are counted.
const describeLimit = 8

// describe names commands (upper case, as Redis documents them), those of
// headline first and at most describeLimit, and says why each command named
// is refused.
func describe(names []string) string {
	names = slices.Clone(names)
	rank := func(n string) int {
		if i := slices.Index(headline, n); i >= 0 {
			return i
		}
		return len(headline)
	}
	slices.SortStableFunc(names, func(a, b string) int { return rank(a) - rank(b) })
	more := 0
	if len(names) > describeLimit {
		names, more = names[:describeLimit-2], len(names)-(describeLimit-2)
	}
	var shown, whys []string
	seen := make(map[string]bool)
	for _, n := range names {
		shown = append(shown, strings.ToUpper(strings.ReplaceAll(n, "|", " ")))
		if p := parentOf(n); !seen[p] {
			seen[p] = true
			whys = append(whys, strings.ToUpper(p)+": "+whyRefused[p])
		}
	}
	list := strings.Join(shown, ", ")
	if more > 0 {
		list += fmt.Sprintf(" and %d more", more)
	}
	return list + " (" + strings.Join(whys, "; ") + ")"
}
