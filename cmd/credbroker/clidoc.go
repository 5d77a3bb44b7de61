package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// writeCLIReference writes the reference of every command of root as one
// Markdown document, generated from the command tree so it cannot drift
// from --help: docs/cli.md is this output (`make docs` rewrites it, and a
// test fails while it is stale).
func writeCLIReference(w io.Writer, root *cobra.Command) error {
	root.InitDefaultCompletionCmd()
	root.DisableAutoGenTag = true
	fmt.Fprintf(w, "# credbroker command reference\n\n")
	fmt.Fprintf(w, "<!-- Generated from the command tree by `make docs`; edit the commands' help in cmd/credbroker, not this file. -->\n\n")
	fmt.Fprintf(w, "Every command also prints this with `--help`. Exit status: 0 on success, 1 when the command failed (the message says why), 2 for a wrong command line; `exec` and `connect` exit with their program's status.\n\n")
	var err error
	walk(root, func(c *cobra.Command) {
		if err != nil || c.Hidden || c.Name() == "help" || c.Deprecated != "" {
			return
		}
		c.DisableAutoGenTag = true
		err = doc.GenMarkdownCustom(c, w, docAnchor)
	})
	return err
}

// docAnchor turns cobra's per-command file name (credbroker_lease_get.md) into
// the heading's anchor in the one document (#credbroker-lease-get).
func docAnchor(file string) string {
	return "#" + strings.ReplaceAll(strings.TrimSuffix(file, ".md"), "_", "-")
}
