package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/agent"
	"github.com/raftlb/raftlb/cluster"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

func TestMain(m *testing.M) {
	// The test directors' raft warnings (elections) are noise here.
	if os.Getenv(cluster.LogLevelEnv) == "" {
		os.Setenv(cluster.LogLevelEnv, "error")
	}
	os.Exit(m.Run())
}

// startAgent starts a one-node dev director on a free port and returns its
// API URL.
func startAgent(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	a, err := agent.Start(ctx, agent.Config{Dev: true, APIAddr: "127.0.0.1:0", DataDir: t.TempDir(),
		Log: slog.New(slog.DiscardHandler), Version: "test"})
	if err != nil {
		t.Fatalf("start agent: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Shutdown(ctx); err != nil {
			t.Errorf("agent shutdown: %v", err)
		}
	})
	if err := a.WaitReady(ctx); err != nil {
		t.Fatalf("agent not ready: %v", err)
	}
	return a.APIURL()
}

// result is one run of the CLI.
type result struct {
	code           int
	stdout, stderr string
}

func runCLI(args ...string) result {
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return result{code, out.String(), errOut.String()}
}

// volatile matches what changes from run to run: raft indexes and terms,
// and the ports of 127.0.0.1 addresses (with the padding after them, which
// depends on their length).
var volatile = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`\(index \d+\)`), "(index N)"},
	{regexp.MustCompile(`"(index|create_index|modify_index|term|commit_index|applied_index|since)": \d+`), `"$1": N`},
	{regexp.MustCompile(`created \d+, modified \d+`), "created N, modified N"},
	{regexp.MustCompile(`(?m)^(Term|Commit index|Applied index):( +)\d+$`), "$1:${2}N"},
	{regexp.MustCompile(`"cluster_id": "[0-9a-f]+"`), `"cluster_id": "ID"`},
}

var loopbackPort = regexp.MustCompile(`127\.0\.0\.1:\d+( +)?`)

func normalise(s string) string {
	for _, v := range volatile {
		s = v.re.ReplaceAllString(s, v.repl)
	}
	return loopbackPort.ReplaceAllStringFunc(s, func(m string) string {
		if strings.HasSuffix(m, " ") {
			return "127.0.0.1:PORT  "
		}
		return "127.0.0.1:PORT"
	})
}

// step is one command of a scripted session; code is its expected exit
// status.
type step struct {
	args string
	code int
}

// transcript runs steps against addr and returns what a terminal would
// show, normalised.
func transcript(t *testing.T, addr string, steps []step) string {
	t.Helper()
	var b strings.Builder
	for _, s := range steps {
		args := append(strings.Fields(s.args), "-addr", addr)
		r := runCLI(args...)
		fmt.Fprintf(&b, "$ raftlb %s\n%s", s.args, r.stdout)
		if r.stderr != "" || r.code != 0 {
			fmt.Fprintf(&b, "[exit %d] %s", r.code, r.stderr)
		}
		if r.code != s.code {
			t.Errorf("raftlb %s: exit %d, want %d\nstdout: %s\nstderr: %s", s.args, r.code, s.code, r.stdout, r.stderr)
		}
	}
	return normalise(b.String())
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it)\n--- got:\n%s\n--- want:\n%s", path, got, want)
	}
}

