package migrate

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-lb/sluice/api/v1alpha1"
	"github.com/sluice-lb/sluice/internal/model"
	"github.com/sluice-lb/sluice/internal/source"
)

// DefaultNamespace is where the agent runs and reads BGP password Secrets.
const DefaultNamespace = "sluice-system"

// Options shape the conversion.
type Options struct {
	// Namespace is where the agent reads Secrets: clear-text passwords become Secrets there
	// and referenced Secrets are copied there (default DefaultNamespace).
	Namespace string
}

// Converted is one Sluice object and the MetalLB object it comes from.
type Converted struct {
	From   string
	Object client.Object // *v1alpha1.IPPool, *v1alpha1.BGPPeer, ..., *corev1.Secret
}

// Result is what Convert made of its input.
type Result struct {
	Objects []Converted // Secrets, IPPools, BGPPeers, BGPAdvertisements, L2Advertisements; by name
	Notes   []Note      // in input order
}

// Count returns how many notes have level l.
func (r *Result) Count(l Level) int {
	n := 0
	for _, note := range r.Notes {
		if note.Level == l {
			n++
		}
	}
	return n
}

// converter is one Convert run.
type converter struct {
	opts    Options
	notes   []Note
	out     []Converted
	taken   map[string]string         // "Kind/name" → the object it came from
	aliases map[string]string         // community alias → value
	secrets map[string]*corev1.Secret // "namespace/name" → Secret of the input
	peers   map[string]string         // MetalLB peer name → the Sluice BGPPeer made of it
	// peerAddrs: each converted peer's address and port → its name (one BGPPeer per router)
	peerAddrs map[netip.AddrPort]string
	// secretFrom: each Secret written into the agent's namespace → its source ("ns/name",
	// or "generated")
	secretFrom map[string]string
	// toCopy: Secrets the peers name that the user is told to copy into the namespace
	toCopy  map[string]bool
	pools   map[string]*v1alpha1.IPPool  // converted pools by name, for the Service checks
	origins map[*v1alpha1.IPPool]*Object // where each pool came from
}

// Convert turns MetalLB objects into Sluice's. It never fails as a whole: each object that
// cannot be converted, and each field without an equivalent, gets a note.
func Convert(objs []*Object, opts Options) *Result {
	if opts.Namespace == "" {
		opts.Namespace = DefaultNamespace
	}
	c := &converter{opts: opts, taken: map[string]string{}, aliases: map[string]string{},
		secrets: map[string]*corev1.Secret{}, peers: map[string]string{},
		peerAddrs: map[netip.AddrPort]string{}, secretFrom: map[string]string{}, toCopy: map[string]bool{},
		pools: map[string]*v1alpha1.IPPool{}, origins: map[*v1alpha1.IPPool]*Object{}}
	// Aliases and Secrets first: peers and advertisements refer to them.
	for _, o := range objs {
		switch {
		case o.Kind == "Community" && o.spec != nil:
			aliases := o.spec.(*communitySpec).Communities
			for i, a := range aliases {
				c.alias(o, fmt.Sprintf("spec.communities[%d]", i), a.Name, a.Value)
			}
			c.note(Info, o, "", "Sluice has no community aliases: its %d aliases are resolved into the advertisements that use them", len(aliases))
		case o.config != nil:
			for _, name := range sortedKeys(o.config.BGPCommunities) {
				c.alias(o, "data.config.bgp-communities."+name, name, o.config.BGPCommunities[name])
			}
		case o.secret != nil:
			c.secrets[o.Namespace+"/"+o.Name] = o.secret
		}
	}
	for _, o := range objs { // pools, then peers, then advertisements: so names resolve
		switch {
		case o.Kind == "IPAddressPool":
			c.ipAddressPool(o)
		case o.Kind == "AddressPool":
			c.addressPool(o)
		case o.config != nil:
			for i := range o.config.AddressPools {
				c.legacyPool(o, i)
			}
		}
	}
	for _, o := range objs {
		switch {
		case o.Kind == "BGPPeer":
			c.bgpPeer(o)
		case o.config != nil:
			c.legacyPeers(o)
		}
	}
	for _, o := range objs {
		switch {
		case o.Kind == "L2Advertisement":
			c.l2Advertisement(o)
		case o.Kind == "BGPAdvertisement":
			c.bgpAdvertisement(o)
		case o.Kind == "BFDProfile":
			c.note(Warning, o, "", "Sluice has no BFD: not converted; peers that use it fail over on their hold time (set a short holdTime, e.g. 3s, for sub-10s failover)")
		case o.config != nil:
			for _, p := range o.config.BFDProfiles {
				c.note(Warning, o, "data.config.bfd-profiles."+p.Name, "Sluice has no BFD: not converted; peers that use it fail over on their hold time")
			}
			if o.config.PeerAutodiscovery != nil {
				c.note(Warning, o, "data.config.peer-autodiscovery", "Sluice discovers no peers from node labels or annotations: not converted; declare a BGPPeer (with a nodeSelector) per router")
			}
		}
	}
	for _, o := range objs {
		if o.service != nil {
			c.checkService(o)
		}
	}
	c.checkModel()
	slices.SortStableFunc(c.out, func(a, b Converted) int {
		return cmp.Or(cmp.Compare(kindOrder(a.Object), kindOrder(b.Object)),
			cmp.Compare(a.Object.GetNamespace(), b.Object.GetNamespace()),
			cmp.Compare(a.Object.GetName(), b.Object.GetName()))
	})
	return &Result{Objects: c.out, Notes: c.notes}
}

