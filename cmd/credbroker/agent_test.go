package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// TestAgentOutputFlags: each --template pairs with the --out after it; an
// --out without one is written in --format; two --template in a row is an
// error.
func TestAgentOutputFlags(t *testing.T) {
	for name, tc := range map[string]struct {
		args    []string
		want    string // path<template, … ; or the error
		pending string // a --template left without its --out
	}{
		"OneOut":       {args: []string{"--out", "a"}, want: "a<"},
		"Pairs":        {args: []string{"--template", "a.t", "--out", "a", "--template", "b.t", "--out", "b"}, want: "a<a.t b<b.t"},
		"Mixed":        {args: []string{"--out", "e", "--template", "a.t", "--out", "a", "--out", "f"}, want: "e< a<a.t f<"},
		"TwoTemplates": {args: []string{"--template", "a.t", "--template", "b.t", "--out", "b"}, want: "invalid argument \"b.t\" for \"--template\" flag: --template a.t has no --out after it: write --template FILE --out FILE for each", pending: "a.t"},
		"Dangling":     {args: []string{"--out", "a", "--template", "b.t"}, want: "a<", pending: "b.t"},
	} {
		var outs []agentOutput
		f := &outputFlags{outputs: &outs}
		fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
		fs.Var(outFlag{f}, "out", "")
		fs.Var(templateFlag{f}, "template", "")
		err := fs.Parse(tc.args)
		var got []string
		for _, o := range outs {
			got = append(got, o.path+"<"+o.templatePath)
		}
		g := strings.Join(got, " ")
		if err != nil {
			g = err.Error()
		}
		if g != tc.want || f.template != tc.pending {
			t.Errorf("%s: %q (pending %q), want %q (pending %q)", name, g, f.template, tc.want, tc.pending)
		}
	}
}

func TestReadiness(t *testing.T) {
	r := &readiness{}
	get := func(method, path string) int {
		w := httptest.NewRecorder()
		r.ServeHTTP(w, httptest.NewRequest(method, path, nil))
		return w.Code
	}
	if c := get(http.MethodGet, "/ready"); c != http.StatusServiceUnavailable {
		t.Errorf("before a credential: %d, want 503", c)
	}
	r.set(true, time.Now().Add(time.Hour))
	if c := get(http.MethodGet, "/ready"); c != http.StatusOK {
		t.Errorf("with a valid credential: %d, want 200", c)
	}
	if c := get(http.MethodHead, "/ready"); c != http.StatusOK {
		t.Errorf("HEAD with a valid credential: %d, want 200", c)
	}
	if c := get(http.MethodPost, "/ready"); c != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", c)
	}
	if c := get(http.MethodGet, "/other"); c != http.StatusNotFound {
		t.Errorf("GET /other: %d, want 404", c)
	}
	r.set(true, time.Now().Add(-time.Second))
	if c := get(http.MethodGet, "/ready"); c != http.StatusServiceUnavailable {
		t.Errorf("with an expired credential: %d, want 503", c)
	}
	var none *readiness
	none.set(true, time.Now()) // no --ready-addr: a no-op
}