// TestGolden runs scripted sessions against a fresh dev director each and
// compares what they print with testdata/*.golden.
func TestGolden(t *testing.T) {
	sessions := map[string][]step{
		"services": {
			{args: "service add web -t 192.0.2.10:80 -s wrr -p 300 -M 255.255.255.0"},
			{args: "service add dns -u 192.0.2.53:53 -s rr -b ops"},
			{args: "service add v6 -tcp [2001:db8::10]:443 -scheduler sh -b sh-port,sh-fallback -forward dr"},
			{args: "service add -f 7 -s rr mark7"},
			{args: "service add mark8 -fwmark 0x8 -family inet6 -p 60 -M 64"},
			{args: "service add allports -t 192.0.2.20:0 -p 120"},
			{args: "service add diameter -sctp 192.0.2.30:3868"},
			{args: "real add web 10.0.1.1 -w 3"},
			{args: "real add web 10.0.1.2:8080 -m"},
			{args: "real add -weight 2 -x 100 -y 10 web 10.0.1.3"},
			{args: "real add v6 2001:db8::1"},
			{args: "real add v6 [2001:db8::2]:443 -w 5"},
			{args: "real add mark7 10.0.2.1 -g"},
			{args: "real add mark7 10.0.2.2 -i -w 0"},
			{args: "real add mark8 2001:db8::8"},
			{args: "real update web 10.0.1.1 -w 5"},
			{args: "real update web 10.0.1.2:8080 -state disabled"},
			{args: "real drain web 10.0.1.3:80"},
			{args: "real update web 10.0.1.3 -x 0 -y 0"},
			{args: "real delete web 10.0.1.2:8080"},
			{args: "service update web -s wlc"},
			{args: "service update mark7 -p 30 -forward tun"},
			{args: "service list"},
			{args: "service show web"},
			{args: "service show mark8"},
			{args: "real list web"},
			{args: "real list allports"},
			{args: "service update web -p 0"},
			{args: "service delete diameter"},
			{args: "service delete allports"},
			{args: "service delete mark7"},
			{args: "service list -consistent"},
		},
		// Real servers of checked services are on loopback addresses where
		// nothing listens: the dev director's prober may check them, and
		// the long intervals keep its decisions out of the transcript.
		"health": {
			{args: "service add web -t 192.0.2.10:80 -s rr --check http --path /health --expect 200-299 --interval 30s"},
			{args: "real add web 127.0.9.1:8080"},
			{args: "real add web 127.0.9.2:8080 -w 2"},
			{args: "service show web"},
			{args: "service update web --rise 3 --fall 5 --inhibit --quorum 2 --hysteresis 1 --sorry-server 127.0.9.99:8080"},
			{args: "service update web -check https -sni www.example.org -tls-verify -host www.example.org"},
			{args: "service show web"},
			{args: "service add dns -u 192.0.2.53:53 -s rr -check dns -dns-name example.org -dns-type soa -interval 1m -start-down -health-policy all"},
			{args: "real add dns 127.0.9.3:5353"},
			{args: "service add probe -u 192.0.2.54:5353 -check udp -udp-payload ping -udp-expect pong -interval 45s -timeout 0.5 -retries 2"},
			{args: "service add plain -t 192.0.2.11:80"},
			{args: "real add plain 127.0.9.4"},
			{args: "service list"},
			{args: "real list web"},
			{args: "real list dns"},
			{args: "service update web -check tcp -check-port 8081"},
			{args: "service update web -sorry-server= -quorum 0 -hysteresis 0"},
			{args: "service show web"},
			{args: "service update web -path /x", code: exitUsage},
			{args: "service update plain -interval 5s", code: exitUsage},
			{args: "service update web -no-check"},
			{args: "service show web"},
			{args: "service show dns -o json"},
		},
		"vips": {
			{args: "vip add 192.0.2.10/24 -dev eth0"},
			{args: "vip add 2001:db8::10/64 -interface eth1 -group ext"},
			{args: "vip add 198.51.100.7 -dev eth0"},
			{args: "vip list"},
			{args: "vip delete 198.51.100.7"},
			{args: "vip delete 2001:db8::10/64"},
			{args: "vip list -consistent"},
		},
		"json": {
			{args: "service add web -t 192.0.2.10:80 -p 300 -o json"},
			{args: "real add web 10.0.1.1 -w 2 -o json"},
			{args: "vip add 192.0.2.10/24 -dev eth0 -o json"},
			{args: "-o json service list"},
			{args: "service show web -o json"},
			{args: "real list web -o json"},
			{args: "vip list -o json"},
			{args: "real delete web 10.0.1.1 -o json"},
			{args: "status -o json"},
			{args: "cluster peers -o json"},
		},
		"status": {
			{args: "status"},
			{args: "cluster peers"},
			{args: "service list"},
			{args: "vip list"},
			{args: "service list -o json"},
			{args: "vip list -o json"},
		},
	}
	for name, steps := range sessions {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			addr := startAgent(t)
			checkGolden(t, name, transcript(t, addr, steps))
		})
	}
}

