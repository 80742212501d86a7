package nemesis

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"

	"github.com/raftlb/raftlb/internal/netlab"
)

// ARPChecker asks, every interval, who has the VIP: a broadcast ARP
// request from mon0, an interface of the client namespace on the client
// LAN with no address of its own, so that the replies never reach the
// client's neighbour table (the keepalived lab found that replies to
// arping flip the client's entry during a split brain; the checker must
// not steer the client). Every director whose kernel answers for the VIP
// replies; two different MACs answering one request is a dual-holder
// sample.
//
// Each request carries one of 64 sender addresses in turn (10.30.0.128+),
// and the reply is addressed to it, so a reply is matched to its request
// exactly, however late it is read. Gratuitous ARPs for the VIP seen on
// the way are recorded too.
type ARPChecker struct {
	lab      *Lab
	conn     *packet.Conn
	mac      net.HardwareAddr
	interval time.Duration

	mu      sync.Mutex
	seq     uint64
	ring    [arpSlots]arpSlot
	duals   []Dual
	answers []ARPEvent // changes of the set of MACs answering a request
	garps   []ARPEvent
	sent    int
	replies int

	stop chan struct{}
	wg   sync.WaitGroup
}

// ARPEvent is one observation of who answers for the VIP.
type ARPEvent struct {
	At   time.Time
	MAC  string // comma-separated when several answered one request
	Name string // the directors with those MACs ("+"-separated), if known
}

const arpSlots = 64

type arpSlot struct {
	seq    uint64
	sentAt time.Time
	macs   []string
	dual   bool
}

var arpSenderBase = netip.MustParseAddr("10.30.0.128")

