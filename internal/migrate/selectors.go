package migrate

import (
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MetalLB's selector lists match what any of them matches; a Sluice object has one selector.
// Such a list becomes one selector when that is exact (one selector; or each a single
// equality or In on the same key); otherwise an advertisement is split into one object per
// selector, a pool keeps the first with a warning, and a peer is not converted (Sluice takes
// one BGPPeer per router address).

// anyOf reduces an OR of selectors. It returns (nil, nil) for "everything" (no selector, or
// an empty one among them), (sel, nil) when one selector says it exactly, and otherwise
// (nil, alternatives), one per selector. A selector that is not valid gives an error.
func anyOf(sels []metav1.LabelSelector) (*metav1.LabelSelector, []*metav1.LabelSelector, error) {
	for i := range sels {
		if _, err := metav1.LabelSelectorAsSelector(&sels[i]); err != nil {
			return nil, nil, fmt.Errorf("[%d]: %v", i, err)
		}
	}
	for _, s := range sels {
		if len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0 {
			return nil, nil, nil
		}
	}
	switch len(sels) {
	case 0:
		return nil, nil, nil
	case 1:
		s := sels[0]
		return &s, nil, nil
	}
	if s, ok := sameKeyIn(sels); ok {
		return s, nil, nil
	}
	alts := make([]*metav1.LabelSelector, len(sels))
	for i := range sels {
		s := sels[i]
		alts[i] = &s
	}
	return nil, alts, nil
}

// sameKeyIn merges selectors that each require one key to be one of some values, the same
// key in all: {k In a ∪ b ∪ ...}.
func sameKeyIn(sels []metav1.LabelSelector) (*metav1.LabelSelector, bool) {
	key := ""
	var values []string
	for _, s := range sels {
		var k string
		var vs []string
		switch {
		case len(s.MatchLabels) == 1 && len(s.MatchExpressions) == 0:
			for lk, lv := range s.MatchLabels {
				k, vs = lk, []string{lv}
			}
		case len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 1 && s.MatchExpressions[0].Operator == metav1.LabelSelectorOpIn:
			k, vs = s.MatchExpressions[0].Key, s.MatchExpressions[0].Values
		default:
			return nil, false
		}
		if key != "" && k != key {
			return nil, false
		}
		key = k
		for _, v := range vs {
			if !slices.Contains(values, v) {
				values = append(values, v)
			}
		}
	}
	slices.Sort(values)
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: metav1.LabelSelectorOpIn, Values: values}}}, true
}

// poolSelector converts a pool's selector list; ok is false when the pool must not be
// converted (a bad selector would widen it).
func (c *converter) poolSelector(o *Object, field string, sels []metav1.LabelSelector) (*metav1.LabelSelector, bool) {
	one, alts, err := anyOf(sels)
	switch {
	case err != nil:
		c.note(Error, o, field, "not converted: %v", err)
		return nil, false
	case alts != nil:
		c.note(Warning, o, field, "an IPPool takes one selector and these %d cannot be merged into one: only the first is kept, so what only the others match is no longer served by this pool", len(sels))
		return alts[0], true
	}
	return one, true
}

// legacySelectors converts the legacy ConfigMap's node-selectors (lower-case operators
// included) into LabelSelectors.
func legacySelectors(in []legacyNodeSelector) ([]metav1.LabelSelector, error) {
	out := make([]metav1.LabelSelector, 0, len(in))
	for i, ns := range in {
		s := metav1.LabelSelector{MatchLabels: ns.MatchLabels}
		for j, e := range ns.MatchExpressions {
			op, ok := map[string]metav1.LabelSelectorOperator{"in": metav1.LabelSelectorOpIn, "notin": metav1.LabelSelectorOpNotIn,
				"exists": metav1.LabelSelectorOpExists, "doesnotexist": metav1.LabelSelectorOpDoesNotExist}[strings.ToLower(e.Operator)]
			if !ok {
				return nil, fmt.Errorf("[%d].match-expressions[%d]: operator %q is not In, NotIn, Exists or DoesNotExist", i, j, shorten(e.Operator))
			}
			s.MatchExpressions = append(s.MatchExpressions, metav1.LabelSelectorRequirement{Key: e.Key, Operator: op, Values: e.Values})
		}
		out = append(out, s)
	}
	return out, nil
}

// split is one object's worth of an advertisement made of several.
type split struct {
	name       string
	pool, node *metav1.LabelSelector
}

// splits names the objects an advertisement becomes: one per combination of its
// pool and node selector alternatives, the first keeping the name, the others "<name>-2", ....
func splits(name string, pool, node *metav1.LabelSelector, poolAlts, nodeAlts []*metav1.LabelSelector) []split {
	if poolAlts == nil {
		poolAlts = []*metav1.LabelSelector{pool}
	}
	if nodeAlts == nil {
		nodeAlts = []*metav1.LabelSelector{node}
	}
	var out []split
	for _, p := range poolAlts {
		for _, n := range nodeAlts {
			s := split{name: name, pool: p, node: n}
			if len(out) > 0 {
				s.name = fmt.Sprintf("%s-%d", name, len(out)+1)
			}
			out = append(out, s)
		}
	}
	return out
}

// matchesAll reports whether a selector list holds an empty selector, which matches every
// object.
func matchesAll(sels []metav1.LabelSelector) bool {
	return slices.ContainsFunc(sels, func(s metav1.LabelSelector) bool {
		return len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0
	})
}
