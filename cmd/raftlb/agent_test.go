package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/raftlb/raftlb/trust"
)

// TestAgentUsageErrors: configuration mistakes exit 2 with one line that
// names the flag, before anything is started.
func TestAgentUsageErrors(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	empty := filepath.Join(dir, "empty")
	weak := filepath.Join(dir, "weak")
	open := filepath.Join(dir, "open")
	gkOpen := filepath.Join(dir, "gossip-open")
	gkBad := filepath.Join(dir, "gossip-bad")
	os.WriteFile(token, []byte(trust.NewToken()+"\n"), 0o600)
	os.WriteFile(empty, nil, 0o600)
	os.WriteFile(weak, []byte("t0ken\n"), 0o600)
	os.WriteFile(open, []byte(trust.NewToken()+"\n"), 0o644)
	os.WriteFile(gkOpen, []byte("AAAAAAAAAAAAAAAAAAAAAA==\n"), 0o644)
	os.WriteFile(gkBad, []byte("not base64!\n"), 0o600)
	base := []string{"-node-id", "d1", "-data-dir", dir, "-raft-addr", "127.0.0.1:0", "-api-addr", "127.0.0.1:0"}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"-bogus"}, "bogus"},
		{[]string{"-dev", "extra"}, "unexpected argument"},
		{[]string{"-node-id", "d1", "-raft-addr", "127.0.0.1:0", "-token-file", token}, "-data-dir"},
		{[]string{"-node-id", "d1", "-data-dir", dir, "-token-file", token}, "-raft-addr"},
		{base, "-token-file"},
		{append(base, "-token-file", filepath.Join(dir, "missing")), "-token-file"},
		{append(base, "-token-file", empty), "empty"},
		{append(base, "-token-file", weak), "too weak"},
		{append(base, "-token-file", open), "chmod 600"},
		{append(base, "-token-file", token, "-gossip-key-file", gkOpen), "-gossip-key-file: " + gkOpen + " is accessible by group or others"},
		{append(base, "-token-file", token, "-gossip-key-file", gkBad), "-gossip-key-file"},
		{append(base, "-token-file", token, "-gossip-key-file", filepath.Join(dir, "missing")), "-gossip-key-file"},
		{append(base, "-token-file", token, "-node-id", "bad id"), "-node-id"},
		{append(base, "-token-file", token, "-timing", "wan"), "-timing"},
		{append(base, "-token-file", token, "-log-level", "loud"), "-log-level"},
		{append(base, "-token-file", token, "-log-format", "xml"), "-log-format"},
		{append(base, "-token-file", token, "-shutdown-timeout", "0s"), "-shutdown-timeout"},
		{append(base, "-token-file", token, "-peers", "d1"), "-peers"},
		{append(base, "-token-file", token, "-bootstrap-expect", "3"), "-bootstrap-expect"},
		{append(base, "-token-file", token, "-bootstrap-expect", "2", "-peers", "d1=127.0.0.1:1"), "-bootstrap-expect"},
		{append(base, "-token-file", token, "-api-tls-cert", token), "-api-tls-key"},
		{append(base, "-token-file", token, "-raft-tls-cert", token, "-raft-tls-key", token, "-raft-tls-ca", token), "-raft-tls"},
		{[]string{"-dev", "-join", "127.0.0.1:1"}, "-dev"},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		code := runAgent(c.args, &out, &errb)
		msg := strings.TrimSpace(errb.String())
		if c.want == "bogus" { // flag's own message plus usage
			if code != 2 || !strings.Contains(msg, "bogus") {
				t.Errorf("%v: exit %d, %q", c.args, code, msg)
			}
			continue
		}
		if code != 2 || strings.Count(msg, "\n") != 0 || !strings.Contains(msg, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and one line naming %s", c.args, code, msg, c.want)
		}
	}
}
