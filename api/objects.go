package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"

	"github.com/raftlb/raftlb/api/wire"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/model"
)

// Handlers for services, real servers, VIPs and settings.

func notFound(field, format string, args ...any) *wire.Error {
	return &wire.Error{Code: model.CodeNotFound, Field: field, Message: fmt.Sprintf(format, args...)}
}

// serviceBody is the body of POST /v1/services (with optional reals) and
// PUT /v1/services/{name} (without). The indexes a GET returns are accepted
// and ignored, so a read-modify-write round trip works.
type serviceBody struct {
	model.ServiceSpec
	Reals       []json.RawMessage `json:"reals"`
	CreateIndex uint64            `json:"create_index"`
	ModifyIndex uint64            `json:"modify_index"`
}

func (s *Server) listServices(w http.ResponseWriter, r *http.Request) {
	s.read(w, r, func() (any, *wire.Error) { return s.cfg.FSM.Services(), nil })
}

func (s *Server) getService(w http.ResponseWriter, r *http.Request) {
	s.read(w, r, func() (any, *wire.Error) {
		name := r.PathValue("name")
		if svc, ok := s.cfg.FSM.Service(name); ok {
			return svc, nil
		}
		return nil, notFound("name", "no service named %q", name)
	})
}

// decodeReal decodes one real server over the defaults. The body may be a
// real server as read (health, indexes: a read-modify-write), but only
// what a writer says of it is kept: the cluster's own fields are its to
// decide, and a command carrying them would be written in encoding
// version 2 or 3 for nothing (an older director could not read it).
func decodeReal(raw []byte) (model.RealServer, *wire.Error) {
	rs := model.NewRealServer()
	if e := decodeStrict(raw, &rs); e != nil {
		return rs, e
	}
	return rs.Spec().Real(), nil
}

func (s *Server) createService(w http.ResponseWriter, r *http.Request) {
	s.write(w, r, http.StatusCreated, func(r *http.Request, body []byte) (func() (*wire.WriteResponse, *wire.Error), *wire.Error) {
		b := serviceBody{ServiceSpec: model.NewServiceSpec()}
		if e := decodeStrict(body, &b); e != nil {
			return nil, e
		}
		spec, err := model.NormalizeService(b.ServiceSpec)
		if err != nil {
			return nil, model.AsError(err)
		}
		cmd := &fsm.CreateService{Service: spec}
		if len(b.Reals) > s.cfg.MaxReals {
			return nil, badRequest("reals", "%d real servers in one request, more than the limit of %d (raftlb agent -api-max-reals): add the rest with more requests",
				len(b.Reals), s.cfg.MaxReals)
		}
		for i, raw := range b.Reals {
			rs, e := decodeReal(raw)
			if e != nil {
				if e.Field == "body" { // reals[i] is not a JSON object
					e.Field = fmt.Sprintf("reals[%d]", i)
				} else {
					e.Field = fmt.Sprintf("reals[%d].%s", i, e.Field)
				}
				return nil, e
			}
			if _, err := model.NormalizeReal(spec, rs); err != nil {
				e := model.AsError(err)
				return nil, &wire.Error{Code: e.Code, Field: fmt.Sprintf("reals[%d].%s", i, e.Field), Message: e.Message}
			}
			cmd.Reals = append(cmd.Reals, rs)
		}
		return s.applyFn(cmd)
	})
}

func (s *Server) updateService(w http.ResponseWriter, r *http.Request) {
	s.write(w, r, http.StatusOK, func(r *http.Request, body []byte) (func() (*wire.WriteResponse, *wire.Error), *wire.Error) {
		name := r.PathValue("name")
		cas, e := casParam(r)
		if e != nil {
			return nil, e
		}
		b := serviceBody{ServiceSpec: model.NewServiceSpec()}
		if e := decodeStrict(body, &b); e != nil {
			return nil, e
		}
		if b.Reals != nil {
			return nil, badRequest("reals", "PUT /v1/services/{name} does not change real servers: use /v1/services/%s/reals", name)
		}
		if b.Name == "" {
			b.Name = name
		}
		if b.Name != name {
			return nil, badRequest("name", "a service cannot be renamed (%q → %q)", name, b.Name)
		}
		spec, err := model.NormalizeService(b.ServiceSpec)
		if err != nil {
			return nil, model.AsError(err)
		}
		return s.applyFn(&fsm.UpdateService{Name: name, Spec: spec, CAS: cas})
	})
}

