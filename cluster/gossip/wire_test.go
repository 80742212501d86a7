package gossip

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"strings"
	"testing"
	"time"
)

// encodeDelta is a version-1 delta: what directors before wire version 2
// sent for each changed observation (still accepted).
func encodeDelta(origin string, epoch uint64, o Observation) []byte {
	b := []byte{wireVersion, kindDelta}
	b = appendString(b, origin)
	b = binary.AppendUvarint(b, epoch)
	return appendRecord(b, o, false)
}

// encodeBatch packs obs into one batch (version 2) without a size limit.
func encodeBatch(origin string, epoch, id uint64, obs ...Observation) []byte {
	return encodeBatchV(false, origin, epoch, id, obs...)
}

// encodeBatch3 packs obs into one batch3 (version 3, with the weights).
func encodeBatch3(origin string, epoch, id uint64, obs ...Observation) []byte {
	return encodeBatchV(true, origin, epoch, id, obs...)
}

func encodeBatchV(v3 bool, origin string, epoch, id uint64, obs ...Observation) []byte {
	w := newBatch(origin, epoch, id, maxPacketMsg, v3)
	for _, o := range obs {
		w.add(o)
	}
	return w.bytes()
}

// unknownWeight is o as received in a record without a weight field.
func unknownWeight(o Observation) Observation {
	o.Weight, o.WeightUnknown = nil, true
	return o
}

func weight(n int) *int { return &n }

// encodeMessage re-encodes a decoded message.
func encodeMessage(m message) []byte {
	switch m.kind {
	case kindBye:
		return encodeBye(m.origin, m.epoch)
	case kindBatch:
		return encodeBatch(m.origin, m.epoch, m.id, m.obs...)
	case kindBatch3:
		return encodeBatch3(m.origin, m.epoch, m.id, m.obs...)
	case kindAck:
		return encodeAcks(m.origin, m.epoch, m.to, m.acks, maxPacketMsg)[0]
	}
	return encodeDelta(m.origin, m.epoch, m.obs[0])
}

