package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// shutdownBound is how long the tests of this file let a Shutdown take:
// half the transport's I/O deadline, so a shutdown that waited for a
// blocked RPC to time out fails too.
const shutdownBound = transportTimeout / 2

// shutdownWithin shuts n down and fails unless that finished within
// shutdownBound.
func shutdownWithin(t *testing.T, n *testNode) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), shutdownBound)
	defer cancel()
	if err := n.ShutdownContext(ctx); err != nil {
		t.Fatalf("ShutdownContext(%s): %v\ngoroutines:\n%s", n.ID(), err, allStacks())
	}
}

func allStacks() []byte {
	buf := make([]byte, 4<<20)
	return buf[:runtime.Stack(buf, true)]
}

// TestShutdownAfterAnIsolatedLeaderRejoins replays, 20 times, what left
// directors unable to stop (issue 11): a leader is cut off from the others
// while it replicates to them, they elect another, the link comes back, and
// the director that led is shut down (after leading again, as a SIGTERMed
// leader that hands over first). With hashicorp's pipelined replication
// its pipelined requests were answered with the newer term on the heal,
// and about one replication goroutine in three deadlocked (see
// transportMaxInFlight); the shutdown then never finished, here within the
// first few rounds.
func TestShutdownAfterAnIsolatedLeaderRejoins(t *testing.T) {
	links := newLinkNet(t)
	nodes := startCluster(t, 3, links.withLinks)
	const rounds = 20
	for rep, tries := 0, 0; rep < rounds; tries++ {
		if tries == 2*rounds {
			t.Fatalf("only %d of %d rounds had a leader at the cut in %d tries", rep, rounds, tries)
		}
		old := waitLeader(t, nodes)
		waitConverged(t, nodes, applyN(t, nodes, fmt.Sprintf("try%d", tries), 2))
		term := old.raft.CurrentTerm()
		links.cut(old)
		if !old.IsLeader() {
			// Leadership moved before the cut (a stall under -race
			// can cost an election): not the case under test.
			links.heal(old)
			continue
		}
		// The isolated leader keeps appending until it steps down (a
		// director's lease loop commits barriers all the time), so its
		// replication always has more to send while the link is cut.
		writeWhileLeading(t, old)
		next := waitLeader(t, without(nodes, old))
		if next.raft.CurrentTerm() <= term {
			t.Fatalf("round %d: %s leads in term %d, not after %s's term %d", rep, next.ID(), next.raft.CurrentTerm(), old.ID(), term)
		}
		links.heal(old)
		waitLeader(t, nodes)
		waitConverged(t, nodes, applyN(t, nodes, fmt.Sprintf("healed%d", tries), 1))

		// old leads again, then is shut down: it hands over and stops.
		if err := next.TransferLeadership(old.ID()); err != nil {
			t.Logf("round %d: transfer %s -> %s: %v", rep, next.ID(), old.ID(), err)
		}
		waitLeader(t, nodes)
		shutdownWithin(t, old)
		i := indexOf(nodes, old)
		cfg := old.cfg
		cfg.BindAddr = old.Addr()
		nodes[i] = startNodeWith(t, cfg)
		rep++
	}
}

// writeWhileLeading appends an entry every few milliseconds (without
// waiting for its commit) until n is no longer leader.
func writeWhileLeading(t *testing.T, n *testNode) {
	t.Helper()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(waitTimeout)
	for i := 0; n.IsLeader(); i++ {
		n.raft.Apply([]byte(fmt.Sprintf("uncommitted-%d", i)), 0)
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("%s still leads after %v cut off", n.ID(), waitTimeout)
		}
	}
}

func indexOf(nodes []*testNode, n *testNode) int {
	for i, m := range nodes {
		if m == n {
			return i
		}
	}
	return -1
}

// TestShutdownAbandonsRPCsToAnUnreachablePeer: a leader whose follower is
// cut off has RPCs to it blocked until the transport's I/O deadline (10 s);
// its shutdown closes their connections instead of waiting.
func TestShutdownAbandonsRPCsToAnUnreachablePeer(t *testing.T) {
	links := newLinkNet(t)
	nodes := startCluster(t, 3, links.withLinks)
	leader := waitLeader(t, nodes)
	waitConverged(t, nodes, applyN(t, nodes, "before", 2))
	cut := followers(nodes, leader)[0]
	links.cut(cut)
	// Committed without the cut follower: the leader has been sending to
	// it, and nothing came back.
	rest := without(nodes, cut)
	waitConverged(t, rest, applyN(t, rest, "during", 2))
	shutdownWithin(t, leader)
}

// TestStreamShutdown: after shutdown a dial under way gives up, new dials
// fail, and the open connections, dialled and accepted, are closed.
func TestStreamShutdown(t *testing.T) {
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		return ln
	}
	// Dials of unreachable wait for their context, as one to a host that
	// drops SYNs would (nothing is sent to it).
	const unreachable = "192.0.2.1:7481"
	dial := func(ctx context.Context, address string) (net.Conn, error) {
		if address == unreachable {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return (&net.Dialer{}).DialContext(ctx, "tcp", address)
	}
	ln := listen()
	s := newStreamLayer(ln, ln.Addr(), nil, dial)
	peerLn := listen()
	peer := newStreamLayer(peerLn, peerLn.Addr(), nil, nil)

	// A connection in each direction, with a read blocked on each end of s.
	out, err := s.Dial(raft.ServerAddress(peerLn.Addr().String()), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	in, err := peer.Dial(raft.ServerAddress(ln.Addr().String()), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	accepted, err := s.Accept()
	if err != nil {
		t.Fatal(err)
	}
	reads := make(chan error, 2)
	for _, c := range []net.Conn{out, accepted} {
		go func() {
			_, err := c.Read(make([]byte, 1))
			reads <- err
		}()
	}
	dialed := make(chan error, 1)
	go func() {
		_, err := s.Dial(unreachable, 0) // no timeout: only shutdown ends it
		dialed <- err
	}()

	s.shutdown()
	if err := <-dialed; !errors.Is(err, errStreamShutdown) {
		t.Errorf("dial under way at shutdown: %v, want errStreamShutdown", err)
	}
	if _, err := s.Dial(raft.ServerAddress(peerLn.Addr().String()), time.Second); !errors.Is(err, errStreamShutdown) {
		t.Errorf("dial after shutdown: %v, want errStreamShutdown", err)
	}
	for range 2 {
		if err := <-reads; !errors.Is(err, net.ErrClosed) {
			t.Errorf("read blocked at shutdown: %v, want net.ErrClosed", err)
		}
	}
	// A connection that comes after shutdown is closed, not handed on.
	late, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	accepted2 := make(chan net.Conn, 1)
	go func() {
		c, _ := s.Accept()
		accepted2 <- c
	}()
	if _, err := late.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("read from a connection accepted after shutdown: %v, want EOF", err)
	}
	ln.Close()
	if c := <-accepted2; c != nil {
		t.Errorf("Accept after shutdown handed on %v", c.RemoteAddr())
	}
}
