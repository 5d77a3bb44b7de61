package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
	"golang.org/x/term"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/credbroker/credbroker/client"
)

// The output formats of the client commands (-o/--output).
const (
	outTable = "table" // for people: lower-case states, short durations, relative times
	outWide  = "wide"  // table with more columns and RFC 3339 times
	outJSON  = "json"  // the API's protojson, as before -o existed
	outYAML  = "yaml"  // the same document as json, in YAML
	outEnv   = "env"   // creds: shell exports
	outURI   = "uri"   // creds: the connection URI
)

// tableFormats are what every client command prints.
var tableFormats = []string{outTable, outWide, outJSON, outYAML}

// output is the -o/--output flag of one command.
type output struct {
	value   string
	formats []string
	// alias is the deprecated flag (--format) that means the same, when
	// the command had one before -o; aliases maps its old values to
	// formats (text → table).
	alias   string
	aliases map[string]string
}

// addOutputFlag registers -o/--output on cmd, accepting formats (the first
// four are table, wide, json, yaml in that order by convention). The flag
// is per command: serve, export and the rest never inherit it.
func addOutputFlag(cmd *cobra.Command, formats ...string) *output {
	o := &output{formats: formats}
	cmd.Flags().StringVarP(&o.value, "output", "o", "",
		"output format: "+orList(formats)+" (default table on a terminal, json otherwise)")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(formats, cobra.ShellCompDirectiveNoFileComp))
	return o
}

// deprecatedAlias registers --name as a deprecated spelling of -o (scripts
// use it); old maps the values that are spelled differently (text → table).
func (o *output) deprecatedAlias(cmd *cobra.Command, name, usage string, old map[string]string) {
	o.alias, o.aliases = name, old
	cmd.Flags().StringVar(new(string), name, "", usage)
	_ = cmd.Flags().MarkDeprecated(name, "use -o/--output instead")
}

// resolve returns the format to print to w: the one asked for (by -o, or by
// the deprecated alias), else table when w is a terminal and json when it is
// not (so pipes to jq keep getting JSON). A format the command does not
// print is a usage error.
func (o *output) resolve(cmd *cobra.Command, w io.Writer) (string, error) {
	format := o.value
	if o.alias != "" && cmd.Flags().Changed(o.alias) {
		old := cmd.Flags().Lookup(o.alias).Value.String()
		if o.value != "" {
			return "", usageError{fmt.Errorf("give -o/--output or --%s, not both (--%s is deprecated)", o.alias, o.alias)}
		}
		format = old
		if f, ok := o.aliases[old]; ok {
			format = f
		}
		if !slices.Contains(o.formats, format) {
			return "", usageError{fmt.Errorf("--%s must be %s, not %q", o.alias, orList(append(mapKeys(o.aliases), o.formats...)), old)}
		}
	}
	if format == "" {
		return defaultFormat(w), nil
	}
	if !slices.Contains(o.formats, format) {
		return "", usageError{fmt.Errorf("-o/--output must be %s, not %q", orList(o.formats), format)}
	}
	return format, nil
}

func mapKeys(m map[string]string) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// orList is "a, b or c".
func orList(s []string) string {
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// defaultFormat is table for a terminal and json for anything else.
func defaultFormat(w io.Writer) string {
	if isTerminal(w) {
		return outTable
	}
	return outJSON
}

// isTerminal reports whether w is a terminal (not a file, a pipe or
// /dev/null, which is a character device but no terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

// useColor reports whether to colour what is written to w: only on a
// terminal, and never with NO_COLOR set to anything but "" (no-color.org).
func useColor(w io.Writer, getenv func(string) string) bool {
	return getenv("NO_COLOR") == "" && isTerminal(w)
}

// colorFor is useColor for a command's stdout and the process environment.
func colorFor(w io.Writer) bool { return useColor(w, os.Getenv) }

// printJSON writes m as the API's JSON (protojson, multi-line), as every
// client command did before -o; scripts read it with jq.
func printJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

// printYAML writes the document printJSON writes, as YAML: the protojson
// is parsed as YAML (JSON is YAML) so field names, their order and value
// types stay exactly those of the JSON, then re-styled as block YAML.
func printYAML(w io.Writer, m proto.Message) error {
	b, err := protojson.Marshal(m)
	if err != nil {
		return err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("yaml: %w", err)
	}
	blockStyle(&doc)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return fmt.Errorf("yaml: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("yaml: %w", err)
	}
	_, err = w.Write(buf.Bytes())
	return err
}

// blockStyle clears the flow and quoting styles the JSON parse left, so the
// encoder writes plain block YAML (it still quotes a string that would read
// as another type, such as protojson's int64 "3").
func blockStyle(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		blockStyle(c)
	}
}

// printMessage writes m as json or yaml, or with table for table and wide.
func printMessage(w io.Writer, format string, m proto.Message, table func() error) error {
	switch format {
	case outJSON:
		return printJSON(w, m)
	case outYAML:
		return printYAML(w, m)
	default:
		return table()
	}
}

// callAndPrint is the body of a client command that makes one call: it
// resolves the command's -o, makes the call with the CLI's client and
// prints the answer, json and yaml as the API's document and table and wide
// with table (given stdout and the format).
func callAndPrint[M proto.Message](cmd *cobra.Command, out *output, call func(ctx context.Context, c *client.Client) (M, error),
	table func(w io.Writer, format string, m M) error) error {
	stdout := cmd.OutOrStdout()
	format, err := out.resolve(cmd, stdout)
	if err != nil {
		return err
	}
	c, err := newClient()
	if err != nil {
		return err
	}
	m, err := call(cmd.Context(), c)
	if err != nil {
		return err
	}
	return printMessage(stdout, format, m, func() error { return table(stdout, format, m) })
}

// answer is a call's response message, or its error (a failed call has no
// response).
func answer[M any](resp *connect.Response[M], err error) (*M, error) {
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}
