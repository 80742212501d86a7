package vrrp

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"reflect"
	"testing"
)

// seedVectors hands every frame of the vectors (and the IPv6 one) with its
// VRRP message (nil for an ARP frame) to add, which seeds f.
func seedVectors(f *testing.F, add func(msg, frame []byte, v6 bool)) {
	for _, v := range loadVectors(f) {
		if v.Kind != "vrrp4" {
			frame, _ := hex.DecodeString(v.FrameHex)
			add(nil, frame, false)
			continue
		}
		msg, _ := hex.DecodeString(v.IPPayloadHex)
		frame, _ := hex.DecodeString(v.FrameHex)
		add(msg, frame, false)
	}
	msg, _ := hex.DecodeString(v6Msg)
	frame, _ := hex.DecodeString(v6Frame)
	add(msg, frame, true)
}

// FuzzUnmarshal: Unmarshal never panics, every error wraps one of the
// sentinels, and a message it accepts round-trips: Marshal of the packet
// decodes to the same packet and is the same bytes but for what the RFCs
// say a receiver ignores (the v3 reserved bits, the v2 auth data of auth
// type none) and the form of a zero checksum.
func FuzzUnmarshal(f *testing.F) {
	seedVectors(f, func(msg, _ []byte, v6 bool) {
		if msg != nil {
			f.Add(msg, v6, uint8(TTL))
		}
	})
	f.Add([]byte{0x31, 1, 0, 0, 0, 1, 0, 0}, false, uint8(TTL))
	f.Fuzz(func(t *testing.T, b []byte, v6 bool, ttl uint8) {
		src, dst := d1, group
		if v6 {
			src, dst = v6Src, v6Dst
		}
		p, err := Unmarshal(b, src, dst, int(ttl))
		if err != nil {
			if Reason(err) == "other" {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		out, err := p.Marshal(src, dst)
		if err != nil {
			t.Fatalf("accepted %x, Marshal(%+v): %v", b, p, err)
		}
		p2, err := Unmarshal(out, src, dst, TTL)
		if err != nil {
			t.Fatalf("Marshal(%+v) = %x, not accepted: %v", p, out, err)
		}
		p2.Checksum = p.Checksum
		if !reflect.DeepEqual(p, p2) {
			t.Fatalf("round trip %+v, want %+v", p2, p)
		}
		canon := bytes.Clone(b)
		if p.Version == 3 {
			canon[4] &= 0x0f
		} else if p.AuthType == AuthNone {
			clear(canon[len(canon)-authDataLen:])
		}
		canon[6], canon[7] = out[6], out[7]
		if !bytes.Equal(out, canon) {
			t.Fatalf("Marshal = %x, want %x (from %x)", out, canon, b)
		}
	})
}

// FuzzDecodeEthernet: the frame helpers never panic, every error wraps
// one of the sentinels, and a frame they accept re-encodes to a frame that
// decodes the same.
func FuzzDecodeEthernet(f *testing.F) {
	seedVectors(f, func(_, frame []byte, _ bool) { f.Add(frame) })
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := DecodeEthernet(b)
		if len(b) > 14 {
			if _, err := DecodeIP(b[14:]); err != nil && Reason(err) == "other" {
				t.Fatalf("DecodeIP: error wraps no sentinel: %v", err)
			}
		}
		if err != nil {
			if Reason(err) == "other" {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		out, err := fr.Marshal()
		if err != nil {
			t.Fatalf("accepted %x, Marshal: %v", b, err)
		}
		fr2, err := DecodeEthernet(out)
		if err != nil {
			t.Fatalf("Marshal = %x, not accepted: %v", out, err)
		}
		fr2.VRRP.Checksum = fr.VRRP.Checksum
		fr.Message, fr2.Message = nil, nil // as received: may differ in the ignored bits
		if !reflect.DeepEqual(fr, fr2) {
			t.Fatalf("round trip %+v, want %+v", fr2, fr)
		}
	})
}

// Short, odd-length or version-less input and missing addresses never make
// Checksum panic.
func TestChecksumOddInput(t *testing.T) {
	for _, b := range [][]byte{nil, {0x31}, {0x31, 1, 2}, {0x21, 1, 2, 3, 4, 5, 6, 7, 8}} {
		_ = Checksum(b, netip.Addr{}, v6Dst)
		if ChecksumOK(b, d1, group) {
			t.Errorf("ChecksumOK(%x)", b)
		}
	}
}
