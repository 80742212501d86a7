package agent

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/api/client"
	"github.com/raftlb/raftlb/internal/testaddr"
)

// TestAPIBeyondLoopbackServesHTTPS: an API that listens on every address
// gets a certificate of the cluster CA without any TLS flag; the client
// verifies it with the token; plain HTTP is not answered; the director's own
// calls (registration) go through.
func TestAPIBeyondLoopbackServesHTTPS(t *testing.T) {
	loop := testaddr.Loopback(t)
	_, port, _ := net.SplitHostPort(loop)
	a, err := Start(context.Background(), Config{NodeID: "d1", DataDir: t.TempDir(), RaftAddr: testaddr.Loopback(t),
		APIAddr: net.JoinHostPort("0.0.0.0", port), APIAdvertise: loop, Token: testToken, Profile: "fast",
		BootstrapExpect: 1, Log: quietLog(), Dataplane: DataplaneNone})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.close() })
	if err := a.WaitReady(ctxT(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(a.APIURL(), "https://127.0.0.1:") {
		t.Fatalf("APIURL %s", a.APIURL())
	}
	c, err := client.New(client.Options{Addr: "https://" + loop, Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatalf("status over HTTPS verified with the token's CA: %v", err)
	}
	if st.Security == nil || st.Security.API != "HTTPS (cluster CA)" || st.Security.Raft != "plain TCP (loopback)" || st.Security.CAFingerprint == "" {
		t.Fatalf("security %+v", st.Security)
	}
	// Another cluster's token does not verify it.
	other, _ := client.New(client.Options{Addr: "https://" + loop, Token: "another-token-3c5e7a9b1d2f4068ace13579bdf2"})
	if _, err := other.Status(context.Background()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a client of another cluster trusted it: %v", err)
	}
	if resp, err := http.Get("http://" + loop + "/readyz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP answered")
		}
	}
}
