package rabbitmq

import (
	"regexp"
	"regexp/syntax"
	"unicode"
)

// Names starting with "amq." belong to RabbitMQ: its built-in exchanges
// (amq.direct, amq.fanout, amq.headers, amq.match, amq.topic, and
// amq.rabbitmq.trace, .log and .event) and the server-named queues
// (amq.gen-…) of every connection. A configure permission that reaches them
// lets a holder declare, bind or delete what other users and the broker
// itself rely on, so a role's configure regexps must not.

// systemPrefix starts every name RabbitMQ keeps for itself.
const systemPrefix = "amq."

// systemNames are names of RabbitMQ's own objects, to quote the one a
// pattern matches in an error.
var systemNames = []string{
	"amq.direct", "amq.fanout", "amq.headers", "amq.match", "amq.topic",
	"amq.rabbitmq.trace", "amq.rabbitmq.log", "amq.rabbitmq.event", "amq.gen-JzTY20BRgKO-HjmUJj0wLg",
}

// Representatives of the characters around a position, as
// syntax.EmptyOpContext reads them: no character (the start or end of the
// name), a word character, a newline, and anything else.
const (
	edge  rune = -1
	word  rune = 'a'
	nl    rune = '\n'
	other rune = '.'
)

var classes = []rune{word, nl, other}

// matchesSystemName reports whether pattern, which compiles with Go's regexp
// package, matches some name that starts with "amq." as RabbitMQ matches
// permission regexps: anywhere in the name ("" is RabbitMQ's synonym for
// ^$). It decides exactly rather than by trying names: it runs the
// pattern's compiled program over every name "amq." followed by anything,
// starting the match at any position, with the context each empty-width
// assertion (^, $, \A, \z, \b, \B) sees.
func matchesSystemName(pattern string) bool {
	if pattern == "" {
		return false
	}
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return true // checkRegexp reports it; refuse rather than guess
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return true
	}
	s := search{prog: prog, seen: make(map[state]bool)}
	// A match that starts inside the prefix, at its first four positions…
	for pos := range len(systemPrefix) {
		if s.from(state{pc: uint32(prog.Start), pos: pos}) {
			return true
		}
	}
	// …or after it, where the character before is the prefix's "." or any
	// character of the free rest of the name.
	for _, prev := range classes {
		for _, next := range append([]rune{edge}, classes...) {
			if s.from(state{pc: uint32(prog.Start), pos: len(systemPrefix), prev: prev, next: next}) {
				return true
			}
		}
	}
	return false
}

// state is a thread of the program at a position of the name: inside the
// prefix (pos < 4), where the characters around it are known, or in the
// free rest (pos == 4), where prev is the class of the character before
// and next that of the character after, chosen by the search.
type state struct {
	pc         uint32
	pos        int
	prev, next rune
}

type search struct {
	prog *syntax.Prog
	seen map[state]bool
}

// around returns the characters before and after st's position.
func (st state) around() (prev, next rune) {
	if st.pos < len(systemPrefix) {
		prev = edge
		if st.pos > 0 {
			prev = rune(systemPrefix[st.pos-1])
		}
		return prev, rune(systemPrefix[st.pos])
	}
	return st.prev, st.next
}

// from reports whether the program reaches a match from st.
func (s *search) from(st state) bool {
	if s.seen[st] {
		return false
	}
	s.seen[st] = true
	inst := &s.prog.Inst[st.pc]
	prev, next := st.around()
	step := func(pc uint32) bool { st := st; st.pc = pc; return s.from(st) }
	switch inst.Op {
	case syntax.InstMatch:
		return true
	case syntax.InstFail:
		return false
	case syntax.InstAlt, syntax.InstAltMatch:
		return step(inst.Out) || step(inst.Arg)
	case syntax.InstCapture, syntax.InstNop:
		return step(inst.Out)
	case syntax.InstEmptyWidth:
		if syntax.EmptyOp(inst.Arg)&^syntax.EmptyOpContext(prev, next) != 0 {
			return false
		}
		return step(inst.Out)
	}
	// A rune instruction consumes the next character.
	if next == edge || !accepts(inst, next, st.pos < len(systemPrefix)) {
		return false
	}
	if st.pos+1 < len(systemPrefix) {
		return s.from(state{pc: inst.Out, pos: st.pos + 1})
	}
	prev = next
	if st.pos+1 == len(systemPrefix) {
		prev = rune(systemPrefix[len(systemPrefix)-1])
	}
	for _, after := range append([]rune{edge}, classes...) {
		if s.from(state{pc: inst.Out, pos: len(systemPrefix), prev: prev, next: after}) {
			return true
		}
	}
	return false
}

// accepts reports whether the rune instruction inst matches r itself
// (exact, inside the prefix) or, in the free rest, some character of r's
// class.
func accepts(inst *syntax.Inst, r rune, exact bool) bool {
	if exact {
		return inst.MatchRune(r)
	}
	switch r {
	case nl:
		return inst.MatchRune('\n')
	case word:
		for _, c := range "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz" {
			if inst.MatchRune(c) {
				return true
			}
		}
		return false
	}
	// Any character that is neither a word character nor a newline.
	isOther := func(c rune) bool { return c != '\n' && !syntax.IsWordChar(c) && inst.MatchRune(c) }
	switch inst.Op {
	case syntax.InstRuneAny, syntax.InstRuneAnyNotNL:
		return true
	}
	runes := inst.Rune
	if len(runes) == 1 {
		runes = []rune{runes[0], runes[0]}
	}
	for i := 0; i+1 < len(runes); i += 2 {
		lo, hi := runes[i], runes[i+1]
		// Word characters and the newline are short runs: 80 characters
		// from the start of a range leave them behind.
		for c := lo; c <= hi && c <= lo+80; c++ {
			if isOther(c) {
				return true
			}
			// Case folding maps word characters to others (k to the Kelvin sign).
			if syntax.Flags(inst.Arg)&syntax.FoldCase != 0 {
				for f := unicode.SimpleFold(c); f != c; f = unicode.SimpleFold(f) {
					if isOther(f) {
						return true
					}
				}
			}
		}
		if isOther(hi) {
			return true
		}
	}
	return false
}

// systemNameMatched returns one of systemNames that pattern matches, or ""
// when it matches none of these (but perhaps another amq. name).
func systemNameMatched(pattern string) string {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return ""
	}
	for _, n := range systemNames {
		if re.MatchString(n) {
			return n
		}
	}
	return ""
}