// checkModel builds Sluice's model of the result, as the agent will, and notes every
// problem it finds that no note has said yet: the converter's output must never surprise
// `sluicectl validate`. Secrets the notes ask the user to copy count as present.
func (c *converter) checkModel() {
	var in model.Objects
	from := map[string]string{}
	for _, cv := range c.out {
		from[source.KindOf(cv.Object)+"/"+cv.Object.GetName()] = cv.From
		_ = in.Add(cv.Object)
	}
	for name := range c.toCopy {
		_ = in.Add(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.opts.Namespace},
			Data: map[string][]byte{"password": []byte("placeholder")}})
	}
	_, problems := model.Build(in, model.Options{Namespace: c.opts.Namespace})
	for _, p := range problems {
		obj := from[p.Object.Kind+"/"+p.Object.Name]
		if obj == "" {
			obj = p.Object.String()
		}
		level := Warning
		if p.Rejected {
			level = Error
		}
		if slices.ContainsFunc(c.notes, func(n Note) bool { return n.Object == obj && (n.Level == level || n.Level == Error) }) {
			continue // said already
		}
		c.notes = append(c.notes, Note{Level: level, Object: obj, Field: p.Field,
			Message: fmt.Sprintf("Sluice's %s %s would be %s: %s", p.Object.Kind, p.Object.Name, map[bool]string{true: "rejected", false: "partly ignored"}[p.Rejected], p.Message)})
	}
}

// kindOrder is the output order: what others refer to first.
func kindOrder(obj client.Object) int {
	switch obj.(type) {
	case *corev1.Secret:
		return 0
	case *v1alpha1.IPPool:
		return 1
	case *v1alpha1.BGPPeer:
		return 2
	case *v1alpha1.BGPAdvertisement:
		return 3
	}
	return 4
}

func (c *converter) note(l Level, o *Object, field, format string, args ...any) {
	c.notes = append(c.notes, Note{Level: l, Object: o.String(), Field: field, Message: fmt.Sprintf(format, args...)})
}

// add emits obj, unless a converted object of its kind already has its name.
func (c *converter) add(o *Object, obj client.Object) bool {
	kind := source.KindOf(obj)
	key := kind + "/" + obj.GetNamespace() + "/" + obj.GetName()
	if from, ok := c.taken[key]; ok {
		c.note(Error, o, "metadata.name", "not converted: %s %q is already made from %s (Sluice's objects are cluster-scoped: one name per kind)", kind, obj.GetName(), from)
		return false
	}
	if errs := validation.IsDNS1123Subdomain(obj.GetName()); len(errs) > 0 {
		c.note(Error, o, "metadata.name", "not converted: %q is not a valid object name: %s", obj.GetName(), strings.Join(errs, "; "))
		return false
	}
	c.taken[key] = o.String()
	c.out = append(c.out, Converted{From: o.String(), Object: obj})
	return true
}

// meta is the metadata of a converted object: its name and labels (selectors may match
// them), no namespace, and none of the labels by which tools claim what they deployed (Argo
// CD, Flux, Helm): those would make the new objects part of MetalLB's release.
func meta(name string, labels map[string]string) metav1.ObjectMeta {
	var kept map[string]string
	for k, v := range labels {
		if ownershipLabel(k) {
			continue
		}
		if kept == nil {
			kept = map[string]string{}
		}
		kept[k] = v
	}
	return metav1.ObjectMeta{Name: name, Labels: kept}
}

// ownershipLabel reports whether key is a label deployment tools own objects by.
func ownershipLabel(key string) bool {
	switch key {
	case "app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "app.kubernetes.io/part-of",
		"app.kubernetes.io/version", "helm.sh/chart", "argocd.argoproj.io/instance", "chart", "release", "heritage":
		return true
	}
	return strings.HasPrefix(key, "kustomize.toolkit.fluxcd.io/") || strings.HasPrefix(key, "helm.toolkit.fluxcd.io/")
}

// alias records a community alias.
func (c *converter) alias(o *Object, field, name, value string) {
	v, err := communityValue(value)
	if err != nil {
		c.note(Error, o, field, "alias %q not converted: %v", name, err)
		return
	}
	if was, ok := c.aliases[name]; ok && was != v {
		c.note(Warning, o, field, "alias %q is also defined as %s; this %s is ignored", name, was, v)
		return
	}
	c.aliases[name] = v
}

// communityValue converts a MetalLB community ("AA:NN", or "large:A:B:C") to Sluice's.
func communityValue(s string) (string, error) {
	v := strings.TrimPrefix(strings.TrimSpace(s), "large:")
	if strings.HasPrefix(strings.TrimSpace(s), "large:") && strings.Count(v, ":") != 2 {
		return "", fmt.Errorf("%q is not a large community (large:A:B:C)", s)
	}
	if _, err := model.ParseCommunity(v); err != nil {
		return "", err
	}
	return v, nil
}

// communities resolves aliases and converts each community; the bad ones are noted and
// left out.
func (c *converter) communities(o *Object, field string, in []string) []v1alpha1.Community {
	var out []v1alpha1.Community
	for i, s := range in {
		v, ok := c.aliases[s]
		if !ok {
			var err error
			if v, err = communityValue(s); err != nil {
				c.note(Error, o, fmt.Sprintf("%s[%d]", field, i), "left out: %q is neither a Community alias of the input nor a community: %v", s, err)
				continue
			}
		}
		if !slices.Contains(out, v1alpha1.Community(v)) {
			out = append(out, v1alpha1.Community(v))
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
