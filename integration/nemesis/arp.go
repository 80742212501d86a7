package nemesis

import (
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

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
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
//
// The frames are built and parsed with mdlayher/arp and mdlayher/ethernet
// (arpRequest, parseARP) on a packet socket of its own: arp.Client is not
// used because it needs an IPv4 address on its interface (arp.New fails
// without one), and mon0 must have none.
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

var (
	arpSenders    = netip.MustParsePrefix("10.30.0.128/26") // arpSlots addresses
	arpSenderBase = arpSenders.Addr()
)

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
		if _, err := arpRequest(a.mac, arpSenderBase, netip.MustParseAddr(VIP)); err != nil {
			return fmt.Errorf("mon0 (%v): %w", a.mac, err)
		}
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
	vip := netip.MustParseAddr(VIP)
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
		// No error: StartARPChecker built one with this MAC.
		if frame, err := arpRequest(a.mac, netip.AddrFrom4(spa), vip); err == nil {
			_, _ = a.conn.WriteTo(frame, &packet.Addr{HardwareAddr: ethernet.Broadcast})
		}
		select {
		case <-a.stop:
			return
		case <-t.C:
		}
	}
}

// arpRequest is an Ethernet broadcast ARP request: who has tpa, tell spa
// at sha (target MAC zero), built as arp.Client.WriteTo builds its
// frames, so padded to 60 bytes.
func arpRequest(sha net.HardwareAddr, spa, tpa netip.Addr) ([]byte, error) {
	p, err := arp.NewPacket(arp.OperationRequest, sha, spa, make(net.HardwareAddr, 6), tpa)
	if err != nil {
		return nil, err
	}
	body, err := p.MarshalBinary()
	if err != nil {
		return nil, err
	}
	f := ethernet.Frame{Destination: ethernet.Broadcast, Source: sha, EtherType: ethernet.EtherTypeARP, Payload: body}
	return f.MarshalBinary()
}

// parseARP decodes an Ethernet/IPv4 ARP frame.
func parseARP(b []byte) (*arp.Packet, bool) {
	var f ethernet.Frame
	var p arp.Packet
	if f.UnmarshalBinary(b) != nil || f.EtherType != ethernet.EtherTypeARP || p.UnmarshalBinary(f.Payload) != nil {
		return nil, false
	}
	if p.HardwareType != 1 || p.ProtocolType != uint16(ethernet.EtherTypeIPv4) || p.HardwareAddrLength != 6 || p.IPLength != 4 {
		return nil, false
	}
	return &p, true
}

func (a *ARPChecker) receive() {
	defer a.wg.Done()
	vip := netip.MustParseAddr(VIP)
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
		p, ok := parseARP(buf[:n])
		if !ok || p.SenderIP != vip {
			continue
		}
		sha := p.SenderHardwareAddr.String()
		if p.TargetIP == vip { // gratuitous (request or reply form)
			a.mu.Lock()
			a.garps = append(a.garps, ARPEvent{At: now, MAC: sha, Name: a.lab.DirectorByMAC(sha)})
			a.mu.Unlock()
			continue
		}
		if p.Operation != arp.OperationReply || !arpSenders.Contains(p.TargetIP) {
			continue
		}
		a.record(int(p.TargetIP.As4()[3]-arpSenderBase.As4()[3]), sha, now)
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
