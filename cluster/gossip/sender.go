package gossip

import (
	"slices"
	"time"

	"github.com/hashicorp/memberlist"
)

// Sending: what each other live member still lacks of this node's own view,
// and the goroutine that sends it (see the package comment).

const (
	// maxWindow bounds the batches in flight to one member (about 85 KB,
	// well under a socket's receive buffer); a member starts with
	// startWindow, doubled by every acknowledgement message.
	maxWindow   = 64
	startWindow = 8
	// maxBackoff bounds the ack timeout's doubling.
	maxBackoff = 32
	// maxLate bounds the batches remembered after their timeout, so that a
	// late acknowledgement still shows the member is answering.
	maxLate = 1024
)

// peer is one other live member as a receiver of this node's observations.
// A target is in at most one of changes and refresh; it may also be in a
// batch in flight (that carried an older observation, or the same one).
// So every observation the member has not acknowledged is owed, and the
// sets hold at most one entry per own target: nothing is ever dropped.
type peer struct {
	node     *memberlist.Node // a copy, replaced (never changed) on update
	epoch    uint64           // its incarnation when last reset
	changes  map[string]struct{}
	refresh  map[string]struct{}
	inflight map[uint64]*inflight
	late     map[uint64]time.Time // batches timed out (observations queued again) → when sent
	window   int                  // batches it may have in flight
	timeout  time.Duration        // current ack timeout
	srtt     time.Duration        // smoothed time to an acknowledgement (0: none yet)
	rttvar   time.Duration        // and its mean deviation
	goneAt   time.Time            // when it died (in Gossip.gone)
	lastAck  time.Time            // when it last acknowledged a batch
}

// inflight is one batch sent and not acknowledged yet.
type inflight struct {
	at               time.Time
	changes, refresh []string
}

// owe records that the member lacks target's latest observation, an up/down
// change or a refresh; it reports whether one was already waiting (now
// replaced).
func (p *peer) owe(target string, change bool) (replaced bool) {
	if _, ok := p.changes[target]; ok {
		return true
	}
	_, replaced = p.refresh[target]
	if change {
		delete(p.refresh, target)
		p.changes[target] = struct{}{}
	} else {
		p.refresh[target] = struct{}{}
	}
	return replaced
}

// readsWeights: the member reads wire version 3 (its memberlist delegate
// protocol maximum).
func (p *peer) readsWeights() bool { return p.node != nil && p.node.DMax >= delegateWeights }

// requeue makes p owe again what batch b carried.
func (p *peer) requeue(b *inflight) {
	for _, t := range b.changes {
		p.owe(t, true)
	}
	for _, t := range b.refresh {
		if _, ok := p.changes[t]; !ok {
			p.refresh[t] = struct{}{}
		}
	}
}

// heard notes that the member sent us a batch: it is up, so batches of
// ours it did not acknowledge are sent again after the usual timeout, not
// after the backoff (it may have dropped them while it thought us dead).
func (p *peer) heard(base time.Duration) {
	p.timeout = min(p.timeout, p.rto(base))
}

// sample takes the time from sending a batch to its acknowledgement into
// the smoothed estimates (as TCP does, RFC 6298; every send has its own id,
// so a sample is never ambiguous).
func (p *peer) sample(rtt time.Duration) {
	if p.srtt == 0 {
		p.srtt, p.rttvar = rtt, rtt/2
		return
	}
	d := p.srtt - rtt
	if d < 0 {
		d = -d
	}
	p.rttvar = (3*p.rttvar + d) / 4
	p.srtt = (7*p.srtt + rtt) / 8
}

// rto is the ack timeout the estimates call for: srtt + 4 rttvar, at least
// base (Config.AckTimeout) and at most maxBackoff × base.
func (p *peer) rto(base time.Duration) time.Duration {
	return min(max(base, p.srtt+4*p.rttvar), maxBackoff*base)
}

func cloneNode(n *memberlist.Node) *memberlist.Node {
	c := *n
	c.Addr = slices.Clone(n.Addr)
	c.Meta = slices.Clone(n.Meta)
	return &c
}

