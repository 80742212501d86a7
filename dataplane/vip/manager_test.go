package vip

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/raftlb/raftlb/model"
)

func (f *FakeLinks) setFailAdd(ifname string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failAdd[ifname] = err
}

// put adds an address behind the Manager's back.
func (f *FakeLinks) put(ifname, prefix string, marked bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addrs = append(f.addrs, Addr{Interface: ifname, Prefix: netip.MustParsePrefix(prefix), Marked: marked})
}

// drop removes an address behind the Manager's back.
func (f *FakeLinks) drop(ifname, prefix string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addrs = slices.DeleteFunc(f.addrs, func(a Addr) bool {
		return a.Interface == ifname && a.Prefix.String() == prefix
	})
}

// list returns "prefix ifname[*]" sorted; * = marked.
func (f *FakeLinks) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, a := range f.addrs {
		s := a.Prefix.String() + " " + a.Interface
		if a.Marked {
			s += "*"
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

func (f *FakeLinks) callsCount(prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

// times returns when addr was announced, relative to t0.
func (f *FakeAnnouncer) times(addr string, t0 time.Time) []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []time.Duration
	for _, a := range f.sent {
		if a.addr.String() == addr {
			out = append(out, a.at.Sub(t0))
		}
	}
	return out
}

func (f *FakeAnnouncer) count(addr string) int { return len(f.times(addr, time.Time{})) }

func ms(ds ...int) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = time.Duration(d) * time.Millisecond
	}
	return out
}

func vipOf(addr, ifname string) model.VIP {
	return model.VIP{Address: addr, Interface: ifname, Group: model.DefaultVIPGroup}
}

var (
	v4  = vipOf("10.0.0.100/24", "eth0")
	v4b = vipOf("10.0.0.101/24", "eth0")
	v6  = vipOf("2001:db8::100/64", "eth0")
)

func equal[T comparable](t *testing.T, what string, got, want []T) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s:\n got %v\nwant %v", what, got, want)
	}
}

// The burst and refresh schedule, on synctest's fake clock.
func TestBurstAndRefreshTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fl, fa := NewFakeLinks("eth0"), NewFakeAnnouncer()
		m := New(fl, fa, Options{}) // defaults: 5 at 100 ms, refresh 10 s
		defer m.Close()
		t0 := time.Now()
		if err := m.Set([]model.VIP{v4, v6}); err != nil {
			t.Fatal(err)
		}
		// The first announcement is sent before Set returns.
		equal(t, "v4 after Set", fa.times("10.0.0.100", t0), ms(0))
		equal(t, "v6 after Set", fa.times("2001:db8::100", t0), ms(0))
		equal(t, "kernel", fl.list(), []string{"10.0.0.100/24 eth0*", "2001:db8::100/64 eth0*"})

		time.Sleep(time.Second)
		synctest.Wait()
		equal(t, "v4 burst", fa.times("10.0.0.100", t0), ms(0, 100, 200, 300, 400))
		equal(t, "v6 burst", fa.times("2001:db8::100", t0), ms(0, 100, 200, 300, 400))

		time.Sleep(25 * time.Second)
		synctest.Wait()
		equal(t, "v4 refresh", fa.times("10.0.0.100", t0), ms(0, 100, 200, 300, 400, 10000, 20000))

		// A VIP taken later gets its own burst; the refresh stays on its period.
		time.Sleep(time.Second) // t0+27 s
		if err := m.Set([]model.VIP{v4, v6, v4b}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(4 * time.Second) // t0+31 s
		synctest.Wait()
		equal(t, "v4b", fa.times("10.0.0.101", t0), ms(27000, 27100, 27200, 27300, 27400, 30000))
		equal(t, "v4 not re-burst", fa.times("10.0.0.100", t0), ms(0, 100, 200, 300, 400, 10000, 20000, 30000))

		st := m.Stats()
		if st.Held != 3 || st.Added != 3 || st.Announced != 8+8+6 || st.AnnounceErrors != 0 {
			t.Fatalf("stats %+v", st)
		}
	})
}

func TestBurstOptions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fl, fa := NewFakeLinks("eth0"), NewFakeAnnouncer()
		m := New(fl, fa, Options{BurstCount: 3, BurstInterval: -1, Refresh: -1})
		defer m.Close()
		t0 := time.Now()
		if err := m.Set([]model.VIP{v4}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		equal(t, "back to back, no refresh", fa.times("10.0.0.100", t0), ms(0, 0, 0))

		fa2 := NewFakeAnnouncer()
		m2 := New(NewFakeLinks("eth0"), fa2, Options{BurstCount: -1, Refresh: time.Second})
		defer m2.Close()
		if err := m2.Set([]model.VIP{v4}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2500 * time.Millisecond)
		synctest.Wait()
		equal(t, "no burst, refresh only", fa2.times("10.0.0.100", t0.Add(time.Hour)), ms(1000, 2000))
	})
}

