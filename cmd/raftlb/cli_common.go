package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"github.com/raftlb/raftlb/api/client"
	"github.com/raftlb/raftlb/trust"
)

// The client commands share one small framework: a command declares its
// positional parameters, registers its flags on a flagSet and returns the
// action to run; exec parses the command line (flags may come before, between
// or after the positionals), builds the API client and maps errors to exit
// codes.

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the API (or the network) refused the request
	exitUsage = 2 // the command line is wrong
)

// commandKind says which of the client flags a command takes.
type commandKind int

const (
	kindClient commandKind = iota // client flags
	kindRead                      // client flags and -consistent
	kindLocal                     // no client flags, no API client
)

// action runs a command once its flags are parsed and checked.
type action func(e *env, args []string) error

// command is one client subcommand, e.g. "service add".
type command struct {
	name     string   // full path: "service add"
	params   []string // positional parameters; "[ID]" is optional (optional ones last)
	synopsis string   // what follows the parameters in the usage line, e.g. "-dev IFNAME [flags]"
	summary  string   // one line, lower case, for the command list
	help     string   // optional paragraph for -h
	kind     commandKind
	// setup registers the command's own flags and returns its action.
	setup func(f *flagSet) action
}

func (c *command) required() int {
	n := 0
	for _, p := range c.params {
		if !strings.HasPrefix(p, "[") {
			n++
		}
	}
	return n
}

func (c *command) usageLine() string {
	parts := append([]string{"raftlb", c.name}, c.params...)
	switch {
	case c.synopsis != "":
		parts = append(parts, c.synopsis)
	case c.kind != kindLocal:
		parts = append(parts, "[flags]")
	}
	return strings.Join(parts, " ")
}

// usageError is a mistake on the command line: exit 2, one line.
type usageError struct {
	msg  string
	hint string // the command to point at ("service add"), or "" for 'raftlb help'
}

