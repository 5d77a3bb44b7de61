package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
)

// completionTimeout bounds how long a shell waits on the broker for a
// completion; past it the shell offers nothing rather than hang.
const completionTimeout = 3 * time.Second

// addCompletions gives the commands that take a role or a lease id
// completions fetched from the broker with the caller's own token, so a
// person is offered exactly the roles they may request and the leases they
// hold. cobra's own `completion bash|zsh|fish|powershell` command prints the
// scripts that call them.
func addCompletions(root *cobra.Command) {
	args := map[string]cobra.CompletionFunc{
		"creds":        completeRoles,
		"connect":      completeRoles,
		"exec":         completeRoles,
		"agent":        completeRoles,
		"lease get":    completeLeases,
		"lease renew":  completeLeases,
		"lease revoke": completeLeases,
	}
	flags := map[string]map[string]cobra.CompletionFunc{
		"admin revoke": {"role": completeRoles},
		"export":       {"lease": completeLeases},
	}
	walk(root, func(c *cobra.Command) {
		path := strings.TrimPrefix(c.CommandPath(), root.Name()+" ")
		if fn, ok := args[path]; ok && c.ValidArgsFunction == nil {
			c.ValidArgsFunction = firstArgOnly(fn)
		}
		for flag, fn := range flags[path] {
			if c.Flags().Lookup(flag) != nil {
				_ = c.RegisterFlagCompletionFunc(flag, fn)
			}
		}
	})
}

func walk(c *cobra.Command, fn func(*cobra.Command)) {
	fn(c)
	for _, sub := range c.Commands() {
		walk(sub, fn)
	}
}

// firstArgOnly completes the first positional argument with fn and nothing
// after it (what follows `exec ROLE --` is the user's own command line).
func firstArgOnly(fn cobra.CompletionFunc) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			if cmd.ArgsLenAtDash() >= 0 {
				return nil, cobra.ShellCompDirectiveDefault
			}
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return fn(cmd, args, toComplete)
	}
}

// completeRoles offers the roles the caller may request, each described by
// its backend and default TTL.
func completeRoles(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	c, err := newClient()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
	}
	ctx, cancel := context.WithTimeout(completionContext(cmd), completionTimeout)
	defer cancel()
	resp, err := c.ListRoles(ctx, connect.NewRequest(&credbrokerv1.ListRolesRequest{}))
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
	}
	var out []cobra.Completion
	for _, r := range resp.Msg.GetRoles() {
		if strings.HasPrefix(r.GetName(), toComplete) {
			out = append(out, cobra.CompletionWithDesc(r.GetName(),
				fmt.Sprintf("%s on %s, %s", r.GetPlugin(), r.GetBackend(), r.GetDefaultTtl().AsDuration())))
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeLeases offers the caller's active leases, each described by its
// role and username.
func completeLeases(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	c, err := newClient()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
	}
	ctx, cancel := context.WithTimeout(completionContext(cmd), completionTimeout)
	defer cancel()
	var out []cobra.Completion
	req := &credbrokerv1.ListLeasesRequest{PageSize: 500, State: credbrokerv1.LeaseState_LEASE_STATE_ACTIVE}
	for {
		resp, err := c.ListLeases(ctx, connect.NewRequest(req))
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
		}
		for _, l := range resp.Msg.GetLeases() {
			if strings.HasPrefix(l.GetId(), toComplete) {
				out = append(out, cobra.CompletionWithDesc(l.GetId(), l.GetRole()+" as "+l.GetUsername()))
			}
		}
		if req.PageToken = resp.Msg.GetNextPageToken(); req.PageToken == "" {
			return out, cobra.ShellCompDirectiveNoFileComp
		}
	}
}

// completionContext is the command's context, which cobra leaves nil when
// it runs a completion.
func completionContext(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}
