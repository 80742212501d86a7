package client

import (
	"context"
	"net/url"

	"github.com/raftlb/raftlb/api/wire"
)

// Health returns GET /v1/health: per real server of each checked service,
// the committed decision and every director's view; service "" means
// every checked service.
func (c *Client) Health(ctx context.Context, service string, o ReadOpts) (wire.HealthReport, error) {
	q := o.query()
	if service != "" {
		if q == nil {
			q = url.Values{}
		}
		q.Set("service", service)
	}
	var out wire.HealthReport
	_, err := c.do(ctx, "GET", "/v1/health", q, nil, &out)
	return out, err
}