func (u *usageError) Error() string { return u.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// env is what an action works with.
type env struct {
	ctx  context.Context
	c    *client.Client
	out  io.Writer
	json bool
	read client.ReadOpts
}

// clientOpts are the flags every client command takes.
type clientOpts struct {
	addr, token, tokenFile, caFile string
	output                         string
	consistent, insecure           bool
}

func (o *clientOpts) register(f *flagSet, read bool) {
	f.global = true
	defer func() { f.global = false }()
	// The environment is read after parsing (fromEnv), so that -h never
	// prints a token.
	f.String(&o.addr, "addr", "", "director API `URL` (default $RAFTLB_ADDR, else "+client.DefaultAddr+")")
	f.String(&o.token, "token", "", "bearer `TOKEN` (default $RAFTLB_TOKEN)")
	f.String(&o.tokenFile, "token-file", "", "read the token from `FILE`, the agents' token file (default $RAFTLB_TOKEN_FILE)")
	f.String(&o.caFile, "ca-file", "", "PEM CA bundle `FILE` to verify an https API (default $RAFTLB_CACERT; with a token, the cluster CA derived from it)")
	f.Bool(&o.insecure, "insecure", "allow sending the token over plain HTTP beyond loopback, to directors run with -insecure (default $RAFTLB_INSECURE=1)")
	o.output = "table"
	f.Var(&enumValue{p: &o.output, choices: []string{"table", "json"}}, "o", "output `FORMAT`: table or json")
	if read {
		f.Bool(&o.consistent, "consistent", "read from the leader after a raft barrier, not from this director's copy")
	}
}

// fromEnv fills in the client flags that were not given from the
// environment.
func (o *clientOpts) fromEnv(f *flagSet) {
	for _, v := range []struct {
		flag, env string
		p         *string
	}{{"addr", "RAFTLB_ADDR", &o.addr}, {"token", "RAFTLB_TOKEN", &o.token}, {"token-file", "RAFTLB_TOKEN_FILE", &o.tokenFile},
		{"ca-file", "RAFTLB_CACERT", &o.caFile}} {
		if !f.isSet(v.flag) {
			*v.p = os.Getenv(v.env)
		}
	}
	if !f.isSet("insecure") {
		o.insecure = os.Getenv("RAFTLB_INSECURE") == "1"
	}
}

// resolveToken reads -token-file when no token was given directly.
func (o *clientOpts) resolveToken() error {
	if o.token != "" || o.tokenFile == "" {
		return nil
	}
	toks, err := trust.ReadTokenFile(o.tokenFile)
	if err != nil {
		return fmt.Errorf("-token-file: %w", err)
	}
	o.token = toks[0]
	return nil
}

// exec runs c with args (everything after the command's name).
func (c *command) exec(args []string, stdout, stderr io.Writer) int {
	f := newFlagSet(c.name)
	var opts clientOpts
	if c.kind != kindLocal {
		opts.register(f, c.kind == kindRead)
	}
	act := c.setup(f)
	pos, err := f.parse(args)
	if errors.Is(err, flag.ErrHelp) {
		c.printUsage(stdout, f)
		return exitOK
	}
	if err != nil {
		return c.fail(stderr, &usageError{msg: err.Error()})
	}
	if n := c.required(); len(pos) < n {
		return c.fail(stderr, usagef("%s: missing %s", c.name, strings.Join(c.params[len(pos):n], " ")))
	}
	if len(pos) > len(c.params) {
		return c.fail(stderr, usagef("%s: unexpected argument %q", c.name, pos[len(c.params)]))
	}
	e := &env{ctx: context.Background(), out: stdout, json: opts.output == "json",
		read: client.ReadOpts{Consistent: opts.consistent}}
	if c.kind != kindLocal {
		opts.fromEnv(f)
		if err := opts.resolveToken(); err != nil {
			return c.fail(stderr, usagef("%v", err))
		}
		cl, err := client.New(client.Options{Addr: opts.addr, Token: opts.token, CAFile: opts.caFile, Insecure: opts.insecure})
		if err != nil {
			return c.fail(stderr, usagef("%v", err))
		}
		e.c = cl
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
		e.ctx = ctx
	}
	return c.fail(stderr, act(e, pos))
}

// fail reports err (if any) on one line of stderr and returns the exit code.
func (c *command) fail(stderr io.Writer, err error) int {
	if err == nil {
		return exitOK
	}
	var ue *usageError
	if errors.As(err, &ue) {
		if ue.hint == "" {
			ue.hint = c.name
		}
		return reportUsage(stderr, ue)
	}
	fmt.Fprintf(stderr, "raftlb: %s\n", oneLine(err.Error()))
	return exitError
}

func reportUsage(stderr io.Writer, ue *usageError) int {
	hint := "raftlb help"
	if ue.hint != "" {
		hint = "raftlb " + ue.hint + " -h"
	}
	fmt.Fprintf(stderr, "raftlb: %s (run '%s')\n", oneLine(ue.msg), hint)
	return exitUsage
}

// wrap breaks text into lines of at most width characters (longer words
// stay whole).
func wrap(text string, width int) string {
	var b strings.Builder
	n := 0
	for _, w := range strings.Fields(text) {
		switch {
		case n == 0:
		case n+1+len(w) > width:
			b.WriteByte('\n')
			n = 0
		default:
			b.WriteByte(' ')
			n++
		}
		b.WriteString(w)
		n += len(w)
	}
	return b.String()
}

// oneLine folds a (possibly multi-line) message onto one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func (c *command) printUsage(w io.Writer, f *flagSet) {
	fmt.Fprintf(w, "usage: %s\n\n", c.usageLine())
	desc := c.summary
	if c.help != "" {
		desc = c.help
	}
	fmt.Fprintln(w, wrap(strings.ToUpper(desc[:1])+strings.TrimSuffix(desc[1:], ".")+".", 78))
	f.printDefaults(w, false, "\nFlags:\n")
	f.printDefaults(w, true, "\nClient flags:\n")
}