// After Set releases a VIP, nothing more is announced for it, even in the
// middle of its burst.
func TestReleaseStopsAnnouncements(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fl, fa := NewFakeLinks("eth0"), NewFakeAnnouncer()
		m := New(fl, fa, Options{Refresh: time.Second})
		defer m.Close()
		t0 := time.Now()
		if err := m.Set([]model.VIP{v4, v6}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond)
		if err := m.Set([]model.VIP{v6}); err != nil {
			t.Fatal(err)
		}
		equal(t, "kernel after release", fl.list(), []string{"2001:db8::100/64 eth0*"})
		time.Sleep(3 * time.Second)
		synctest.Wait()
		equal(t, "released v4", fa.times("10.0.0.100", t0), ms(0, 100))
		equal(t, "kept v6", fa.times("2001:db8::100", t0), ms(0, 100, 200, 300, 400, 1000, 2000, 3000))
		equal(t, "owned", m.Owned(), []model.VIP{v6})

		if err := m.ReleaseAll(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		if n := fa.count("2001:db8::100"); n != 8 {
			t.Fatalf("announced %d times after ReleaseAll, want 8", n)
		}
		if len(fl.list()) != 0 || len(m.Owned()) != 0 {
			t.Fatalf("kernel %v, owned %v", fl.list(), m.Owned())
		}
		if st := m.Stats(); st.Removed != 2 || st.Held != 0 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// Set removes raftlb's marked addresses and the VIPs it took, never other
// addresses; a VIP already present is taken over without being re-added.
func TestSetOnlyRemovesWhatIsRaftlbs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fl, fa := NewFakeLinks("eth0", "lo"), NewFakeAnnouncer()
		fl.put("eth0", "10.0.0.11/24", false)     // the host's own address
		fl.put("lo", "10.0.0.100/32", false)      // the VIP on lo for direct routing
		fl.put("eth0", "10.0.0.150/24", true)     // raftlb's, from an earlier run, no longer a VIP
		fl.put("eth0", "2001:db8::100/64", false) // a VIP left unmarked (old kernel, or by hand)
		m := New(fl, fa, Options{})
		defer m.Close()
		if err := m.Set([]model.VIP{v4, v6}); err != nil {
			t.Fatal(err)
		}
		equal(t, "kernel", fl.list(), []string{"10.0.0.100/24 eth0*", "10.0.0.100/32 lo", "10.0.0.11/24 eth0", "2001:db8::100/64 eth0"})
		if n := fl.callsCount("add 2001:db8::100/64"); n != 0 {
			t.Fatalf("present VIP re-added %d times", n)
		}
		if fa.count("2001:db8::100") != 1 {
			t.Fatal("a VIP taken over was not announced")
		}
		if err := m.Set(nil); err != nil {
			t.Fatal(err)
		}
		equal(t, "kernel after Set(nil)", fl.list(), []string{"10.0.0.100/32 lo", "10.0.0.11/24 eth0"})
	})
}

func TestRemoveUnowned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fl := NewFakeLinks("eth0", "eth1", "lo")
		fl.put("eth0", "10.0.0.11/24", false)  // host address: kept
		fl.put("eth0", "10.0.0.100/32", false) // a VIP of the state, other prefix length: removed
		fl.put("lo", "10.0.0.100/32", false)   // the same address on lo (DR real server): kept
		fl.put("eth1", "10.0.1.100/24", false) // a VIP of the state: removed
		fl.put("eth0", "10.9.9.9/24", true)    // marked, not in the state: removed
		fl.put("eth0", "2001:db8::100/64", true)
		m := New(fl, NewFakeAnnouncer(), Options{})
		defer m.Close()
		// This director holds v6 already: RemoveUnowned leaves it.
		if err := m.Set([]model.VIP{v6}); err != nil {
			t.Fatal(err)
		}
		state := []model.VIP{v4, v6, vipOf("10.0.1.100/24", "eth1")}
		if err := m.RemoveUnowned(state); err != nil {
			t.Fatal(err)
		}
		equal(t, "kernel", fl.list(), []string{"10.0.0.100/32 lo", "10.0.0.11/24 eth0", "2001:db8::100/64 eth0*"})
		if st := m.Stats(); st.Removed != 3 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// The refresh pass re-adds a held VIP removed behind raftlb's back, and