// resetPeerLocked makes p owe every own observation: it just joined or
// restarted as incarnation epoch and lacks them. g.mu must be held.
func (g *Gossip) resetPeerLocked(p *peer, epoch uint64) {
	own := g.views[g.name].obs
	p.epoch = epoch
	p.changes = make(map[string]struct{}, len(own))
	p.refresh = map[string]struct{}{}
	for t := range own {
		p.changes[t] = struct{}{}
	}
	p.inflight = map[uint64]*inflight{}
	p.late = map[uint64]time.Time{}
	p.window, p.timeout = startWindow, p.rto(g.cfg.AckTimeout)
}

// departLocked keeps what a member that died (not left) lacks, all its
// batches in flight included, and goes on tracking it: if it comes back as
// the same incarnation (it was wrongly declared dead, or a partition
// healed), it is sent exactly that, not every own observation again.
// g.mu must be held.
func (g *Gossip) departLocked(name string, now time.Time) {
	p := g.peers[name]
	if p == nil {
		return
	}
	delete(g.peers, name)
	for _, b := range p.inflight {
		p.requeue(b)
	}
	p.inflight, p.late = map[uint64]*inflight{}, map[uint64]time.Time{}
	p.goneAt = now
	g.gone[name] = p
}

// returnLocked takes back the peer of a member that died and comes back as
// incarnation epoch, if it was that one; nil otherwise. g.mu must be held.
func (g *Gossip) returnLocked(name string, epoch uint64) *peer {
	p := g.gone[name]
	delete(g.gone, name)
	if p == nil || epoch == 0 || p.epoch != epoch {
		return nil
	}
	p.window, p.timeout = startWindow, p.rto(g.cfg.AckTimeout)
	return p
}

// restartedLocked is told that origin runs as incarnation epoch, newer than
// the one this node knew. g.mu must be held.
func (g *Gossip) restartedLocked(origin string, epoch uint64) {
	if p := g.peers[origin]; p != nil && p.epoch < epoch {
		g.resetPeerLocked(p, epoch)
	}
}

// acked handles an acknowledgement from a member.
func (g *Gossip) acked(m message) {
	if m.to != g.epoch {
		return // of batches of a previous incarnation of this node
	}
	now := time.Now()
	g.mu.Lock()
	p := g.peers[m.origin]
	var n, late uint64
	if p != nil {
		for _, id := range m.acks {
			if b, ok := p.inflight[id]; ok {
				delete(p.inflight, id)
				p.sample(now.Sub(b.at))
				n++
			} else if at, ok := p.late[id]; ok {
				// Its observations were queued again already; the
				// member answers, only slower than the timeout.
				delete(p.late, id)
				p.sample(now.Sub(at))
				late++
			}
		}
		if n+late > 0 {
			p.lastAck = now
			p.timeout = p.rto(g.cfg.AckTimeout)
			p.window = min(maxWindow, 2*p.window)
		}
	}
	more := p != nil && len(p.changes)+len(p.refresh) > 0
	g.mu.Unlock()
	g.batchesAcked.Add(n + late)
	if more {
		g.wakeSender()
	}
}

// wakeSender asks the sender for a pass; it never blocks.
func (g *Gossip) wakeSender() {
	select {
	case g.flushCh <- struct{}{}:
	default:
	}
}

// flushLoop sends when woken (an up/down change, an acknowledgement that
// opens the window, a membership change) and every RefreshInterval, at
// most once per BatchDelay.
func (g *Gossip) flushLoop() {
	defer g.wg.Done()
	tick := time.NewTicker(g.cfg.RefreshInterval)
	defer tick.Stop()
	var last time.Time
	for {
		select {
		case <-g.stopCh:
			return
		case <-g.flushCh:
		case <-tick.C:
		}
		if wait := g.cfg.BatchDelay - time.Since(last); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-g.stopCh:
				t.Stop()
				return
			case <-t.C:
			}
		}
		last = time.Now()
		g.flush(last)
	}
}

