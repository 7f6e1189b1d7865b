package model

import (
	"fmt"
	"math"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/sluice-lb/sluice/api/v1alpha1"
)

// Pool is a validated IPPool.
type Pool struct {
	Name   string
	Labels labels.Set
	// Ranges are the blocks of the pool, in the order given.
	Ranges            []Range
	AutoAssign        bool
	AvoidBuggyIPs     bool
	ServiceSelector   labels.Selector // nil: every Service
	NamespaceSelector labels.Selector // nil: every namespace
	Namespaces        []string        // empty: every namespace
	// Priority orders pools: lower first, with 0 (unset) after every positive value.
	Priority int32
	Disabled bool
}

// SortKey is the priority in the order pools are tried: unset (0) sorts last.
func (p *Pool) SortKey() int64 {
	if p.Priority == 0 {
		return math.MaxInt32 + 1
	}
	return int64(p.Priority)
}

func buildPool(o *v1alpha1.IPPool) (*Pool, []Problem) {
	ps := &problems{ref: ObjectRef{Kind: "IPPool", Name: o.Name}}
	p := &Pool{
		Name:          o.Name,
		Labels:        labels.Set(o.Labels),
		AutoAssign:    o.Spec.AutoAssign == nil || *o.Spec.AutoAssign,
		AvoidBuggyIPs: o.Spec.AvoidBuggyIPs,
		Priority:      o.Spec.Priority,
		Disabled:      o.Spec.Disabled,
		Namespaces:    o.Spec.Namespaces,
	}
	if len(o.Spec.Blocks) == 0 {
		ps.reject("spec.blocks", "a pool needs at least one block")
	}
	for i, b := range o.Spec.Blocks {
		field := fmt.Sprintf("spec.blocks[%d]", i)
		r, err := parseBlock(b)
		if err != nil {
			ps.reject(field, "%v", err)
			continue
		}
		for j, prev := range p.Ranges {
			if prev.Overlaps(r) {
				ps.reject(field, "%s overlaps spec.blocks[%d] (%s) of the same pool", r, j, prev)
			}
		}
		p.Ranges = append(p.Ranges, r)
	}
	if o.Spec.Priority < 0 {
		ps.reject("spec.priority", "must not be negative, got %d", o.Spec.Priority)
	}
	for i, ns := range o.Spec.Namespaces {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			ps.reject(fmt.Sprintf("spec.namespaces[%d]", i), "%q is not a namespace name: %s", ns, errs[0])
		}
	}
	p.ServiceSelector = selector(ps, "spec.serviceSelector", o.Spec.ServiceSelector)
	p.NamespaceSelector = selector(ps, "spec.namespaceSelector", o.Spec.NamespaceSelector)
	if ps.rejected() {
		return nil, ps.list
	}
	return p, ps.list
}

// parseBlock checks one block: a CIDR, or a start/stop pair of one family in order.
func parseBlock(b v1alpha1.IPBlock) (Range, error) {
	hasRange := b.Start != "" || b.Stop != ""
	switch {
	case b.CIDR != "" && hasRange:
		return Range{}, fmt.Errorf("a block has either cidr or start/stop, not both")
	case b.CIDR != "":
		p, err := parsePrefix(b.CIDR)
		if err != nil {
			return Range{}, fmt.Errorf("cidr: %w", err)
		}
		return RangeOfPrefix(p), nil
	case !hasRange:
		return Range{}, fmt.Errorf("a block needs cidr or start/stop")
	case b.Start == "" || b.Stop == "":
		return Range{}, fmt.Errorf("start and stop go together")
	}
	first, err := parseAddr(b.Start)
	if err != nil {
		return Range{}, fmt.Errorf("start: %w", err)
	}
	last, err := parseAddr(b.Stop)
	if err != nil {
		return Range{}, fmt.Errorf("stop: %w", err)
	}
	if first.BitLen() != last.BitLen() {
		return Range{}, fmt.Errorf("start %s and stop %s must be of the same address family", first, last)
	}
	if first.Compare(last) > 0 {
		return Range{}, fmt.Errorf("start %s is after stop %s", first, last)
	}
	return Range{First: first, Last: last}, nil
}

// selector converts a label selector, recording a problem when it is invalid. A nil selector
// means "everything" and stays nil.
func selector(ps *problems, field string, s *metav1.LabelSelector) labels.Selector {
	if s == nil {
		return nil
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		ps.reject(field, "invalid label selector: %v", err)
		return nil
	}
	return sel
}

// resolvePoolConflicts disables pools whose blocks overlap an older pool. Pools are given
// oldest first; the older pool keeps its addresses and the newer is rejected with a problem
// that names the older one, so adding a bad pool never breaks a working one.
func resolvePoolConflicts(pools []*Pool) ([]*Pool, []Problem) {
	var kept []*Pool
	var list []Problem
	for _, p := range pools {
		conflict := ""
	search:
		for _, k := range kept {
			for _, r := range p.Ranges {
				for _, kr := range k.Ranges {
					if r.Overlaps(kr) {
						conflict = fmt.Sprintf("%s overlaps %s of older IPPool %s", r, kr, k.Name)
						break search
					}
				}
			}
		}
		if conflict != "" {
			list = append(list, Problem{
				Object: ObjectRef{Kind: "IPPool", Name: p.Name}, Field: "spec.blocks",
				Message: conflict, Rejected: true, Conflict: true,
			})
			continue
		}
		kept = append(kept, p)
	}
	return kept, list
}
