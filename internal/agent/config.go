package agent

import (
	"k8s.io/client-go/rest"

	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluice-lb/sluice/bpf"
	"github.com/sluice-lb/sluice/lb"
)

// Config is the agent's configuration, from its flags.
type Config struct {
	// ConfigPath selects standalone mode: a YAML file or directory.
	ConfigPath string
	// Kubeconfig is the kubeconfig file for Kubernetes mode; empty for in-cluster.
	Kubeconfig string
	// NodeName is this node's name, as in its Node object.
	NodeName string
	// Namespace is the agent's own namespace, where BGP password Secrets are read.
	Namespace string
	// Devices are the external interfaces the datapath attaches to.
	Devices []string
	// PodDevices are the host sides of pods' interfaces (names or shell patterns such as
	// lxc*): the fallback for pod traffic the socket programs do not see attaches to them.
	PodDevices  []string
	StateDir    string
	BPFFS       string
	MetricsAddr string // empty: no metrics endpoint
	HealthAddr  string // empty: no health endpoint
	// BPF configures the datapath, which runs when Devices is not empty.
	BPF BPFConfig
	// RequireLBClass makes only Services with spec.loadBalancerClass LBClass ours; a
	// LoadBalancer Service without a class is then left to another implementation.
	RequireLBClass bool
	// LBClass is the spec.loadBalancerClass served besides an unset one (default
	// model.LoadBalancerClass).
	LBClass string
	// IPAMController runs the leader-elected LB-IPAM controller (Kubernetes mode), with
	// Rest to reach the API server.
	IPAMController bool
	Rest           *rest.Config
	// L2 configures the heartbeats of the L2 announcements.
	L2 L2Config
	// ExternalIPCIDRs are where Services' spec.externalIPs may lie besides the IPPools.
	ExternalIPCIDRs []netip.Prefix
}

// L2Config are the heartbeat settings of L2 announcements; zero values take the defaults
// (l2announce.DefaultPort, DefaultInterval, DefaultTimeout).
type L2Config struct {
	Port              int
	Interval, Timeout time.Duration
}

// BPFConfig sizes the datapath's maps and picks the selection algorithm. Zero sizes keep
// the defaults; a pinned map of another size is migrated on load (see bpf.MapMigration).
type BPFConfig struct {
	Sizes         MapSizes
	MaglevMinimum uint32        // smallest Maglev table of a service (rounded up to a prime)
	Algorithm     lb.Algorithm  // Maglev or Random
	GCInterval    time.Duration // conntrack garbage collection (default 30s)
	// SocketLB attaches the socket-level load balancer to CgroupRoot: connect() and
	// sendmsg() of the processes in it go to the cluster IPs' backends (and the other
	// frontends') directly. Off, cluster IPs are not served.
	SocketLB bool
	// CgroupRoot is the cgroup v2 directory the socket programs attach to: the root of the
	// hierarchy on a node (the pods' and host processes' cgroups are below it). If it is
	// not on a cgroup v2 filesystem, the cgroup v2 hierarchy is mounted there.
	CgroupRoot string
	// SNATPorts are the source ports of flows SNATed to backends on other nodes (the zero
	// range: no SNAT). The agent reserves them in net.ipv4.ip_local_reserved_ports.
	SNATPorts bpf.PortRange
	// NodePorts are the node ports served (the zero range: any), reserved like SNATPorts.
	NodePorts bpf.PortRange
	// DSR makes direct server return the default forwarding mode to endpoints on other
	// nodes (--lb-mode dsr); Services pick theirs with model.AnnotationForwardingMode.
	DSR bool
}

// MapSizes are the capacities of the datapath's maps.
type MapSizes struct {
	Frontends, Backends, Maglev, Conntrack, Affinity uint32
}

// Validate checks the configuration; errors name the flag.
func (c *Config) Validate() error {
	var errs []error
	if a, b := c.BPF.SNATPorts, c.BPF.NodePorts; a.Last != 0 && b.Last != 0 && a.First <= b.Last && b.First <= a.Last {
		errs = append(errs, fmt.Errorf("--snat-port-range %s overlaps --node-port-range %s", a, b))
	}
	if c.NodeName == "" {
		errs = append(errs, errors.New("--node-name: empty (and no hostname to default to)"))
	}
	if c.StateDir == "" {
		errs = append(errs, errors.New("--state-dir: empty"))
	}
	if c.BPFFS == "" {
		errs = append(errs, errors.New("--bpffs: empty"))
	}
	for _, p := range c.PodDevices {
		if _, err := filepath.Match(p, ""); err != nil || p == "" || strings.Contains(p, "/") {
			errs = append(errs, fmt.Errorf("--pod-devices: %q is not an interface name or pattern", p))
		}
	}
	for _, d := range c.Devices {
		if d == "" || len(d) > 15 || strings.ContainsAny(d, "/: \t") {
			errs = append(errs, fmt.Errorf("--devices: %q is not an interface name", d))
		}
	}
	for flag, addr := range map[string]string{"--metrics-addr": c.MetricsAddr, "--health-addr": c.HealthAddr} {
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not host:port: %v", flag, addr, err))
		}
	}
	if c.L2.Port < 0 || c.L2.Port > 65535 {
		errs = append(errs, fmt.Errorf("--l2-heartbeat-port: %d is not a port", c.L2.Port))
	}
	if c.L2.Interval < 0 || c.L2.Timeout < 0 || (c.L2.Interval > 0 && c.L2.Timeout > 0 && c.L2.Timeout <= c.L2.Interval) {
		errs = append(errs, fmt.Errorf("--l2-heartbeat-timeout %v must be longer than --l2-heartbeat-interval %v", c.L2.Timeout, c.L2.Interval))
	}
	return errors.Join(errs...)
}

// Mode is "standalone" or "kubernetes".
func (c *Config) Mode() string {
	if c.ConfigPath != "" {
		return "standalone"
	}
	return "kubernetes"
}