// announces it with a new burst.
func TestRefreshRepairsDrift(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fl, fa := NewFakeLinks("eth0"), NewFakeAnnouncer()
		m := New(fl, fa, Options{BurstCount: 2, Refresh: 10 * time.Second})
		defer m.Close()
		t0 := time.Now()
		if err := m.Set([]model.VIP{v4}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		fl.drop("eth0", "10.0.0.100/24")
		time.Sleep(6 * time.Second)
		synctest.Wait()
		equal(t, "kernel", fl.list(), []string{"10.0.0.100/24 eth0*"})
		equal(t, "announcements", fa.times("10.0.0.100", t0), ms(0, 100, 10000, 10100))
		if st := m.Stats(); st.Repaired != 1 || st.Added != 2 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// Removing an IPv4 primary address takes its secondaries with it (no
// promote_secondaries): Set puts a wanted secondary back.
func TestSecondaryRemovedWithPrimary(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fl, fa := NewFakeLinks("eth0"), NewFakeAnnouncer()
		fl.cascade = true
		m := New(fl, fa, Options{})
		defer m.Close()
		if err := m.Set([]model.VIP{v4, v4b}); err != nil { // .100 primary, .101 secondary
			t.Fatal(err)
		}
		if err := m.Set([]model.VIP{v4b}); err != nil {
			t.Fatal(err)
		}
		equal(t, "kernel", fl.list(), []string{"10.0.0.101/24 eth0*"})
		equal(t, "owned", m.Owned(), []model.VIP{v4b})
	})
}

func TestErrorsNameInterfaceAndVIP(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fl, fa := NewFakeLinks("eth0", "eth1"), NewFakeAnnouncer()
		fl.setFailAdd("eth1", errors.New("operation not permitted"))
		fa.fail[netip.MustParseAddr("2001:db8::100")] = errors.New("network is down")
		m := New(fl, fa, Options{BurstCount: 2})
		defer m.Close()
		bad := vipOf("10.0.1.100/24", "eth1")
		err := m.Set([]model.VIP{v4, v6, bad, vipOf("10.0.0.300/24", "eth0"), vipOf("10.0.0.7/24", "")})
		for _, want := range []string{
			"vip: add 10.0.1.100/24 on eth1: operation not permitted",
			`vip: parse "10.0.0.300/24" on eth0`,
			`vip: parse "10.0.0.7/24": no interface`,
		} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Set error %v, want it to contain %q", err, want)
			}
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("%v is not a *vip.Error", err)
		}
		equal(t, "owned despite errors", m.Owned(), []model.VIP{v4, v6})
		time.Sleep(time.Second)
		synctest.Wait()
		st := m.Stats()
		if st.AddrErrors != 1 || st.AnnounceErrors != 2 || st.Announced != 2 {
			t.Fatalf("stats %+v", st)
		}
		if !strings.Contains(st.LastError, "2001:db8::100/64 on eth0: network is down") {
			t.Fatalf("last error %q", st.LastError)
		}
		// The failed VIP is retried by the next Set and by the refresh.
		fl.setFailAdd("eth1", nil)
		time.Sleep(DefaultRefresh)
		synctest.Wait()
		equal(t, "owned after refresh", m.Owned(), []model.VIP{v4, bad, v6})
	})
}

// A VIP that cannot be added (its interface is missing) is retried by the
// refresh pass even when it is the only one.
func TestRetryWhenNothingHeld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fl, fa := NewFakeLinks(), NewFakeAnnouncer()
		m := New(fl, fa, Options{Refresh: time.Second})
		defer m.Close()
		t0 := time.Now()
		if err := m.Set([]model.VIP{v4}); err == nil || !strings.Contains(err.Error(), "10.0.0.100/24 on eth0") {
			t.Fatalf("Set: %v", err)
		}
		time.Sleep(1500 * time.Millisecond)
		fl.mu.Lock()
		fl.ifaces["eth0"] = true // the interface appears
		fl.mu.Unlock()
		time.Sleep(time.Second)
		synctest.Wait()
		equal(t, "owned", m.Owned(), []model.VIP{v4})
		equal(t, "announced from the retry on", fa.times("10.0.0.100", t0)[:2], ms(2000, 2100))
		if n := fl.callsCount("add "); n != 3 {
			t.Fatalf("%d add attempts, want 3", n)
		}
	})
}

