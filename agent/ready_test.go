package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftlb/raftlb/api/client"
	"github.com/raftlb/raftlb/api/wire"
	"github.com/raftlb/raftlb/model"
)

// TestReadyUnderAWriteLoop: under steady writes every director stays
// ready. Readiness as "applied == commit" flapped (a follower is always an
// entry or two behind while writes stream in), so a load balancer in front
// of the API would have dropped healthy directors.
func TestReadyUnderAWriteLoop(t *testing.T) {
	tc := newCluster(t, 3, "peers")
	for _, d := range tc.dirs {
		d.cfg.Profile = "lan" // the writers load both cores: fast's 100 ms heartbeat could elect again
	}
	tc.startAll()
	ld := tc.leader()
	addService(t, tc.client(ld), "web", 80)

	var stop atomic.Bool
	var polls, notReady, noLeader, behind atomic.Int64
	term := tc.dirs[ld].a.node.Status().Term
	var firstReason atomic.Value
	var wg sync.WaitGroup
	for _, d := range tc.dirs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				resp, err := http.Get(d.a.APIURL() + "/readyz")
				if err != nil {
					t.Error(err)
					return
				}
				var rd wire.Ready
				_ = json.NewDecoder(resp.Body).Decode(&rd)
				resp.Body.Close()
				polls.Add(1)
				switch {
				case resp.StatusCode == http.StatusOK:
				case strings.HasPrefix(rd.Reason, "no leader"):
					noLeader.Add(1) // an election: checked below
				default:
					notReady.Add(1)
					firstReason.CompareAndSwap(nil, d.cfg.NodeID+": "+rd.Reason)
				}
				if st := d.a.node.Status(); st.AppliedIndex < st.CommitIndex {
					behind.Add(1) // what the old rule called "not ready"
				}
				time.Sleep(time.Millisecond) // pace the pollers: they share two cores with raft
			}
		}()
	}
	// Several writers at once, through every director (followers forward),
	// so that entries are always in flight.
	const writers, each = 6, 60
	var ww sync.WaitGroup
	for w := range writers {
		ww.Add(1)
		go func() {
			defer ww.Done()
			c := tc.client(w % len(tc.dirs))
			for i := range each {
				r := model.NewRealSpec()
				r.Address, r.Weight = fmt.Sprintf("10.%d.%d.%d", 1+w, i/250, 1+i%250), 1
				_, err := c.CreateReal(context.Background(), "web", r)
				if client.IsCode(err, wire.CodeLeadershipLost) || client.IsCode(err, wire.CodeNoLeader) {
					continue // an election under load; readiness is what is tested
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	ww.Wait()
	stop.Store(true)
	wg.Wait()
	const writes = writers * each
	t.Logf("%d readiness polls during %d writes; %d saw applied < commit (the old rule's 503s)", polls.Load(), writes, behind.Load())
	// Only an election makes a director legitimately unready here (both
	// cores are busy; a starved follower may call one).
	if n, t2 := noLeader.Load(), tc.dirs[tc.leader()].a.node.Status().Term; n > 0 && t2 == term {
		t.Fatalf("%d polls said no leader, but no election happened (term %d)", n, term)
	} else if n > 0 {
		t.Logf("%d polls during an election (term %d -> %d)", n, term, t2)
	}
	if n := notReady.Load(); n > 0 {
		t.Fatalf("%d of %d polls not ready during steady writes, first: %v", n, polls.Load(), firstReason.Load())
	}
}