func TestWireRoundTrip(t *testing.T) {
	o := Observation{Target: "tcp/10.0.1.1:80#abc", Up: true, Latency: 1500 * time.Microsecond, Err: "", Seq: 42}
	b := encodeDelta("d1", 7, o)
	m, err := decodeMsg(b)
	if err != nil || m.kind != kindDelta || m.origin != "d1" || m.epoch != 7 || len(m.obs) != 1 || !reflect.DeepEqual(m.obs[0], unknownWeight(o)) {
		t.Fatalf("delta round trip: %+v %v", m, err)
	}
	// The exact bytes of version 1: a change to the format must bump the
	// version.
	want := []byte{1, 1, 2, 'd', '1', 7, 19}
	want = append(want, "tcp/10.0.1.1:80#abc"...)
	want = append(want, 42, 1, 0xe0, 0xc6, 0x5b, 0)
	if !bytes.Equal(b, want) {
		t.Errorf("delta bytes\n got %v\nwant %v", b, want)
	}

	if m, err := decodeMsg(encodeBye("d1", 9)); err != nil || m.kind != kindBye || m.origin != "d1" || m.epoch != 9 {
		t.Fatalf("bye round trip: %+v %v", m, err)
	}

	// Version 2: a batch and an ack, exact bytes.
	o2 := Observation{Target: "t2", Err: "refused", Seq: 43}
	b = encodeBatch("d1", 7, 5, o, o2)
	want = []byte{2, 4, 2, 'd', '1', 7, 5, 2, 19}
	want = append(want, "tcp/10.0.1.1:80#abc"...)
	want = append(want, 42, 1, 0xe0, 0xc6, 0x5b, 0, 2, 't', '2', 43, 0, 0, 7)
	want = append(want, "refused"...)
	if !bytes.Equal(b, want) {
		t.Errorf("batch bytes\n got %v\nwant %v", b, want)
	}
	m, err = decodeMsg(b)
	if err != nil || m.kind != kindBatch || m.origin != "d1" || m.epoch != 7 || m.id != 5 || !reflect.DeepEqual(m.obs, []Observation{unknownWeight(o), unknownWeight(o2)}) {
		t.Fatalf("batch round trip: %+v %v", m, err)
	}
	// A weight does not change a version-2 batch: an older director reads
	// it as before, and the receiver knows the weight is unknown.
	ow := o
	ow.Weight = weight(10)
	if b2 := encodeBatch("d1", 7, 5, ow, o2); !bytes.Equal(b2, b) {
		t.Errorf("a weight changed the version-2 batch:\n got %v\nwant %v", b2, b)
	}

	// Version 3: the same batch with a weight (flags bit 1, the weight
	// after the error text) on the first record, none on the second.
	b = encodeBatch3("d1", 7, 5, ow, o2)
	want = []byte{3, 6, 2, 'd', '1', 7, 5, 2, 19}
	want = append(want, "tcp/10.0.1.1:80#abc"...)
	want = append(want, 42, 3, 0xe0, 0xc6, 0x5b, 0, 10, 2, 't', '2', 43, 0, 0, 7)
	want = append(want, "refused"...)
	if !bytes.Equal(b, want) {
		t.Errorf("batch3 bytes\n got %v\nwant %v", b, want)
	}
	m, err = decodeMsg(b)
	if err != nil || m.kind != kindBatch3 || m.origin != "d1" || m.epoch != 7 || m.id != 5 || !reflect.DeepEqual(m.obs, []Observation{ow, o2}) {
		t.Fatalf("batch3 round trip: %+v %v", m, err)
	}
	for _, w := range []int{0, 253, 65535} {
		ow.Weight = weight(w)
		if m, err := decodeMsg(encodeBatch3("d1", 7, 5, ow)); err != nil || *m.obs[0].Weight != w {
			t.Fatalf("weight %d: %+v %v", w, m, err)
		}
	}
	acks := encodeAcks("d2", 8, 7, []uint64{5, 300}, batchBytes)
	if len(acks) != 1 || !bytes.Equal(acks[0], []byte{2, 5, 2, 'd', '2', 8, 7, 2, 5, 0xac, 2}) {
		t.Errorf("ack bytes %v", acks)
	}
	m, err = decodeMsg(acks[0])
	if err != nil || m.kind != kindAck || m.origin != "d2" || m.epoch != 8 || m.to != 7 || !reflect.DeepEqual(m.acks, []uint64{5, 300}) {
		t.Fatalf("ack round trip: %+v %v", m, err)
	}

	states := []originState{
		{origin: "a", epoch: 1, obs: []Observation{o, {Target: "udp/[2001:db8::1]:53#x", Err: "refused", Seq: 1}}},
		{origin: "b", epoch: 1 << 62, obs: []Observation{}},
	}
	gotStates, err := decodeState(encodeState(states))
	for _, s := range states {
		for i, o := range s.obs {
			s.obs[i] = unknownWeight(o) // a full state carries no weights
		}
	}
	if err != nil || !reflect.DeepEqual(gotStates, states) {
		t.Fatalf("state round trip: %+v %v", gotStates, err)
	}
}

