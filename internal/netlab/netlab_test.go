package netlab

import (
	"io"
	"os"
	"os/exec"
	"strings"
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
		// The lab's addresses exist only inside it (checked by reading
		// addresses: tests never send traffic from the root namespace to
		// anything but loopback).
		out, err := exec.Command("ip", "-o", "addr").Output()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(out), "10.77.0.") {
			t.Fatal("a lab address leaked into the root namespace")
		}
	})
	for _, n := range names {
		if _, err := os.Stat("/run/netns/" + n); err == nil {
			t.Errorf("namespace %s left behind", n)
		}
	}
}