// checkOneLine checks a failed run: exit code, nothing on stdout, one line
// on stderr that starts with "raftlb: " and contains want.
func checkOneLine(t *testing.T, r result, code int, want string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit %d, want %d (stderr %q)", r.code, code, r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("stdout %q, want nothing", r.stdout)
	}
	if !strings.HasPrefix(r.stderr, "raftlb: ") || strings.Count(r.stderr, "\n") != 1 || !strings.HasSuffix(r.stderr, "\n") {
		t.Errorf("stderr %q: want one line starting with \"raftlb: \"", r.stderr)
	}
	if !strings.Contains(r.stderr, want) {
		t.Errorf("stderr %q does not contain %q", r.stderr, want)
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	// Nothing listens here: a usage error must be found before any request.
	const addr = "http://127.0.0.1:1"
	for _, tc := range []struct {
		args string
		want string
	}{
		{"", "no command given"},
		{"frobnicate", `unknown command "frobnicate"`},
		{"service", "service: missing subcommand: add, update, delete, list or show"},
		{"service frob", `unknown command "service frob"`},
		{"help service frob", `help: unknown command "service frob"`},
		{"service add", "service add: missing NAME"},
		{"service add web", "missing -t, -u or -sctp ADDR:PORT, or -f MARK"},
		{"service add web extra -t 192.0.2.1:80", `unexpected argument "extra"`},
		{"service add web -t 192.0.2.1", "missing :PORT"},
		{"service add web -t 2001:db8::1:80", "missing :PORT (IPv6 as [addr]:port"},
		{"service add web -t [2001:db8::1]", "missing :PORT"},
		{"service add web -t [2001:db8::1]:http", "want ADDR:PORT (IPv6 as [addr]:port)"},
		{"service add web -t nohost:80", "want ADDR:PORT"},
		{"service add web -t 192.0.2.1:80 -u 192.0.2.1:53", "-t and -u are mutually exclusive"},
		{"service add web -tcp 192.0.2.1:80 -fwmark 3", "-t and -f are mutually exclusive"},
		{"service add web -f 0", "want a firewall mark"},
		{"service add web -f 7 -family ipx", "want inet or inet6"},
		{"service add web -t 192.0.2.1:80 -s fastest", `invalid value "fastest" for flag -s`},
		{"service add web -t 192.0.2.1:80 -p forever", `"forever" is not a whole number`},
		{"service add web -t 192.0.2.1:80 -p 30 -M 255.0.255.0", "not a contiguous netmask"},
		{"service add web -t 192.0.2.1:80 -forward bridge", "want nat, dr or tun"},
		{"service add web -t", "flag needs an argument: -t"},
		{"service add web -t 192.0.2.1:80 -bogus", "flag provided but not defined: -bogus"},
		{"service add web -t 192.0.2.1:80 -consistent", "flag provided but not defined: -consistent"},
		{"service update web", "nothing to change"},
		{"service add web -t 192.0.2.1:80 -check ftp", `invalid value "ftp" for flag -check: want tcp, http, https, udp, dns, icmp, script or none`},
		{"service add web -t 192.0.2.1:80 --check http --interval soon", `invalid value "soon" for flag -interval: "soon" is not a duration`},
		{"service add web -t 192.0.2.1:80 -check http -expect 99", `-expect (check.http.status): "99" is out of range (100-599, low-high)`},
		{"service add web -t 192.0.2.1:80 -check http -expect 2xx", `-expect (check.http.status): "2xx" is not a status code or range`},
		{"service add web -t 192.0.2.1:80 -path /health", "-path: the service has no health check: give -check TYPE too"},
		{"service add web -t 192.0.2.1:80 -check tcp -path /health -expect 200", "-path -expect (check.http): only with type http or https"},
		{"service add web -t 192.0.2.1:80 -check dns", "-dns-name (check.dns.name): required"},
		{"service add web -t 192.0.2.1:80 -check dns -dns-name example.org -dns-type QQ", `-dns-type (check.dns.qtype): "QQ" is not a DNS type`},
		{"service add web -t 192.0.2.1:80 -check script -script check.sh", `-script (check.script.path): "check.sh" must be an absolute path`},
		{"service add web -t 192.0.2.1:80 -check http -rise 101", "-rise (check.rise): 101 is out of range (1-100)"},
		{"service add web -t 192.0.2.1:80 -check http -interval 1ms", "-interval (check.interval): 1ms is out of range"},
		{"service add web -t 192.0.2.1:80 -check http -sni www.example.org", "-sni (check.http.sni): only with type https"},
		{"service add web -t 192.0.2.1:80 -check udp -udp-payload-hex 0g", "-udp-payload-hex (check.udp.payload_hex): not an even number of hex digits"},
		{"service add web -t 192.0.2.1:80 -check tcp -health-policy most", `invalid value "most" for flag -health-policy: want majority, any or all`},
		{"service add web -t 192.0.2.1:80 -quorum 2 -hysteresis 3", "-hysteresis (hysteresis): 3 is out of range (0 to the quorum, 2)"},
		{"service add web -t 192.0.2.1:80 -quorum -1", "-quorum (quorum): -1 is out of range"},
		{"service add web -t 192.0.2.1:80 -sorry-server sorry.example", `-sorry-server: "sorry.example" is not ADDR[:PORT]`},
		{"service add web -t 192.0.2.1:80 -sorry-server 2001:db8::9", "-sorry-server (sorry_server.address): 2001:db8::9 is inet6 but the service is inet"},
		{"service add web -t 192.0.2.1:80 -forward dr -sorry-server 192.0.2.9:81", "-sorry-server (sorry_server.port): dr forwarding cannot change the port"},
		{"service add web -t 192.0.2.1:80 -sorry-forward dr", "-sorry-forward: the service has no sorry server"},
		{"service add web -t 192.0.2.1:80 -check tcp -no-check", "-no-check and -check contradict each other"},
		{"service update web -no-check -path /x -rise 2", "-no-check and -rise -path contradict each other"},
		{"service update web -no-check=false", "-no-check=false"},
		{"service update web -u 192.0.2.1:53 -sctp 192.0.2.1:53", "-u and -sctp are mutually exclusive"},
		{"service delete", "missing NAME"},
		{"service delete a b", `unexpected argument "b"`},
		{"service list extra", `unexpected argument "extra"`},
		{"service show", "missing NAME"},
		{"real add web", "missing ADDR[:PORT]"},
		{"real add", "missing SERVICE ADDR[:PORT]"},
		{"real add web 10.0.0.1:http", `"10.0.0.1:http" is not ADDR[:PORT]`},
		{"real add web server1", `"server1" is not ADDR[:PORT]`},
		{"real add web 10.0.0.1 -m -g", "-m and -g are mutually exclusive"},
		{"real add web 10.0.0.1 -i -forward nat", "-i and -forward are mutually exclusive"},
		{"real add web 10.0.0.1 -m=false", "-m=false"},
		{"real add web 10.0.0.1 -w heavy", `"heavy" is not a whole number`},
		{"real add web 10.0.0.1 -state paused", "want enabled, drain or disabled"},
		{"real update web 10.0.0.1:80", "nothing to change"},
		{"real update web nonsense -w 1", `"nonsense" is not ADDR[:PORT]`},
		{"real delete web", "missing ADDR[:PORT]"},
		{"real drain web 10.0.0.1:80 more", `unexpected argument "more"`},
		{"real list", "missing SERVICE"},
		{"vip add 192.0.2.10/24", "missing -dev IFNAME"},
		{"vip add vip1 -dev eth0", `"vip1" is not ADDR[/PREFIX]`},
		{"vip delete", "missing ADDR"},
		{"vip delete 192.0.2.300", `"192.0.2.300" is not ADDR[/PREFIX]`},
		{"cluster join n2", "missing RAFTADDR"},
		{"cluster join n2 10.0.0.2", `RAFTADDR "10.0.0.2": want HOST:PORT`},
		{"cluster join n2 10.0.0.2:7481 -api-addr 10.0.0.2", `-api-addr "10.0.0.2": want HOST:PORT`},
		{"cluster join n2 10.0.0.2:7481 -api-scheme https", "-api-scheme needs -api-addr"},
		{"cluster remove", "missing ID"},
		{"cluster transfer-leadership a b", `unexpected argument "b"`},
		{"status -o yaml", `invalid value "yaml" for flag -o: want table or json`},
		{"-o yaml status", `invalid value "yaml" for flag -o`},
		{"version extra", `unexpected argument "extra"`},
		{"status -addr ftp://example.org", "want http(s)://host:port"},
		{"status -ca-file /nonexistent/ca.pem", "CA file"},
	} {
		t.Run(tc.args, func(t *testing.T) {
			args := strings.Fields(tc.args)
			if c, _ := lookup(args); c != nil && c.kind != kindLocal && !strings.Contains(tc.args, "-addr") {
				args = append([]string{"-addr", addr}, args...)
			}
			checkOneLine(t, runCLI(args...), exitUsage, tc.want)
		})
	}
}

