package ipvs

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"

	"github.com/raftlb/raftlb/dataplane"
)

// Generic netlink commands and attributes for the sync daemon
// (include/uapi/linux/ip_vs.h).
const (
	genlVersion = 1

	cmdNewDaemon = 9  // IPVS_CMD_NEW_DAEMON
	cmdDelDaemon = 10 // IPVS_CMD_DEL_DAEMON
	cmdGetDaemon = 11 // IPVS_CMD_GET_DAEMON

	cmdAttrDaemon = 3 // IPVS_CMD_ATTR_DAEMON, nested

	daemonAttrState       = 1 // u32: IP_VS_STATE_MASTER / _BACKUP
	daemonAttrMcastIfn    = 2 // NUL-terminated string, at most 15 bytes
	daemonAttrSyncID      = 3 // u32
	daemonAttrSyncMaxLen  = 4 // u16
	daemonAttrMcastGroup  = 5 // IPv4 address, network byte order
	daemonAttrMcastGroup6 = 6 // IPv6 address, 16 bytes
	daemonAttrMcastPort   = 7 // u16, host byte order
	daemonAttrMcastTTL    = 8 // u8

	stateMaster = 1 // IP_VS_STATE_MASTER
	stateBackup = 2 // IP_VS_STATE_BACKUP
)

// roleState maps a dataplane role to the kernel's daemon state.
func roleState(role string) (uint32, error) {
	switch role {
	case "master":
		return stateMaster, nil
	case "backup":
		return stateBackup, nil
	}
	return 0, fmt.Errorf("sync daemon role %q is neither master nor backup", role)
}

// encodeDaemon builds the IPVS_CMD_ATTR_DAEMON attribute that starts d.
// Zero optional fields are left out, so the kernel uses its defaults.
func encodeDaemon(d dataplane.SyncDaemon) ([]byte, error) {
	state, err := roleState(d.Role)
	if err != nil {
		return nil, err
	}
	switch {
	case d.Interface == "" || len(d.Interface) > 15:
		return nil, fmt.Errorf("sync daemon interface %q: want an interface name of 1-15 bytes", d.Interface)
	case d.SyncID < 0 || d.SyncID > 255:
		return nil, fmt.Errorf("sync id %d is out of range (0-255)", d.SyncID)
	case d.McastPort < 0 || d.McastPort > 65535:
		return nil, fmt.Errorf("sync multicast port %d is out of range (1-65535)", d.McastPort)
	case d.McastTTL < 0 || d.McastTTL > 255:
		return nil, fmt.Errorf("sync multicast TTL %d is out of range (1-255)", d.McastTTL)
	case d.MaxLen < 0 || d.MaxLen > 65535:
		return nil, fmt.Errorf("sync message length %d is out of range (0-65535)", d.MaxLen)
	case d.McastGroup.IsValid() && !d.McastGroup.IsMulticast():
		return nil, fmt.Errorf("sync group %s is not a multicast address", d.McastGroup)
	}
	ae := netlink.NewAttributeEncoder()
	ae.Nested(cmdAttrDaemon, func(n *netlink.AttributeEncoder) error {
		n.Uint32(daemonAttrState, state)
		n.String(daemonAttrMcastIfn, d.Interface)
		n.Uint32(daemonAttrSyncID, uint32(d.SyncID))
		if d.MaxLen > 0 {
			n.Uint16(daemonAttrSyncMaxLen, uint16(d.MaxLen))
		}
		if g := d.McastGroup.Unmap(); g.Is4() {
			n.Bytes(daemonAttrMcastGroup, g.AsSlice())
		} else if g.IsValid() {
			n.Bytes(daemonAttrMcastGroup6, g.AsSlice())
		}
		if d.McastPort > 0 {
			n.Uint16(daemonAttrMcastPort, uint16(d.McastPort))
		}
		if d.McastTTL > 0 {
			n.Uint8(daemonAttrMcastTTL, uint8(d.McastTTL))
		}
		return nil
	})
	return ae.Encode()
}

// encodeDaemonState builds the IPVS_CMD_ATTR_DAEMON attribute that stops
// the daemon of one role.
func encodeDaemonState(role string) ([]byte, error) {
	state, err := roleState(role)
	if err != nil {
		return nil, err
	}
	ae := netlink.NewAttributeEncoder()
	ae.Nested(cmdAttrDaemon, func(n *netlink.AttributeEncoder) error {
		n.Uint32(daemonAttrState, state)
		return nil
	})
	return ae.Encode()
}

// decodeDaemons parses the answer to IPVS_CMD_GET_DAEMON: one message per
// running daemon.
func decodeDaemons(msgs []genetlink.Message) ([]dataplane.SyncDaemon, error) {
	var out []dataplane.SyncDaemon
	for _, m := range msgs {
		ad, err := netlink.NewAttributeDecoder(m.Data)
		if err != nil {
			return nil, err
		}
		for ad.Next() {
			if ad.Type() != cmdAttrDaemon {
				continue
			}
			var d dataplane.SyncDaemon
			ad.Nested(func(n *netlink.AttributeDecoder) error {
				d = decodeDaemon(n)
				return nil
			})
			out = append(out, d)
		}
		if err := ad.Err(); err != nil {
			return nil, fmt.Errorf("decoding a sync daemon: %w", err)
		}
	}
	return out, nil
}