// StartARPChecker opens the packet socket in the client namespace and
// starts asking.
func StartARPChecker(l *Lab, interval time.Duration) (*ARPChecker, error) {
	a := &ARPChecker{lab: l, interval: interval, stop: make(chan struct{})}
	err := netlab.Do(l.Client, func() error {
		ifi, err := net.InterfaceByName("mon0")
		if err != nil {
			return err
		}
		a.mac = ifi.HardwareAddr
		a.conn, err = packet.Listen(ifi, packet.Raw, unix.ETH_P_ARP, nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("arp checker: %w", err)
	}
	a.wg.Add(2)
	go a.send()
	go a.receive()
	return a, nil
}

// Stop ends the checker.
func (a *ARPChecker) Stop() {
	select {
	case <-a.stop:
		return
	default:
		close(a.stop)
	}
	a.conn.Close()
	a.wg.Wait()
}

func (a *ARPChecker) send() {
	defer a.wg.Done()
	t := time.NewTicker(a.interval)
	defer t.Stop()
	vip := netip.MustParseAddr(VIP).As4()
	for {
		a.mu.Lock()
		// The request two before this one has had two intervals to be
		// answered and its replies read: record who answered it when
		// that changes.
		if a.seq > 1 {
			a.noteAnswer(a.ring[(a.seq-1)%arpSlots])
		}
		a.seq++
		slot := a.seq % arpSlots
		a.ring[slot] = arpSlot{seq: a.seq, sentAt: time.Now()}
		a.sent++
		a.mu.Unlock()
		spa := arpSenderBase.As4()
		spa[3] += byte(slot)
		frame := arpRequest(a.mac, spa, vip)
		_, _ = a.conn.WriteTo(frame, &packet.Addr{HardwareAddr: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}})
		select {
		case <-a.stop:
			return
		case <-t.C:
		}
	}
}

// arpRequest is an Ethernet broadcast ARP request: who has tpa, tell spa
// at sha.
func arpRequest(sha net.HardwareAddr, spa, tpa [4]byte) []byte {
	b := make([]byte, 42)
	copy(b[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(b[6:12], sha)
	binary.BigEndian.PutUint16(b[12:14], unix.ETH_P_ARP)
	p := b[14:]
	binary.BigEndian.PutUint16(p[0:2], 1)      // Ethernet
	binary.BigEndian.PutUint16(p[2:4], 0x0800) // IPv4
	p[4], p[5] = 6, 4
	binary.BigEndian.PutUint16(p[6:8], 1) // request
	copy(p[8:14], sha)
	copy(p[14:18], spa[:])
	// target hardware address: zero
	copy(p[24:28], tpa[:])
	return b
}

func (a *ARPChecker) receive() {
	defer a.wg.Done()
	vip := netip.MustParseAddr(VIP).As4()
	buf := make([]byte, 1514)
	for {
		n, _, err := a.conn.ReadFrom(buf)
		if err != nil {
			select {
			case <-a.stop:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
				return
			}
			time.Sleep(time.Millisecond)
			continue
		}
		now := time.Now()
		if n < 42 || binary.BigEndian.Uint16(buf[12:14]) != unix.ETH_P_ARP {
			continue
		}
		p := buf[14:42]
		if binary.BigEndian.Uint16(p[0:2]) != 1 || binary.BigEndian.Uint16(p[2:4]) != 0x0800 || p[4] != 6 || p[5] != 4 {
			continue
		}
		op := binary.BigEndian.Uint16(p[6:8])
		sha := net.HardwareAddr(append([]byte(nil), p[8:14]...)).String()
		var spa, tpa [4]byte
		copy(spa[:], p[14:18])
		copy(tpa[:], p[24:28])
		if spa != vip {
			continue
		}
		if tpa == vip { // gratuitous (request or reply form)
			a.mu.Lock()
			a.garps = append(a.garps, ARPEvent{At: now, MAC: sha, Name: a.lab.DirectorByMAC(sha)})
			a.mu.Unlock()
			continue
		}
		base := arpSenderBase.As4()
		if op != 2 || tpa[0] != base[0] || tpa[1] != base[1] || tpa[2] != base[2] ||
			tpa[3] < base[3] || int(tpa[3]-base[3]) >= arpSlots {
			continue
		}
		a.record(int(tpa[3]-base[3]), sha, now)
	}
}

func (a *ARPChecker) record(slot int, mac string, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.replies++
	s := &a.ring[slot]
	for _, m := range s.macs {
		if m == mac {
			return
		}
	}
	s.macs = append(s.macs, mac)
	if len(s.macs) > 1 && !s.dual {
		s.dual = true
		a.duals = append(a.duals, Dual{At: now, Kind: "arp", Who: a.names(s.macs),
			Detail: fmt.Sprintf("request %d sent %s answered by %v", s.seq, s.sentAt.Format("15:04:05.000"), s.macs)})
	}
}

// names maps MACs to director names (a MAC the lab does not know stays
// a MAC).
func (a *ARPChecker) names(macs []string) []string {
	var who []string
	for _, m := range macs {
		if name := a.lab.DirectorByMAC(m); name != "" {
			who = append(who, name)
		} else {
			who = append(who, m)
		}
	}
	return who
}

// noteAnswer records who answered request s if that differs from the
// request before.
func (a *ARPChecker) noteAnswer(s arpSlot) {
	macs := slices.Clone(s.macs)
	slices.Sort(macs)
	ev := ARPEvent{At: s.sentAt, MAC: strings.Join(macs, ","), Name: strings.Join(a.names(macs), "+")}
	if len(macs) == 0 {
		ev.Name = "nobody"
	}
	if n := len(a.answers); n == 0 || a.answers[n-1].MAC != ev.MAC {
		a.answers = append(a.answers, ev)
	}
}

// Duals returns the requests answered by two MACs in [from, to].
func (a *ARPChecker) Duals(from, to time.Time) []Dual {
	a.mu.Lock()
	defer a.mu.Unlock()
	return within(a.duals, from, to)
}

// Answers returns the changes of who answers (one event per change of
// the set of MACs answering a request; "nobody" when none did) in
// [from, to].
func (a *ARPChecker) Answers(from, to time.Time) []ARPEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	return eventsWithin(a.answers, from, to)
}

// GARPs returns the gratuitous ARPs for the VIP seen in [from, to].
func (a *ARPChecker) GARPs(from, to time.Time) []ARPEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	return eventsWithin(a.garps, from, to)
}

func eventsWithin(es []ARPEvent, from, to time.Time) []ARPEvent {
	i := sort.Search(len(es), func(i int) bool { return !es[i].At.Before(from) })
	var out []ARPEvent
	for ; i < len(es) && !es[i].At.After(to); i++ {
		out = append(out, es[i])
	}
	return out
}

// Stats returns the requests sent and replies matched.
func (a *ARPChecker) Stats() (sent, replies int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sent, a.replies
}

// Forget drops the history before t.
func (a *ARPChecker) Forget(t time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	keep := func(es []ARPEvent) []ARPEvent {
		i := sort.Search(len(es), func(i int) bool { return !es[i].At.Before(t) })
		return append([]ARPEvent(nil), es[i:]...)
	}
	a.answers, a.garps = keep(a.answers), keep(a.garps)
	var ds []Dual
	for _, d := range a.duals {
		if !d.At.Before(t) {
			ds = append(ds, d)
		}
	}
	a.duals = ds
}