func TestAPIErrors(t *testing.T) {
	t.Parallel()
	addr := startAgent(t)
	setup := []string{
		"service add web -t 192.0.2.10:80",
		"service add dns -u 192.0.2.53:53",
		"real add web 10.0.1.1",
		"vip add 192.0.2.10/24 -dev eth0",
	}
	for _, s := range setup {
		if r := runCLI(append(strings.Fields(s), "-addr", addr)...); r.code != 0 {
			t.Fatalf("raftlb %s: exit %d: %s", s, r.code, r.stderr)
		}
	}
	for _, tc := range []struct {
		args string
		want string
	}{
		{"service add web -t 192.0.2.11:80", `raftlb: name: a service named "web" already exists`},
		{"service add web2 -t 192.0.2.10:80", `service "web" already uses tcp/192.0.2.10:80`},
		{"service add bad/name -t 192.0.2.12:80", "raftlb: name: "},
		{"service add any -t 192.0.2.12:0", "raftlb: port: port 0 (all ports) requires persistence"},
		{"service add sticky -t 192.0.2.12:80 -p 9999999", "raftlb: persistence: "},
		{"service add sh -t 192.0.2.12:80 -b sh-port", "raftlb: sched_flags: "},
		{"service add mc -t 224.0.0.1:80", "raftlb: address: "},
		{"service update nope -s rr", `raftlb: name: no service named "nope"`},
		{"service update web -M 24", "raftlb: persist_netmask: set only with persistence"},
		{"service delete nope", "raftlb: name: "},
		{"service show nope", `raftlb: name: no service named "nope"`},
		{"real add web 10.0.1.1", "raftlb: address: "},
		{"real add web 10.0.1.2 -w 70000", "raftlb: weight: 70000 is out of range"},
		{"real add web 10.0.1.2 -w -1", "raftlb: weight: "},
		{"real add web 10.0.1.2 -x 10 -y 20", "raftlb: lower_threshold: "},
		{"real add web 2001:db8::1", "raftlb: address: "},
		{"real add web 10.0.1.2:8080 -g", "raftlb: port: "},
		{"real add nope 10.0.1.2", `raftlb: service: no service named "nope"`},
		{"real update web 10.0.1.1 -w 65536", "raftlb: weight: "},
		{"real update web 10.0.1.9 -w 1", "raftlb: address: "},
		{"real update nope 10.0.1.1 -w 1", "raftlb: name: "}, // the service is read for its port
		{"real drain web 10.0.1.9:80", "raftlb: address: "},
		{"real delete web 10.0.1.9", "raftlb: address: "},
		{"real list nope", "raftlb: name: "},
		{"vip add 192.0.2.10/24 -dev eth1", "raftlb: address: VIP 192.0.2.10 already exists"},
		{"vip add 127.0.0.2 -dev lo", "raftlb: address: "},
		{"vip add 192.0.2.11 -dev this-name-is-too-long", "raftlb: interface: "},
		{"vip add 192.0.2.11 -dev eth0 -group bad/group", "raftlb: group: "},
		{"vip delete 192.0.2.99", "raftlb: address: no VIP 192.0.2.99"},
		{"cluster remove nope", `raftlb: id: "nope" is not a member of the cluster`},
		{"cluster join bad/id 127.0.0.1:7481", "raftlb: id: "},
	} {
		t.Run(tc.args, func(t *testing.T) {
			checkOneLine(t, runCLI(append(strings.Fields(tc.args), "-addr", addr)...), exitError, tc.want)
		})
	}
}

