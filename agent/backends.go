package agent

import (
	"github.com/raftlb/raftlb/dataplane"
	"github.com/raftlb/raftlb/dataplane/nft"
	"github.com/raftlb/raftlb/model"
)

func init() {
	openers[DataplaneNFT] = func() (dataplane.Backend, *model.DataplaneCaps, error) {
		b, err := nft.New()
		if err != nil {
			return nil, nil, err
		}
		return b, capsOf(nft.Capabilities()), nil
	}
}

// capsOf converts a backend's capabilities to the replicated form.
func capsOf(c dataplane.Capabilities) *model.DataplaneCaps {
	return &model.DataplaneCaps{Schedulers: c.Schedulers, Flags: c.Flags, Forwards: c.Forwards,
		Persistence: c.Persistence, Fwmark: c.Fwmark, Thresholds: c.Thresholds}
}
