package main

import (
	"bytes"
	"flag"
	"os"
	"testing"
)

var updateCLIDoc = flag.Bool("update-cli-doc", false, "rewrite docs/cli.md from the command tree")

// TestCLIReference fails while docs/cli.md differs from what the command
// tree generates; `make docs` rewrites it.
func TestCLIReference(t *testing.T) {
	const path = "../../docs/cli.md"
	var b bytes.Buffer
	if err := writeCLIReference(&b, newRoot()); err != nil {
		t.Fatal(err)
	}
	if *updateCLIDoc {
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v: run make docs", err)
	}
	if !bytes.Equal(old, b.Bytes()) {
		t.Fatalf("docs/cli.md is stale: run make docs to regenerate it from the command tree")
	}
}
