package gossip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/raftlb/raftlb/model"
)

// Wire format. Every message starts with a version byte and a kind byte;
// all integers are unsigned varints (encoding/binary.Uvarint) and strings
// are a uvarint length followed by that many bytes. Each kind has exactly
// one version; a message of a known kind with another version is rejected.
//
// Version 1 (kinds 1-3; also understood by directors older than version 2):
//
//	delta  (kind 1, one changed observation; sent by directors before
//	        version 2, still accepted):
//	    version=1 kind=1 origin:string epoch:uvarint record
//	state  (kind 2, full state, exchanged by memberlist push/pull over TCP):
//	    version=1 kind=2 n:uvarint n × { origin:string epoch:uvarint m:uvarint m × record }
//	bye    (kind 3, sent by Leave so peers can tell "left" from "dead"):
//	    version=1 kind=3 origin:string epoch:uvarint
//
// Version 2 (kinds 4-5; a director before version 2 drops them as bad and
// learns the changes by push/pull, so upgrade every director):
//
//	batch  (kind 4, many changed observations of one origin, sent directly
//	        to each live member over UDP, at most one packet):
//	    version=2 kind=4 origin:string epoch:uvarint id:uvarint n:uvarint n × record   (n ≥ 1, targets distinct)
//	ack    (kind 5, the receiver of batches acknowledges them to their origin):
//	    version=2 kind=5 origin:string epoch:uvarint to:uvarint n:uvarint n × id:uvarint   (n ≥ 1; to = the epoch of the batches' origin)
//
//	record:
//	    target:string seq:uvarint flags:byte latency_ns:uvarint err:string
//	    flags bit 0 = up; other bits are reserved, ignored on receipt
//
// Version 3 (kind 6; dynamic weights): the batch of version 2 whose records
// may carry a weight. It is sent only to a member whose memberlist delegate
// protocol maximum is at least delegateWeights (1), which directors of
// this release advertise; a director of an older release (maximum 0) is
// sent version-2 batches, without the weights, so it keeps everything it
// had and ignores the weights. Every other kind is unchanged (the full
// state stays kind 2, without weights).
//
//	batch3 (kind 6):
//	    version=3 kind=6 origin:string epoch:uvarint id:uvarint n:uvarint n × record3   (as kind 4)
//	record3:
//	    record, then weight:uvarint when flags bit 1 is set (0-65535: the
//	    dynamic weight; absent: the configured weight); bits 2-7 reserved
//
// An observation received in a record without a weight field (kinds 1, 2
// and 4) has an unknown weight (Observation.WeightUnknown): its origin is of
// an older release, or it came by full state. A record3 of the same seq
// replaces it, so a view learnt first by push/pull gets its weight from the
// origin's batch.
//
// epoch identifies one incarnation of an origin (its start time in Unix
// nanoseconds); (epoch, seq) orders an origin's observations; a batch id is
// unique per (origin, epoch, receiver). A message with an unknown version or
// kind, trailing bytes, a string over its limit, a count the message cannot
// hold or a total size over its limit is rejected whole.
const (
	wireVersion  byte = 1 // kinds 1-3
	wireVersion2 byte = 2 // kinds 4-5
	wireVersion3 byte = 3 // kind 6
	kindDelta    byte = 1
	kindState    byte = 2
	kindBye      byte = 3
	kindBatch    byte = 4
	kindAck      byte = 5
	kindBatch3   byte = 6

	flagUp     byte = 1 << 0
	flagWeight byte = 1 << 1 // record3 only: a weight follows

	// delegateWeights is the memberlist delegate protocol version that
	// reads wire version 3; a director advertises it as its maximum
	// (the current version stays 0, so older directors accept it).
	delegateWeights = 1

	// MaxOriginLen, MaxTargetLen and MaxErrLen bound the strings on the
	// wire. Publish truncates Err to MaxErrLen and rejects longer names.
	MaxOriginLen = 128
	MaxTargetLen = 512
	MaxErrLen    = 256

	// maxDeltaSize bounds one delta message (it must fit a UDP packet with
	// memberlist's framing and encryption overhead).
	maxDeltaSize = 1 + 1 + 10 + MaxOriginLen + 10 + (10 + MaxTargetLen + 10 + 1 + 10 + 10 + MaxErrLen) + 4
	// maxPacketMsg bounds a batch or an ack on receipt: what one UDP
	// datagram can carry. Senders keep them to batchBytes.
	maxPacketMsg = 65507
	// batchBytes is the most a sender puts in one batch or ack: memberlist's
	// 1400-byte UDP budget (one Ethernet frame) less its framing (message
	// type, CRC, AES-GCM version, nonce and tag: at most 51 bytes) and a
	// margin.
	batchBytes = 1400 - 64
	// maxStateSize bounds a full-state message; memberlist itself refuses
	// push/pull state over 20 MiB.
	maxStateSize = 16 << 20
	// minRecordSize is the smallest encoded record, used to bound counts
	// before allocating.
	minRecordSize = 5
)

var errBadMessage = errors.New("gossip: bad message")

