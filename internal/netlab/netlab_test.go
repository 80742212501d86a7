package netlab

import (
	"io"
	"os"
	"testing"
	"time"
)

func TestLabHTTPAcrossBridgeAndCleanup(t *testing.T) {
	var names []string
	t.Run("lab", func(t *testing.T) {
		l := New(t)
		sw, a, b := l.Netns("sw"), l.Netns("a"), l.Netns("b")
		names = []string{sw, a, b}
		l.Bridge(sw, "br0")
		l.Attach(a, "eth0", sw, "br0", "pa", "02:00:00:00:00:0a")
		l.Attach(b, "eth0", sw, "br0", "pb")
		l.Addr(a, "eth0", "10.77.0.1/24")
		l.Addr(b, "eth0", "10.77.0.2/24")
		l.Serve(b, "10.77.0.2:8080", "hello from b")
		resp, err := HTTPClient(a, 3*time.Second).Get("http://10.77.0.2:8080/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "hello from b" {
			t.Fatalf("body %q", body)
		}
		// The root namespace cannot reach it: the lab is isolated.
		if _, err := HTTPClient("", time.Second).Get("http://10.77.0.2:8080/"); err == nil {
			t.Fatal("reached a lab address from outside the lab")
		}
	})
	for _, n := range names {
		if _, err := os.Stat("/run/netns/" + n); err == nil {
			t.Errorf("namespace %s left behind", n)
		}
	}
}
