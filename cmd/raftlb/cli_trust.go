package main

import (
	"fmt"
	"os"

	"github.com/raftlb/raftlb/trust"
)

// raftlb token new, raftlb tls ca: the cluster's secrets, made and shown
// locally (package trust).

func trustCommands() []*command {
	return []*command{
		{
			name: "token new", summary: "print a new cluster token (256 random bits) for every director's -token-file", kind: kindLocal,
			help: "print a new cluster token: 32 random bytes in URL-safe base64. Write it to a file on every director " +
				"('raftlb token new > /etc/raftlb/token; chmod 600 /etc/raftlb/token'). It authenticates the API and derives " +
				"the cluster CA and the gossip key; a file may hold several, one per line, for rotation (docs/operations.md)",
			setup: func(f *flagSet) action {
				return func(e *env, _ []string) error {
					_, err := fmt.Fprintln(e.out, trust.NewToken())
					return err
				}
			},
		},
		{
			name: "tls ca", summary: "print the cluster CA certificate (PEM) derived from the token", kind: kindLocal,
			help: "print the certificate of the cluster CA that the directors derive from the token, for tools that verify a " +
				"director's HTTPS API with a CA file (curl --cacert, a Prometheus scraper, a browser). The CLI needs none: " +
				"it derives the CA from the token itself",
			setup: func(f *flagSet) action {
				var tokenFile string
				f.String(&tokenFile, "token-file", "", "the agents' token `FILE` (default $RAFTLB_TOKEN_FILE, else the token in $RAFTLB_TOKEN)")
				return func(e *env, _ []string) error {
					o := clientOpts{token: os.Getenv("RAFTLB_TOKEN"), tokenFile: tokenFile}
					if o.tokenFile == "" {
						o.tokenFile = os.Getenv("RAFTLB_TOKEN_FILE")
					}
					if o.tokenFile != "" {
						o.token = ""
					}
					if err := o.resolveToken(); err != nil {
						return usagef("%v", err)
					}
					if o.token == "" {
						return usagef("tls ca: no token: give -token-file or set RAFTLB_TOKEN")
					}
					ca, err := trust.DeriveCA(o.token)
					if err != nil {
						return err
					}
					_, err = e.out.Write(ca.PEM())
					return err
				}
			},
		},
	}
}