func (s *Server) deleteService(w http.ResponseWriter, r *http.Request) {
	s.write(w, r, http.StatusOK, func(r *http.Request, body []byte) (func() (*wire.WriteResponse, *wire.Error), *wire.Error) {
		cas, e := casParam(r)
		if e != nil {
			return nil, e
		}
		return s.applyFn(&fsm.DeleteService{Name: r.PathValue("name"), CAS: cas})
	})
}

func (s *Server) withService(r *http.Request, fn func(model.Service) (any, *wire.Error)) (any, *wire.Error) {
	name := r.PathValue("name")
	svc, ok := s.cfg.FSM.Service(name)
	if !ok {
		return nil, notFound("service", "no service named %q", name)
	}
	return fn(svc)
}

func (s *Server) listReals(w http.ResponseWriter, r *http.Request) {
	s.read(w, r, func() (any, *wire.Error) {
		return s.withService(r, func(svc model.Service) (any, *wire.Error) { return svc.Reals, nil })
	})
}

// realKey parses the {key} path segment: "addr:port" or "[v6]:port".
func realKey(r *http.Request) (netip.AddrPort, *wire.Error) {
	k := r.PathValue("key")
	ap, err := netip.ParseAddrPort(k)
	if err != nil {
		return ap, badRequest("address", "%q is not address:port (IPv6 as [addr]:port)", k)
	}
	return ap, nil
}

func (s *Server) getReal(w http.ResponseWriter, r *http.Request) {
	s.read(w, r, func() (any, *wire.Error) {
		ap, e := realKey(r)
		if e != nil {
			return nil, e
		}
		name := r.PathValue("name")
		rs, found, svcFound := s.cfg.FSM.Real(name, ap.String())
		switch {
		case !svcFound:
			return nil, notFound("service", "no service named %q", name)
		case !found:
			return nil, notFound("address", "service %q has no real server %s", name, ap)
		}
		return rs, nil
	})
}

// preValidateReal checks a real server against the local copy of its
// service when this director has it; the leader checks again either way.
// It reads only the spec: O(1) however many real servers the service has.
func (s *Server) preValidateReal(service string, rs model.RealServer) *wire.Error {
	if spec, ok := s.cfg.FSM.ServiceSpec(service); ok {
		if _, err := model.NormalizeReal(spec, rs); err != nil {
			return model.AsError(err)
		}
	}
	return nil
}

func (s *Server) createReal(w http.ResponseWriter, r *http.Request) {
	s.write(w, r, http.StatusCreated, func(r *http.Request, body []byte) (func() (*wire.WriteResponse, *wire.Error), *wire.Error) {
		rs, e := decodeReal(body)
		if e != nil {
			return nil, e
		}
		name := r.PathValue("name")
		if e := s.preValidateReal(name, rs); e != nil {
			return nil, e
		}
		return s.applyFn(&fsm.CreateReal{Service: name, Real: rs})
	})
}

func (s *Server) updateReal(w http.ResponseWriter, r *http.Request) {
	s.write(w, r, http.StatusOK, func(r *http.Request, body []byte) (func() (*wire.WriteResponse, *wire.Error), *wire.Error) {
		ap, e := realKey(r)
		if e != nil {
			return nil, e
		}
		cas, e := casParam(r)
		if e != nil {
			return nil, e
		}
		rs, e := decodeReal(body)
		if e != nil {
			return nil, e
		}
		if rs.Address == "" {
			// The key in the path names the real server; a port in the body
			// is kept, so that changing it is refused rather than ignored.
			rs.Address = ap.Addr().String()
			if rs.Port == 0 {
				rs.Port = int(ap.Port())
			}
		}
		name := r.PathValue("name")
		if e := s.preValidateReal(name, rs); e != nil {
			return nil, e
		}
		return s.applyFn(&fsm.UpdateReal{Service: name, Key: ap.String(), Real: rs, CAS: cas})
	})
}