// originState is one origin's observations as carried in a full-state
// message.
type originState struct {
	origin string
	epoch  uint64
	obs    []Observation
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendRecord appends o as a record, or with v3 as a record3 (with its
// weight).
func appendRecord(b []byte, o Observation, v3 bool) []byte {
	b = appendString(b, o.Target)
	b = binary.AppendUvarint(b, o.Seq)
	var f byte
	if o.Up {
		f |= flagUp
	}
	weight := v3 && o.Weight != nil
	if weight {
		f |= flagWeight
	}
	b = append(b, f)
	lat := o.Latency
	if lat < 0 {
		lat = 0
	}
	b = binary.AppendUvarint(b, uint64(lat))
	b = appendString(b, o.Err)
	if weight {
		b = binary.AppendUvarint(b, uint64(*o.Weight))
	}
	return b
}

func encodeState(states []originState) []byte {
	n := 16
	for _, s := range states {
		n += 24 + len(s.origin)
		for _, o := range s.obs {
			n += 24 + len(o.Target) + len(o.Err)
		}
	}
	b := make([]byte, 0, n)
	b = append(b, wireVersion, kindState)
	b = binary.AppendUvarint(b, uint64(len(states)))
	for _, s := range states {
		b = appendString(b, s.origin)
		b = binary.AppendUvarint(b, s.epoch)
		b = binary.AppendUvarint(b, uint64(len(s.obs)))
		for _, o := range s.obs {
			b = appendRecord(b, o, false)
		}
	}
	return b
}

// batchWriter packs records of one origin into a batch message of at
// most limit bytes.
type batchWriter struct {
	head  []byte // version, kind, origin, epoch, id
	recs  []byte
	n     int
	limit int
	v3    bool
}

// newBatch starts a batch (kind 4), or with v3 a batch3 (kind 6) whose
// records carry the weights.
func newBatch(origin string, epoch, id uint64, limit int, v3 bool) *batchWriter {
	h := make([]byte, 0, 32+len(origin))
	if v3 {
		h = append(h, wireVersion3, kindBatch3)
	} else {
		h = append(h, wireVersion2, kindBatch)
	}
	h = appendString(h, origin)
	h = binary.AppendUvarint(h, epoch)
	h = binary.AppendUvarint(h, id)
	return &batchWriter{head: h, recs: make([]byte, 0, limit), limit: limit, v3: v3}
}

// add appends o unless that would take the message over its limit; the
// first record is always taken.
func (w *batchWriter) add(o Observation) bool {
	mark := len(w.recs)
	w.recs = appendRecord(w.recs, o, w.v3)
	if w.n > 0 && w.size() > w.limit {
		w.recs = w.recs[:mark]
		return false
	}
	w.n++
	return true
}

func (w *batchWriter) size() int {
	return len(w.head) + uvarintLen(uint64(w.n+1)) + len(w.recs)
}

func (w *batchWriter) bytes() []byte {
	b := make([]byte, 0, w.size())
	b = append(b, w.head...)
	b = binary.AppendUvarint(b, uint64(w.n))
	return append(b, w.recs...)
}

func uvarintLen(v uint64) int {
	var buf [binary.MaxVarintLen64]byte
	return binary.PutUvarint(buf[:], v)
}

// encodeAcks encodes acknowledgements of ids (batches of the origin at
// epoch to) in as many acks of at most limit bytes as they need.
func encodeAcks(origin string, epoch, to uint64, ids []uint64, limit int) [][]byte {
	var out [][]byte
	for len(ids) > 0 {
		b := append(make([]byte, 0, limit), wireVersion2, kindAck)
		b = appendString(b, origin)
		b = binary.AppendUvarint(b, epoch)
		b = binary.AppendUvarint(b, to)
		n := min(len(ids), (limit-len(b)-binary.MaxVarintLen64)/binary.MaxVarintLen64)
		b = binary.AppendUvarint(b, uint64(n))
		for _, id := range ids[:n] {
			b = binary.AppendUvarint(b, id)
		}
		out = append(out, b)
		ids = ids[n:]
	}
	return out
}

// decoder reads the wire format; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{errBadMessage}, args...)...)
	}
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("truncated or overlong %s", what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte1(what string) byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.fail("truncated %s", what)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) str(what string, limit int) string {
	n := d.uvarint(what + " length")
	if d.err != nil {
		return ""
	}
	if n > uint64(limit) {
		d.fail("%s length %d over limit %d", what, n, limit)
		return ""
	}
	if n > uint64(len(d.b)) {
		d.fail("truncated %s", what)
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// record reads a record, or with v3 a record3; a record without a weight
// field has an unknown weight.
func (d *decoder) record(v3 bool) Observation {
	var o Observation
	o.Target = d.str("target", MaxTargetLen)
	o.Seq = d.uvarint("seq")
	f := d.byte1("flags")
	o.Up = f&flagUp != 0
	lat := d.uvarint("latency")
	if lat > uint64(1<<63-1) {
		d.fail("latency out of range")
	}
	o.Latency = time.Duration(lat)
	o.Err = d.str("err", MaxErrLen)
	if d.err == nil && o.Target == "" {
		d.fail("empty target")
	}
	o.WeightUnknown = !v3
	if v3 && f&flagWeight != 0 {
		w := d.uvarint("weight")
		if w > model.MaxWeight {
			d.fail("weight %d out of range (0-%d)", w, model.MaxWeight)
		}
		n := int(w)
		o.Weight = &n
	}
	return o
}

// kindVersion is the one version of each kind.
var kindVersion = map[byte]byte{kindDelta: wireVersion, kindState: wireVersion, kindBye: wireVersion,
	kindBatch: wireVersion2, kindAck: wireVersion2, kindBatch3: wireVersion3}

func (d *decoder) header(kind byte, max int) {
	if len(d.b) > max {
		d.fail("message of %d bytes over limit %d", len(d.b), max)
		return
	}
	v := d.byte1("version")
	k := d.byte1("kind")
	switch {
	case d.err != nil:
	case v != wireVersion && v != wireVersion2 && v != wireVersion3:
		d.fail("unsupported version %d", v)
	case k != kind:
		d.fail("unexpected kind %d (want %d)", k, kind)
	case v != kindVersion[k]:
		d.fail("kind %d in version %d (it is version %d)", k, v, kindVersion[k])
	}
}

// count reads a count of items of at least min bytes each, at least 1 if
// nonEmpty, that the rest of the message can hold.
func (d *decoder) count(what string, min int, nonEmpty bool) uint64 {
	n := d.uvarint(what)
	switch {
	case d.err != nil:
	case nonEmpty && n == 0:
		d.fail("%s is 0", what)
	case n > uint64(len(d.b)/min):
		d.fail("%s %d exceeds message", what, n)
	}
	return n
}

func (d *decoder) origin() (string, uint64) {
	origin := d.str("origin", MaxOriginLen)
	epoch := d.uvarint("epoch")
	if d.err == nil && origin == "" {
		d.fail("empty origin")
	}
	return origin, epoch
}

func (d *decoder) end() {
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
}

func encodeBye(origin string, epoch uint64) []byte {
	b := append(make([]byte, 0, 16+len(origin)), wireVersion, kindBye)
	b = appendString(b, origin)
	return binary.AppendUvarint(b, epoch)
}

// message is one decoded packet message: a delta or a batch of either
// version (obs), a bye, or an ack (to, acks).
type message struct {
	kind   byte
	origin string
	epoch  uint64
	obs    []Observation // delta: one; batch: at least one, distinct targets
	id     uint64        // batch
	to     uint64        // ack: the epoch of the acknowledged batches' origin
	acks   []uint64      // ack: batch ids, at least one
}

// decodeMsg decodes a delta, bye, batch or ack. It never panics and
// allocates in proportion to the input size.
func decodeMsg(b []byte) (message, error) {
	d := decoder{b: b}
	var m message
	if len(b) >= 2 {
		m.kind = b[1]
	}
	switch m.kind {
	case kindBye:
		d.header(kindBye, maxDeltaSize)
		m.origin, m.epoch = d.origin()
	case kindBatch, kindBatch3:
		d.header(m.kind, maxPacketMsg)
		m.origin, m.epoch = d.origin()
		m.id = d.uvarint("batch id")
		n := d.count("record count", minRecordSize, true)
		if d.err != nil {
			break
		}
		m.obs = make([]Observation, 0, n)
		seen := make(map[string]struct{}, n)
		for range n {
			o := d.record(m.kind == kindBatch3)
			if _, dup := seen[o.Target]; dup && d.err == nil {
				d.fail("target %.40q twice in one batch", o.Target)
			}
			if d.err != nil {
				break
			}
			seen[o.Target] = struct{}{}
			m.obs = append(m.obs, o)
		}
	case kindAck:
		d.header(kindAck, maxPacketMsg)
		m.origin, m.epoch = d.origin()
		m.to = d.uvarint("acknowledged epoch")
		n := d.count("ack count", 1, true)
		if d.err != nil {
			break
		}
		m.acks = make([]uint64, 0, n)
		for range n {
			m.acks = append(m.acks, d.uvarint("batch id"))
		}
	default:
		d.header(kindDelta, maxDeltaSize)
		m.origin, m.epoch = d.origin()
		m.obs = []Observation{d.record(false)}
	}
	d.end()
	if d.err != nil {
		return message{}, d.err
	}
	return m, nil
}

// decodeState decodes a kind-2 message. It never panics and allocates in
// proportion to the input size.
func decodeState(b []byte) ([]originState, error) {
	d := decoder{b: b}
	d.header(kindState, maxStateSize)
	n := d.count("origin count", 3, false)
	if d.err != nil {
		return nil, d.err
	}
	states := make([]originState, 0, n)
	for range n {
		var s originState
		s.origin, s.epoch = d.origin()
		m := d.count("record count", minRecordSize, false)
		if d.err != nil {
			return nil, d.err
		}
		s.obs = make([]Observation, 0, m)
		for range m {
			o := d.record(false)
			if d.err != nil {
				return nil, d.err
			}
			s.obs = append(s.obs, o)
		}
		states = append(states, s)
	}
	d.end()
	if d.err != nil {
		return nil, d.err
	}
	return states, nil
}