type packet struct {
	to    *memberlist.Node
	msg   []byte
	batch int // observations in it
}

// flush sends every member the batches it is owed.
func (g *Gossip) flush(now time.Time) {
	var out []packet
	g.mu.Lock()
	for _, p := range g.peers {
		out = g.batchesLocked(p, now, out)
	}
	g.mu.Unlock()
	for _, pk := range out {
		if err := g.ml.SendBestEffort(pk.to, pk.msg); err != nil {
			g.sendErrors.Add(1) // the batch times out and is sent again
			continue
		}
		g.deltaSent.Add(uint64(len(pk.msg)))
		g.batchesSent.Add(1)
		g.recordsSent.Add(uint64(pk.batch))
	}
}

// ack acknowledges batch id of origin's incarnation epoch to it at once
// (from memberlist's packet handler: a UDP send does not block).
func (g *Gossip) ack(to *memberlist.Node, epoch, id uint64) {
	msg := encodeAcks(g.name, g.epoch, epoch, []uint64{id}, batchBytes)[0]
	if err := g.ml.SendBestEffort(to, msg); err != nil {
		g.sendErrors.Add(1)
		return
	}
	g.deltaSent.Add(uint64(len(msg)))
	g.acksSent.Add(1)
}

// batchesLocked appends to out the batches p is owed now (up/down changes
// first, then refreshes) while its window allows, after queueing again the
// observations of batches not acknowledged in time. g.mu must be held.
func (g *Gossip) batchesLocked(p *peer, now time.Time, out []packet) []packet {
	own := g.views[g.name].obs
	g.expireLocked(p, now)
	for len(p.inflight) < p.window && len(p.changes)+len(p.refresh) > 0 {
		g.batchID++
		// Weights only to a member that reads them (wire version 3).
		w := newBatch(g.name, g.epoch, g.batchID, batchBytes, p.readsWeights() && !g.cfg.olderRelease)
		b := &inflight{at: now}
		b.changes = fill(w, own, p.changes, b.changes)
		b.refresh = fill(w, own, p.refresh, b.refresh)
		if w.n == 0 {
			break // the owed targets are not in our view: nothing to send
		}
		p.inflight[g.batchID] = b
		out = append(out, packet{to: p.node, msg: w.bytes(), batch: w.n})
	}
	return out
}

// fill moves targets of set into w, their current observations, while they
// fit, and returns sent with the targets taken appended.
func fill(w *batchWriter, own map[string]Observation, set map[string]struct{}, sent []string) []string {
	for t := range set {
		o, ok := own[t]
		if !ok {
			delete(set, t)
			continue
		}
		if !w.add(o) {
			break
		}
		delete(set, t)
		sent = append(sent, t)
	}
	return sent
}

// expireLocked queues again the observations of p's batches that were not
// acknowledged within its timeout. If p acknowledged something within the
// timeout, its window halves; if not, it may have one batch in flight and
// the timeout doubles, until it acknowledges again (a late acknowledgement
// of a batch that timed out counts). g.mu must be held.
func (g *Gossip) expireLocked(p *peer, now time.Time) {
	for id, at := range p.late {
		if now.Sub(at) > maxBackoff*g.cfg.AckTimeout {
			delete(p.late, id)
		}
	}
	var n uint64
	for id, b := range p.inflight {
		if now.Sub(b.at) < p.timeout {
			continue
		}
		p.requeue(b)
		delete(p.inflight, id)
		if len(p.late) < maxLate {
			p.late[id] = b.at
		}
		n++
	}
	if n == 0 {
		return
	}
	g.batchesResent.Add(n)
	if now.Sub(p.lastAck) < p.timeout {
		// It answers, only slower than the timeout (a loaded machine) or
		// it lost a packet: send less, at the same pace.
		p.window = max(1, p.window/2)
		return
	}
	p.window = 1
	p.timeout = min(2*p.timeout, maxBackoff*g.cfg.AckTimeout)
}