// TestHelp checks that -h on every command prints its usage on stdout and
// exits 0, and that the help texts name every command.
func TestHelp(t *testing.T) {
	t.Parallel()
	top := runCLI("help")
	if top.code != 0 || top.stderr != "" {
		t.Fatalf("raftlb help: exit %d, stderr %q", top.code, top.stderr)
	}
	if r := runCLI("-h"); r.code != 0 || r.stdout != top.stdout {
		t.Errorf("raftlb -h: exit %d, output differs from raftlb help", r.code)
	}
	for _, c := range commands() {
		if !strings.Contains(top.stdout, "  "+c.name) {
			t.Errorf("raftlb help does not list %q", c.name)
		}
		late := append(strings.Fields(c.name), "x", "-help")
		if c.kind != kindLocal {
			late = append(strings.Fields(c.name), "x", "-addr", "http://127.0.0.1:1", "-help")
		}
		for _, args := range [][]string{
			append(strings.Fields(c.name), "-h"),
			append([]string{"help"}, strings.Fields(c.name)...),
			late,
		} {
			r := runCLI(args...)
			if r.code != 0 || r.stderr != "" || !strings.HasPrefix(r.stdout, "usage: raftlb "+c.name) {
				t.Errorf("raftlb %s: exit %d, stderr %q, stdout %q", strings.Join(args, " "), r.code, r.stderr, r.stdout)
			}
		}
	}
	for _, g := range groups {
		for _, args := range [][]string{{g.name, "-h"}, {"help", g.name}} {
			r := runCLI(args...)
			if r.code != 0 || !strings.HasPrefix(r.stdout, "usage: raftlb "+g.name+" SUBCOMMAND") {
				t.Errorf("raftlb %s: exit %d, stdout %q", strings.Join(args, " "), r.code, r.stdout)
			}
		}
	}
	if r := runCLI("service", "add", "-h"); !strings.Contains(r.stdout, "-t, -tcp ADDR:PORT") || !strings.Contains(r.stdout, "-o FORMAT") {
		t.Errorf("service add -h does not document -t, -tcp and -o:\n%s", r.stdout)
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"version"}, {"--version"}} {
		if r := runCLI(args...); r.code != 0 || r.stdout != "raftlb "+Version+"\n" || r.stderr != "" {
			t.Errorf("raftlb %s: %+v", args[0], r)
		}
	}
}

// TestEnvironment checks that RAFTLB_ADDR is the default of -addr and that
// -addr overrides it.
func TestEnvironment(t *testing.T) {
	addr := startAgent(t)
	t.Setenv("RAFTLB_ADDR", addr)
	t.Setenv("RAFTLB_TOKEN", "secret-token")
	if r := runCLI("vip", "list"); r.code != 0 || !strings.HasPrefix(r.stdout, "Address") {
		t.Errorf("vip list with RAFTLB_ADDR: %+v", r)
	}
	checkOneLine(t, runCLI("vip", "list", "-addr", "http://127.0.0.1:1"), exitError, "cannot reach the raftlb API at 127.0.0.1:1")
	if r := runCLI("status", "-h"); strings.Contains(r.stdout, "secret-token") {
		t.Errorf("status -h shows the token:\n%s", r.stdout)
	}
}
