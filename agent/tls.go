package agent

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/raftlb/raftlb/api/wire"
	"github.com/raftlb/raftlb/trust"
)

// Secure by default (docs/operations.md, "Security"): raft and the API
// listen beyond loopback only with TLS — raft mutual TLS, the API HTTPS —
// unless the operator says -insecure. Without certificates of the
// operator's own (-raft-tls-*, -api-tls-*), the director issues itself one
// at every start from the cluster CA derived from the token (package
// trust), so a cluster needs nothing but the shared token file.

// setupTLS fills in RaftTLS, APITLS and APIClientTLS where they are needed
// and not given, and returns what /v1/status says about them.
func (a *Agent) setupTLS(apiListen net.Addr) (*wire.Security, error) {
	c := &a.cfg
	raftOff := offLoopback(c.RaftAddr) || (c.RaftAdvertise != "" && offLoopback(c.RaftAdvertise))
	apiOff := offLoopback(apiListen.String()) || offLoopback(c.APIAdvertise)
	sec := &wire.Security{Insecure: c.Insecure}
	var tr *trust.Trust
	if c.Token != "" {
		var err error
		if tr, err = trust.FromTokens(append([]string{c.Token}, c.ExtraTokens...)); err != nil {
			return nil, err
		}
		sec.CAFingerprint = tr.CAs[0].Fingerprint()
		if c.APIClientTLS == nil {
			c.APIClientTLS = tr.ClientConfig()
		}
	}
	needRaft := raftOff && c.RaftTLS == nil && !c.Insecure
	needAPI := apiOff && c.APITLS == nil && !c.Insecure
	if (needRaft || needAPI) && tr == nil {
		return nil, errors.New("raft and the API listen beyond loopback only with TLS: give -token-file (the cluster CA is derived from it), " +
			"certificates of your own (-raft-tls-*, -api-tls-*), or -insecure")
	}
	if needRaft || needAPI {
		id, err := tr.NewIdentity(c.NodeID, a.certHosts(apiListen))
		if err != nil {
			return nil, err
		}
		if needRaft {
			c.RaftTLS = id.MutualConfig()
		}
		if needAPI {
			c.APITLS = id.ServerConfig()
		}
		a.log.Info("certificate issued by the cluster CA", "ca", sec.CAFingerprint[:16], "names", id.Hosts())
	}
	sec.Raft = describe(c.RaftTLS != nil, needRaft, raftOff, c.Insecure, "mutual TLS", "plain TCP", "-raft-tls-*")
	sec.API = describe(c.APITLS != nil, needAPI, apiOff, c.Insecure, "HTTPS", "HTTP", "-api-tls-*")
	if c.Insecure {
		a.log.Warn("running with -insecure: raft and the API are not encrypted or authenticated by TLS beyond loopback; "+
			"anyone who reaches the raft port can change the cluster's state, and the API token crosses the network in cleartext",
			"raft", sec.Raft, "api", sec.API)
	}
	return sec, nil
}

func describe(tlsOn, derived, off, insecure bool, secure, plain, flags string) string {
	switch {
	case tlsOn && derived:
		return secure + " (cluster CA)"
	case tlsOn:
		return secure + " (" + flags + ")"
	case off && insecure:
		return plain + " (-insecure)"
	}
	return plain + " (loopback)"
}

// offLoopback reports whether a host:port listens or is reached beyond
// loopback (an unspecified host listens everywhere).
func offLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	return !trust.IsLoopback(host)
}

// certHosts are the names a director's certificate carries: every host it
// listens or is reached at (every local address when it listens on all),
// its host name, loopback, and -tls-san.
func (a *Agent) certHosts(apiListen net.Addr) []string {
	c := a.cfg
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	everywhere := false
	for _, hp := range []string{c.RaftAddr, c.RaftAdvertise, apiListen.String(), c.APIAdvertise, c.GossipAdvertise} {
		host, _, err := net.SplitHostPort(hp)
		if err != nil || host == "" {
			continue
		}
		if ip, err := netip.ParseAddr(host); err == nil && ip.IsUnspecified() {
			everywhere = true
			continue
		}
		hosts = append(hosts, host)
	}
	if everywhere {
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, ad := range addrs {
				if ipn, ok := ad.(*net.IPNet); ok {
					hosts = append(hosts, ipn.IP.String())
				}
			}
		}
	}
	if h, err := os.Hostname(); err == nil {
		hosts = append(hosts, h)
	}
	return append(hosts, c.TLSNames...)
}

// checkTokens refuses weak tokens (programmatic configurations too; the
// flags read them with trust.ReadTokenFile).
func (c *Config) checkTokens() error {
	for i, t := range append([]string{c.Token}, c.ExtraTokens...) {
		if t == "" && i == 0 {
			continue
		}
		if err := trust.CheckToken(t); err != nil {
			return fmt.Errorf("-token-file: token %d is %w", i+1, err)
		}
	}
	return nil
}
