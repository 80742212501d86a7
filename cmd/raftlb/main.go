// Command raftlb is raftlb's single binary: `raftlb agent` runs a director,
// every other subcommand is a client of a director's admin API.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// Version is the raftlb version, set at build time with
// -ldflags "-X main.Version=...".
var Version = "dev"

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// group is a family of subcommands ("service add", "service list", ...).
type group struct {
	name, summary string
}

var groups = []group{
	{"service", "virtual services: create, change, delete and list them (like ipvsadm -A, -E, -D, -L)"},
	{"real", "real servers of a virtual service (like ipvsadm -a, -e, -d)"},
	{"vip", "virtual IP addresses, held by the leader"},
	{"cluster", "raft membership and leadership"},
	{"token", "the cluster token"},
	{"tls", "the cluster's TLS: the CA derived from the token"},
	{"vrrp", "VRRP, for interop with keepalived: decode captures"},
}

// commands returns every client command, in help order.
func commands() []*command {
	return slices.Concat(
		[]*command{statusCommand()},
		serviceCommands(),
		realCommands(),
		vipCommands(),
		clusterCommands(),
		trustCommands(),
		vrrpCommands(),
		[]*command{versionCommand()},
	)
}

func versionCommand() *command {
	return &command{
		name: "version", summary: "print the version", kind: kindLocal,
		setup: func(f *flagSet) action {
			return func(e *env, _ []string) error {
				_, err := fmt.Fprintf(e.out, "raftlb %s\n", Version)
				return err
			}
		},
	}
}

// run is main without the process: it returns the exit status.
func run(args []string, stdout, stderr io.Writer) (code int) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "raftlb: internal error: %s\n", oneLine(fmt.Sprint(r)))
			code = exitError
		}
	}()
	if len(args) > 0 && args[0] == "agent" {
		return runAgent(args[1:], stdout, stderr)
	}
	if len(args) > 0 && (args[0] == "-version" || args[0] == "--version") {
		args = []string{"version"}
	}
	// Client flags may also come before the command: raftlb -o json status.
	lead, rest, err := splitLeadingFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		printHelp(stdout)
		return exitOK
	}
	if err != nil {
		return reportUsage(stderr, &usageError{msg: err.Error()})
	}
	if len(rest) == 0 {
		return reportUsage(stderr, &usageError{msg: "no command given"})
	}
	switch rest[0] {
	case "help":
		return runHelp(rest[1:], stdout, stderr)
	case "agent":
		return runAgent(append(lead, rest[1:]...), stdout, stderr)
	}
	if g := findGroup(rest[0]); g != nil && (len(rest) == 1 || isHelpFlag(rest[1])) {
		if len(rest) == 1 {
			return reportUsage(stderr, &usageError{msg: fmt.Sprintf("%s: missing subcommand: %s", g.name, orList(subcommandNames(g.name))),
				hint: g.name})
		}
		printGroupHelp(stdout, g)
		return exitOK
	}
	cmd, n := lookup(rest)
	if cmd == nil {
		return reportUsage(stderr, unknownCommand(rest))
	}
	return cmd.exec(append(lead, rest[n:]...), stdout, stderr)
}

func isHelpFlag(s string) bool {
	switch s {
	case "-h", "-help", "--help", "--h":
		return true
	}
	return false
}

// splitLeadingFlags separates the client flags before the command from the
// command and what follows it.
func splitLeadingFlags(args []string) (lead, rest []string, err error) {
	f := newFlagSet("raftlb")
	var opts clientOpts
	opts.register(f, true)
	if err := f.fs.Parse(args); err != nil {
		return nil, nil, err
	}
	rest = f.fs.Args()
	lead = args[:len(args)-len(rest)]
	if n := len(lead); n > 0 && lead[n-1] == "--" {
		lead = lead[:n-1]
	}
	return lead, rest, nil
}

func findGroup(name string) *group {
	for i := range groups {
		if groups[i].name == name {
			return &groups[i]
		}
	}
	return nil
}

func subcommandNames(g string) []string {
	var out []string
	for _, c := range commands() {
		if sub, ok := strings.CutPrefix(c.name, g+" "); ok {
			out = append(out, sub)
		}
	}
	return out
}

// lookup finds the command named by the first one or two words.
func lookup(words []string) (*command, int) {
	for _, c := range commands() {
		n := strings.Count(c.name, " ") + 1
		if len(words) >= n && strings.Join(words[:n], " ") == c.name {
			return c, n
		}
	}
	return nil, 0
}

func unknownCommand(words []string) *usageError {
	if g := findGroup(words[0]); g != nil {
		return &usageError{msg: fmt.Sprintf("unknown command %q: %s has %s", g.name+" "+words[1], g.name, orList(subcommandNames(g.name))),
			hint: g.name}
	}
	return &usageError{msg: fmt.Sprintf("unknown command %q", words[0])}
}

// runHelp is `raftlb help [COMMAND]`.
func runHelp(words []string, stdout, stderr io.Writer) int {
	switch {
	case len(words) == 0:
		printHelp(stdout)
		return exitOK
	case words[0] == "agent":
		return runAgent([]string{"-h"}, stdout, stderr)
	case len(words) == 1 && findGroup(words[0]) != nil:
		printGroupHelp(stdout, findGroup(words[0]))
		return exitOK
	}
	cmd, n := lookup(words)
	if cmd == nil || n != len(words) {
		return reportUsage(stderr, &usageError{msg: fmt.Sprintf("help: unknown command %q", strings.Join(words, " "))})
	}
	return cmd.exec([]string{"-h"}, stdout, stderr)
}

// commandList writes the commands (of group g, or all when g is "") with
// their summaries.
func commandList(w io.Writer, g string) {
	var rows [][]string
	for _, c := range commands() {
		name, ok := strings.CutPrefix(c.name, g+" ")
		if g == "" {
			name, ok = c.name, true
		}
		if ok {
			rows = append(rows, []string{"  " + strings.Join(append([]string{name}, c.params...), " "), c.summary})
		}
	}
	if g == "" {
		rows = slices.Insert(rows, 0, []string{"  agent", "run a director ('raftlb agent -h' lists its flags)"})
		rows = append(rows, []string{"  help [COMMAND]", "show the usage of a command"})
	}
	for _, l := range alignRows(rows, 2) {
		fmt.Fprintln(w, l)
	}
}

func printHelp(w io.Writer) {
	fmt.Fprint(w, `raftlb controls a Raft-replicated LVS director cluster.

Usage:
  raftlb COMMAND [ARGUMENTS] [FLAGS]

Flags may come before or after the arguments. Commands:
`)
	commandList(w, "")
	f := newFlagSet("raftlb")
	var opts clientOpts
	opts.register(f, true)
	f.printDefaults(w, true, "\nClient flags (every command but agent, version and help; -consistent: list and show):\n")
	fmt.Fprint(w, "\nRun 'raftlb COMMAND -h' for the flags of a command.\n")
}

func printGroupHelp(w io.Writer, g *group) {
	fmt.Fprintf(w, "usage: raftlb %s SUBCOMMAND [ARGUMENTS] [FLAGS]\n\n%s\n\nSubcommands:\n",
		g.name, wrap(strings.ToUpper(g.summary[:1])+g.summary[1:]+".", 78))
	commandList(w, g.name)
	fmt.Fprintf(w, "\nRun 'raftlb %s SUBCOMMAND -h' for its flags.\n", g.name)
}