type notAnnounceable struct{ n int }

func (a *notAnnounceable) Announce(ifname string, addr netip.Addr) error {
	a.n++
	return fmt.Errorf("%s: %w", ifname, ErrNotAnnounceable)
}

func TestNotAnnounceableIsSkipped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ann := &notAnnounceable{}
		m := New(NewFakeLinks("lo"), ann, Options{Refresh: time.Second})
		defer m.Close()
		if err := m.Set([]model.VIP{vipOf("10.0.0.100/32", "lo")}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if st := m.Stats(); ann.n != 1 || st.AnnounceSkipped != 1 || st.AnnounceErrors != 0 || st.Held != 1 {
			t.Fatalf("announce calls %d, stats %+v", ann.n, st)
		}
	})
}

// If the kernel cannot be read, Set still adds what is wanted and removes
// what it holds.
func TestDumpFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fl := NewFakeLinks("eth0")
		fl.failDmp = errors.New("dump failed")
		m := New(fl, NewFakeAnnouncer(), Options{})
		defer m.Close()
		if err := m.Set([]model.VIP{v4}); err == nil || !strings.Contains(err.Error(), "dump failed") {
			t.Fatalf("Set error %v", err)
		}
		equal(t, "kernel", fl.list(), []string{"10.0.0.100/24 eth0*"})
		equal(t, "owned", m.Owned(), []model.VIP{v4})
		m.Set(nil)
		equal(t, "kernel after Set(nil)", fl.list(), nil)
		if err := m.RemoveUnowned(nil); err == nil {
			t.Fatal("RemoveUnowned without a dump succeeded")
		}
	})
}

func TestClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fl, fa := NewFakeLinks("eth0"), NewFakeAnnouncer()
		m := New(fl, fa, Options{})
		if err := m.Set([]model.VIP{v4}); err != nil {
			t.Fatal(err)
		}
		m.Close()
		m.Close()
		time.Sleep(time.Hour)
		synctest.Wait()
		if n := fa.count("10.0.0.100"); n != 1 {
			t.Fatalf("announced %d times after Close, want 1", n)
		}
		if err := m.Set([]model.VIP{v4, v6}); !errors.Is(err, ErrClosed) {
			t.Fatalf("Set after Close: %v", err)
		}
		equal(t, "Close leaves addresses", fl.list(), []string{"10.0.0.100/24 eth0*"})
		if err := m.ReleaseAll(); err != nil {
			t.Fatalf("ReleaseAll after Close: %v", err)
		}
		equal(t, "released after Close", fl.list(), nil)
		// synctest.Test fails if the Manager's goroutine is still alive.
	})
}

func TestParsePrefix(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.10/24":  "192.0.2.10/24",
		"192.0.2.10":     "192.0.2.10/32",
		"2001:db8::1":    "2001:db8::1/128",
		"2001:db8::1/64": "2001:db8::1/64",
	} {
		p, err := ParsePrefix(in)
		if err != nil || p.String() != want {
			t.Errorf("ParsePrefix(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	for _, in := range []string{"", "x", "0.0.0.0/0", "224.0.0.18/32", "::ffff:192.0.2.1/128", "192.0.2.1/33", "fe80::1%eth0/64"} {
		if _, err := ParsePrefix(in); err == nil {
			t.Errorf("ParsePrefix(%q) succeeded", in)
		}
	}
}

// Concurrent use on the real clock, for the race detector.
func TestConcurrentUse(t *testing.T) {
	fl, fa := NewFakeLinks("eth0"), NewFakeAnnouncer()
	m := New(fl, fa, Options{BurstInterval: time.Millisecond, Refresh: 2 * time.Millisecond})
	defer m.Close()
	var wg sync.WaitGroup
	sets := [][]model.VIP{nil, {v4}, {v4, v6}, {v6, v4b}}
	for g := range 4 {
		wg.Go(func() {
			for i := range 50 {
				_ = m.Set(sets[(g+i)%len(sets)])
				_ = m.Owned()
				_ = m.Stats()
				if i%10 == 0 {
					_ = m.RemoveUnowned(sets[3])
				}
			}
		})
	}
	wg.Wait()
	if err := m.Set(sets[2]); err != nil {
		t.Fatal(err)
	}
	equal(t, "final kernel", fl.list(), []string{"10.0.0.100/24 eth0*", "2001:db8::100/64 eth0*"})
}
