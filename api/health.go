package api

import (
	"net/http"

	"github.com/raftlb/raftlb/api/wire"
	"github.com/raftlb/raftlb/model"
)

func (s *Server) getHealth(w http.ResponseWriter, r *http.Request) {
	s.read(w, r, func() (any, *wire.Error) {
		name := r.URL.Query().Get("service")
		if name != "" {
			if _, ok := s.cfg.FSM.ServiceSpec(name); !ok {
				return nil, &wire.Error{Code: model.CodeNotFound, Message: "no service " + name, Field: "service"}
			}
		}
		if s.cfg.Health == nil {
			return nil, &wire.Error{Code: model.CodeNotFound, Message: "health checking is not running on this director"}
		}
		return s.cfg.Health(name), nil
	})
}