// The decoder is strict: each kind in its one version, no empty batch or
// ack, no target twice in a batch, nothing over a limit, no trailing bytes.
func TestWireStrict(t *testing.T) {
	o := Observation{Target: "t", Seq: 1}
	batch := encodeBatch("d1", 1, 1, o)
	ack := encodeAcks("d1", 1, 1, []uint64{1}, batchBytes)[0]
	for name, b := range map[string][]byte{
		"empty":                {},
		"one byte":             {2},
		"version 4":            append([]byte{4}, batch[1:]...),
		"batch in version 3":   append([]byte{3}, batch[1:]...),
		"batch3 in version 2":  append([]byte{2}, encodeBatch3("d1", 1, 1, o)[1:]...),
		"weight out of range":  append(encodeBatch3("d1", 1, 1, o)[:11:11], 2, 0, 0, 0x80, 0x80, 4),
		"weight truncated":     append(encodeBatch3("d1", 1, 1, o)[:11:11], 2, 0, 0),
		"batch in version 1":   append([]byte{1}, batch[1:]...),
		"delta in version 2":   append([]byte{2}, encodeDelta("d1", 1, o)[1:]...),
		"bye in version 2":     append([]byte{2}, encodeBye("d1", 1)[1:]...),
		"ack in version 1":     append([]byte{1}, ack[1:]...),
		"unknown kind":         {2, 9, 0},
		"empty batch":          {2, 4, 2, 'd', '1', 1, 1, 0},
		"empty ack":            {2, 5, 2, 'd', '1', 1, 1, 0},
		"batch count too big":  {2, 4, 2, 'd', '1', 1, 1, 100, 1, 't', 1, 0, 0, 0},
		"ack count too big":    {2, 5, 2, 'd', '1', 1, 1, 3, 1},
		"target twice":         encodeBatch("d1", 1, 1, o, Observation{Target: "t", Seq: 2}),
		"trailing byte":        append(batch[:len(batch):len(batch)], 0),
		"truncated":            batch[:len(batch)-1],
		"empty origin":         encodeBatch("", 1, 1, o),
		"empty target":         encodeBatch("d1", 1, 1, Observation{}),
		"long origin":          encodeBatch(strings.Repeat("o", MaxOriginLen+1), 1, 1, o),
		"oversize":             append(encodeBatch("d1", 1, 1, o), make([]byte, maxPacketMsg)...),
		"overlong varint":      {2, 4, 2, 'd', '1', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"latency out of range": encodeBatch("d1", 1, 1, Observation{Target: "t", Latency: -1}),
	} {
		if name == "latency out of range" {
			// appendRecord writes a negative latency as 0; forge 2^63.
			b = []byte{2, 4, 2, 'd', '1', 1, 1, 1, 1, 't', 1, 0}
			b = binary.AppendUvarint(b, 1<<63)
			b = append(b, 0)
		}
		if m, err := decodeMsg(b); err == nil {
			t.Errorf("%s: accepted %+v", name, m)
		}
	}
	if _, err := decodeMsg(batch); err != nil {
		t.Fatalf("the good batch: %v", err)
	}
}

// A batch stays within its byte budget and takes one record at least.
func TestBatchWriterLimit(t *testing.T) {
	w := newBatch("d1", 1<<60, 1<<40, batchBytes, true)
	n := 0
	for i := 0; ; i++ {
		if !w.add(Observation{Target: strings.Repeat("x", 40) + string(rune('a'+i%26)) + strings.Repeat("y", i/26), Seq: uint64(i + 1), Err: "connection refused"}) {
			break
		}
		n++
	}
	if b := w.bytes(); len(b) > batchBytes || n < 10 || w.n != n {
		t.Fatalf("%d records in %d bytes (limit %d)", n, len(b), batchBytes)
	}
	big := newBatch("d1", 1, 1, 10, false)
	if !big.add(Observation{Target: strings.Repeat("t", MaxTargetLen), Err: strings.Repeat("e", MaxErrLen)}) || big.add(Observation{Target: "u"}) {
		t.Fatal("the first record must always be taken, and only it when over the limit")
	}
	if m, err := decodeMsg(big.bytes()); err != nil || len(m.obs) != 1 {
		t.Fatalf("%+v %v", m, err)
	}
	// Acks split over as many messages as they need.
	ids := make([]uint64, 1000)
	for i := range ids {
		ids[i] = 1<<63 + uint64(i)
	}
	var got []uint64
	for _, a := range encodeAcks("d1", 1, 2, ids, batchBytes) {
		if len(a) > batchBytes {
			t.Fatalf("ack of %d bytes", len(a))
		}
		m, err := decodeMsg(a)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.acks...)
	}
	if !reflect.DeepEqual(got, ids) {
		t.Fatal("acks lost or reordered")
	}
}

// FuzzDecode feeds arbitrary bytes to both decoders: they must never panic,
// and whatever they accept must re-encode to bytes that decode the same.
func FuzzDecode(f *testing.F) {
	o := Observation{Target: "tcp/10.0.1.1:80#abc", Up: true, Latency: time.Millisecond, Err: "x", Seq: 3}
	f.Add(encodeDelta("d1", 1, o))
	f.Add(encodeState([]originState{{origin: "a", epoch: 2, obs: []Observation{o, o}}}))
	f.Add([]byte{1, 2, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{2, 1})
	f.Add(encodeBye("d1", 9))
	f.Add(encodeBatch("d1", 1, 2, o, Observation{Target: "b", Seq: 4}))
	f.Add(encodeBatch3("d1", 1, 2, Observation{Target: "a", Seq: 5, Up: true, Weight: weight(7)}, Observation{Target: "b", Seq: 4}))
	f.Add(encodeAcks("d1", 1, 2, []uint64{3, 4}, batchBytes)[0])
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := decodeMsg(b); err == nil {
			m2, err := decodeMsg(encodeMessage(m))
			if err != nil || !reflect.DeepEqual(m2, m) {
				t.Fatalf("re-decode of accepted message: %+v, %+v, %v", m, m2, err)
			}
		}
		if states, err := decodeState(b); err == nil {
			re := encodeState(states)
			s2, err := decodeState(re)
			if err != nil || !reflect.DeepEqual(s2, states) {
				t.Fatalf("re-decode of accepted state: %v", err)
			}
		}
	})
}
