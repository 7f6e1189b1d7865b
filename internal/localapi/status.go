package localapi

import (
	"math/big"

	"github.com/sluice-lb/sluice/internal/model"
	"github.com/sluice-lb/sluice/ipam"
)

// StatusOf summarises a model for the local API.
func StatusOf(m *model.Model, in model.Objects, problems []model.Problem, inputProblems []error) Status {
	st := Status{
		Objects:    in.Count(),
		Services:   len(m.Services),
		BGPAdverts: len(m.BGPAdverts),
		L2Adverts:  len(m.L2Adverts),
		Problems:   append([]model.Problem{}, problems...),
		Pools:      []PoolStatus{},
		Peers:      []PeerStatus{},
	}
	for _, s := range m.Services {
		if s.Ours {
			st.ServicesOurs++
		}
	}
	for _, p := range m.Pools {
		ps := PoolStatus{Name: p.Name, AutoAssign: p.AutoAssign, Disabled: p.Disabled}
		size := new(big.Int)
		for _, r := range p.Ranges {
			ps.Ranges = append(ps.Ranges, r.String())
			size.Add(size, r.Size())
		}
		ps.Size = size.String()
		st.Pools = append(st.Pools, ps)
	}
	for _, p := range m.Peers {
		st.Peers = append(st.Peers, PeerStatus{Name: p.Name, Address: p.Address.String(), ASN: p.ASN, LocalASN: p.LocalASN})
	}
	st.InputProblems = []string{}
	for _, e := range inputProblems {
		st.InputProblems = append(st.InputProblems, e.Error())
	}
	return st
}

// AllocationsOf returns the allocator's result as the local API serves it.
func AllocationsOf(r *ipam.Result) []Allocation {
	out := []Allocation{}
	if r == nil {
		return out
	}
	for _, al := range r.Allocations {
		v := Allocation{Service: al.Service.String(), Pools: al.Pools, Ready: al.Ready, Reason: string(al.Reason), Message: al.Message, IPs: []string{}}
		for _, ip := range al.IPs {
			v.IPs = append(v.IPs, ip.String())
		}
		out = append(out, v)
	}
	return out
}