func (s *Server) deleteReal(w http.ResponseWriter, r *http.Request) {
	s.write(w, r, http.StatusOK, func(r *http.Request, body []byte) (func() (*wire.WriteResponse, *wire.Error), *wire.Error) {
		ap, e := realKey(r)
		if e != nil {
			return nil, e
		}
		cas, e := casParam(r)
		if e != nil {
			return nil, e
		}
		return s.applyFn(&fsm.DeleteReal{Service: r.PathValue("name"), Key: ap.String(), CAS: cas})
	})
}

func (s *Server) listVIPs(w http.ResponseWriter, r *http.Request) {
	s.read(w, r, func() (any, *wire.Error) { return s.cfg.FSM.VIPs(), nil })
}

// vipKey parses the {addr} path segment.
func vipKey(r *http.Request) (string, *wire.Error) {
	a, err := netip.ParseAddr(r.PathValue("addr"))
	if err != nil {
		return "", badRequest("address", "%q is not an IP address", r.PathValue("addr"))
	}
	return a.String(), nil
}

func (s *Server) getVIP(w http.ResponseWriter, r *http.Request) {
	s.read(w, r, func() (any, *wire.Error) {
		k, e := vipKey(r)
		if e != nil {
			return nil, e
		}
		if v, ok := s.cfg.FSM.VIP(k); ok {
			return v, nil
		}
		return nil, notFound("address", "no VIP %s", k)
	})
}

func decodeVIP(body []byte) (model.VIP, *wire.Error) {
	v := model.NewVIP()
	if e := decodeStrict(body, &v); e != nil {
		return v, e
	}
	nv, err := model.NormalizeVIP(v)
	return nv, model.AsError(err)
}

func (s *Server) createVIP(w http.ResponseWriter, r *http.Request) {
	s.write(w, r, http.StatusCreated, func(r *http.Request, body []byte) (func() (*wire.WriteResponse, *wire.Error), *wire.Error) {
		v, e := decodeVIP(body)
		if e != nil {
			return nil, e
		}
		return s.applyFn(&fsm.CreateVIP{VIP: v})
	})
}

func (s *Server) updateVIP(w http.ResponseWriter, r *http.Request) {
	s.write(w, r, http.StatusOK, func(r *http.Request, body []byte) (func() (*wire.WriteResponse, *wire.Error), *wire.Error) {
		k, e := vipKey(r)
		if e != nil {
			return nil, e
		}
		cas, e := casParam(r)
		if e != nil {
			return nil, e
		}
		v, e := decodeVIP(body)
		if e != nil {
			return nil, e
		}
		return s.applyFn(&fsm.UpdateVIP{Key: k, VIP: v, CAS: cas})
	})
}

func (s *Server) deleteVIP(w http.ResponseWriter, r *http.Request) {
	s.write(w, r, http.StatusOK, func(r *http.Request, body []byte) (func() (*wire.WriteResponse, *wire.Error), *wire.Error) {
		k, e := vipKey(r)
		if e != nil {
			return nil, e
		}
		cas, e := casParam(r)
		if e != nil {
			return nil, e
		}
		return s.applyFn(&fsm.DeleteVIP{Key: k, CAS: cas})
	})
}

func (s *Server) getSettings(w http.ResponseWriter, r *http.Request) {
	s.read(w, r, func() (any, *wire.Error) { return s.cfg.FSM.Settings(), nil })
}

// updateSettings replaces the settings; absent fields take their defaults.
func (s *Server) updateSettings(w http.ResponseWriter, r *http.Request) {
	s.write(w, r, http.StatusOK, func(r *http.Request, body []byte) (func() (*wire.WriteResponse, *wire.Error), *wire.Error) {
		cas, e := casParam(r)
		if e != nil {
			return nil, e
		}
		st := model.DefaultSettings()
		if e := decodeStrict(body, &st); e != nil {
			return nil, e
		}
		st, err := model.NormalizeSettings(st)
		if err != nil {
			return nil, model.AsError(err)
		}
		return s.applyFn(&fsm.UpdateSettings{Settings: st, CAS: cas})
	})
}