// decodeDaemon reads the attributes of one daemon.
func decodeDaemon(n *netlink.AttributeDecoder) dataplane.SyncDaemon {
	var d dataplane.SyncDaemon
	for n.Next() {
		switch n.Type() {
		case daemonAttrState:
			switch n.Uint32() {
			case stateMaster:
				d.Role = "master"
			case stateBackup:
				d.Role = "backup"
			}
		case daemonAttrMcastIfn:
			d.Interface = n.String()
		case daemonAttrSyncID:
			d.SyncID = int(n.Uint32())
		case daemonAttrSyncMaxLen:
			d.MaxLen = int(n.Uint16())
		case daemonAttrMcastGroup, daemonAttrMcastGroup6:
			if a, ok := netip.AddrFromSlice(n.Bytes()); ok {
				d.McastGroup = a
			}
		case daemonAttrMcastPort:
			d.McastPort = int(n.Uint16())
		case daemonAttrMcastTTL:
			d.McastTTL = int(n.Uint8())
		}
	}
	return d
}

// SyncDaemons lists the running sync daemons with the values the kernel
// uses: optional fields left at zero when started come back filled in with
// the kernel's defaults (group 224.0.0.81, port 8848, TTL 1, the MTU-based
// maximum length).
func (b *Backend) SyncDaemons() ([]dataplane.SyncDaemon, error) {
	msgs, err := b.genl.Execute(genetlink.Message{
		Header: genetlink.Header{Command: cmdGetDaemon, Version: genlVersion},
	}, b.family, netlink.Request|netlink.Dump)
	if err != nil {
		return nil, fmt.Errorf("ipvs: listing sync daemons: %w", err)
	}
	ds, err := decodeDaemons(msgs)
	if err != nil {
		return nil, fmt.Errorf("ipvs: %w", err)
	}
	return ds, nil
}

// StartSyncDaemon starts a master or backup sync daemon. The kernel runs
// at most one of each role per network namespace; if one with the same
// settings already runs (a restarted director), that is success.
func (b *Backend) StartSyncDaemon(d dataplane.SyncDaemon) error {
	data, err := encodeDaemon(d)
	if err != nil {
		return fmt.Errorf("ipvs: %w", err)
	}
	if err := b.command(cmdNewDaemon, data); err != nil {
		var hint string
		switch {
		case errors.Is(err, syscall.EEXIST):
			running, lerr := b.SyncDaemons()
			for _, r := range running {
				if lerr == nil && daemonMatches(r, d) {
					return nil
				}
			}
			hint = fmt.Sprintf(": a %s sync daemon with other settings is already running (stop it first)", d.Role)
		case errors.Is(err, syscall.ENODEV):
			hint = fmt.Sprintf(": no interface %q in this network namespace", d.Interface)
		case errors.Is(err, syscall.EINVAL):
			hint = " (the kernel refuses a sync daemon while a destination of the other address family exists; else check the group and lengths)"
		}
		return fmt.Errorf("ipvs: starting the %s sync daemon on %s: %w%s", d.Role, d.Interface, err, hint)
	}
	return nil
}

// daemonMatches reports whether a running daemon (as the kernel lists it,
// defaults filled in) is what want asks for; a zero optional field in want
// accepts the kernel's default.
func daemonMatches(running, want dataplane.SyncDaemon) bool {
	opt := func(got, want int) bool { return want == 0 || got == want }
	return running.Role == want.Role && running.Interface == want.Interface && running.SyncID == want.SyncID &&
		(!want.McastGroup.IsValid() || running.McastGroup == want.McastGroup.Unmap()) &&
		opt(running.McastPort, want.McastPort) && opt(running.McastTTL, want.McastTTL) && opt(running.MaxLen, want.MaxLen)
}

// StopSyncDaemon stops the sync daemon of role (master or backup). Stopping
// one that is not running is not an error.
func (b *Backend) StopSyncDaemon(role string) error {
	data, err := encodeDaemonState(role)
	if err != nil {
		return fmt.Errorf("ipvs: %w", err)
	}
	if err := b.command(cmdDelDaemon, data); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("ipvs: stopping the %s sync daemon: %w", role, err)
	}
	return nil
}

// command sends one acknowledged IPVS command (sync daemons,
// destinations).
func (b *Backend) command(cmd uint8, data []byte) error {
	_, err := b.genl.Execute(genetlink.Message{
		Header: genetlink.Header{Command: cmd, Version: genlVersion},
		Data:   data,
	}, b.family, netlink.Request|netlink.Acknowledge)
	return err
}
