// Command sluice-agent is Sluice's node agent: LB-IPAM, BGP and ARP/NDP announcements and the
// eBPF load balancer for one node. With --config it runs standalone from YAML files; without,
// it watches the Kubernetes API.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/sluice-lb/sluice/bpf"
	"github.com/sluice-lb/sluice/internal/agent"
	"github.com/sluice-lb/sluice/internal/model"
	"github.com/sluice-lb/sluice/internal/source"
	"github.com/sluice-lb/sluice/internal/version"
	"github.com/sluice-lb/sluice/l2announce"
	"github.com/sluice-lb/sluice/lb"
)

func main() {
	// client-go's streaming lists (WatchListClient) made the first sync of the CRD informers
	// wait ~1 s for the API server (kube-apiserver 1.37, measured: 1.1 s against 0.1 s with
	// plain lists), a second of every agent start in Kubernetes mode. Plain lists unless the
	// environment says otherwise.
	if _, set := os.LookupEnv(watchListEnv); !set {
		os.Setenv(watchListEnv, "false")
	}
	os.Exit(run(os.Args[1:], os.Stderr))
}

// watchListEnv switches client-go's streaming lists on or off.
const watchListEnv = "KUBE_FEATURE_WatchListClient"

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluice-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	hostname, _ := os.Hostname()
	var cfg agent.Config
	var devices, podDevices, logLevel, logFormat, algorithm, lbMode string
	var showVersion, ipamOnly bool
	fs.StringVar(&cfg.ConfigPath, "config", "", "standalone mode: read objects from this YAML file or directory instead of the Kubernetes API")
	fs.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster configuration)")
	fs.StringVar(&cfg.NodeName, "node-name", envOr("NODE_NAME", hostname), "this node's name, as in its Node object (env NODE_NAME)")
	fs.StringVar(&cfg.Namespace, "namespace", envOr("POD_NAMESPACE", "sluice-system"), "the agent's namespace, where BGP password Secrets are read (env POD_NAMESPACE)")
	fs.StringVar(&devices, "devices", "", "external interfaces the datapath attaches to, comma-separated")
	fs.StringVar(&podDevices, "pod-devices", "", "datapath: host sides of pods' interfaces, comma-separated names or patterns (lxc*,cali*): a TCX fallback there serves pod traffic the socket programs do not see (pods outside --cgroup-root)")
	fs.StringVar(&cfg.StateDir, "state-dir", "/var/run/sluice", "directory for the local API socket and state")
	fs.StringVar(&cfg.BPFFS, "bpffs", "/sys/fs/bpf", "bpf filesystem under which maps and programs are pinned (in <bpffs>/sluice)")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", ":9472", "address of the Prometheus /metrics endpoint (empty: off)")
	fs.StringVar(&cfg.HealthAddr, "health-addr", ":9473", "address of the /healthz and /readyz endpoints (empty: off)")
	fs.Func("bpf-frontends-max", "datapath: frontends map size (Service address:port pairs; default 65536)", uintFlag(&cfg.BPF.Sizes.Frontends))
	fs.Func("bpf-backends-max", "datapath: backends map size (default 65536)", uintFlag(&cfg.BPF.Sizes.Backends))
	cfg.BPF.Sizes.Maglev = 1 << 22
	fs.Func("bpf-maglev-slots", "datapath: Maglev slots shared by all Services (default 4194304: 32 MiB of kernel memory, 8 bytes a slot; ~16k Services of up to 4 backends)", uintFlag(&cfg.BPF.Sizes.Maglev))
	fs.Func("bpf-ct-max", "datapath: conntrack entries, two per flow (default 262144)", uintFlag(&cfg.BPF.Sizes.Conntrack))
	fs.Func("bpf-affinity-max", "datapath: ClientIP session affinity entries (default 65536)", uintFlag(&cfg.BPF.Sizes.Affinity))
	fs.Func("maglev-table-size", "datapath: smallest Maglev table of a Service, rounded up to a prime (default 251)", uintFlag(&cfg.BPF.MaglevMinimum))
	fs.BoolVar(&cfg.BPF.SocketLB, "socket-lb", true, "datapath: socket-level load balancing for the processes under --cgroup-root (pods and host processes): cluster IPs, and the other Service addresses from inside the node, without per-packet NAT")
	fs.StringVar(&cfg.BPF.CgroupRoot, "cgroup-root", "/run/sluice/cgroupv2", "datapath: the cgroup v2 directory whose processes get socket-level load balancing; mounted there if it is not one (the hierarchy's root)")
	cfg.BPF.SNATPorts = bpf.PortRange{First: 61000, Last: 65535}
	fs.Func("snat-port-range", "datapath: source ports of external flows SNATed to endpoints on other nodes (default 61000-65535, outside Linux's ephemeral ports; reserved in net.ipv4.ip_local_reserved_ports); \"off\": no SNAT", portRangeFlag(&cfg.BPF.SNATPorts, true))
	cfg.BPF.NodePorts = bpf.PortRange{First: 30000, Last: 32767}
	fs.Func("node-port-range", "datapath: the node ports served, as the API server's --service-node-port-range (default 30000-32767; reserved in net.ipv4.ip_local_reserved_ports); nodePorts outside it are ignored and reported", portRangeFlag(&cfg.BPF.NodePorts, false))
	fs.StringVar(&lbMode, "lb-mode", "snat", "datapath: how external traffic reaches endpoints on other nodes: snat (through this node both ways) or dsr (tunnelled to the endpoint's node, which answers the client directly); a Service's sluice.dev/forwarding-mode annotation overrides it")
	fs.StringVar(&algorithm, "lb-algorithm", "maglev", "datapath: backend selection for new flows: maglev or random")
	fs.DurationVar(&cfg.BPF.GCInterval, "conntrack-gc-interval", 30*time.Second, "datapath: how often expired conntrack entries are deleted")
	fs.Func("external-ip-cidrs", "where Services' spec.externalIPs may lie besides the IPPools, comma-separated CIDRs (others are ignored: CVE-2020-8554)", func(v string) error {
		cfg.ExternalIPCIDRs = nil
		for _, c := range strings.Split(v, ",") {
			if c = strings.TrimSpace(c); c == "" {
				continue
			}
			p, err := netip.ParsePrefix(c)
			if err != nil {
				return fmt.Errorf("%q is not a CIDR", c)
			}
			if p != p.Masked() {
				return fmt.Errorf("%q has host bits set (did you mean %s?)", c, p.Masked())
			}
			cfg.ExternalIPCIDRs = append(cfg.ExternalIPCIDRs, p)
		}
		return nil
	})
	fs.IntVar(&cfg.L2.Port, "l2-heartbeat-port", l2announce.DefaultPort, "L2 announcements: the UDP port agents exchange heartbeats on (open it between nodes)")
	fs.DurationVar(&cfg.L2.Interval, "l2-heartbeat-interval", l2announce.DefaultInterval, "L2 announcements: how often an agent sends each peer a heartbeat")
	fs.DurationVar(&cfg.L2.Timeout, "l2-heartbeat-timeout", l2announce.DefaultTimeout, "L2 announcements: silence after which a node is dead and its addresses move (failover takes about this long)")
	fs.BoolVar(&cfg.IPAMController, "ipam-controller", true, "Kubernetes mode: run the leader-elected LB-IPAM controller that gives LoadBalancer Services their addresses (one agent leads)")
	fs.BoolVar(&ipamOnly, "ipam-only", false, "Kubernetes mode: run only the LB-IPAM controller (a Deployment of its own), no datapath, no announcements")
	fs.BoolVar(&cfg.RequireLBClass, "require-lb-class", false, "serve only LoadBalancer Services whose spec.loadBalancerClass is --lb-class; by default Services without a class are served too")
	fs.StringVar(&cfg.LBClass, "lb-class", model.LoadBalancerClass, "the spec.loadBalancerClass served (besides none): set it to MetalLB's --lb-class to take such Services over without recreating them")
	fs.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	fs.BoolVar(&showVersion, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sluice-agent: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if showVersion {
		fmt.Fprintln(os.Stdout, "sluice-agent", version.String())
		return 0
	}
	log, err := newLogger(stderr, logLevel, logFormat)
	if err != nil {
		fmt.Fprintln(stderr, "sluice-agent:", err)
		return 2
	}
	if devices != "" {
		cfg.Devices = strings.Split(devices, ",")
	}
	if podDevices != "" {
		cfg.PodDevices = strings.Split(podDevices, ",")
	}
	switch lbMode {
	case "snat":
	case "dsr":
		cfg.BPF.DSR = true
	default:
		fmt.Fprintf(stderr, "sluice-agent: --lb-mode: %q is not snat or dsr\n", lbMode)
		return 2
	}
	switch algorithm {
	case "maglev":
		cfg.BPF.Algorithm = lb.AlgorithmMaglev
	case "random":
		cfg.BPF.Algorithm = lb.AlgorithmRandom
	default:
		fmt.Fprintf(stderr, "sluice-agent: --lb-algorithm: %q is not maglev or random\n", algorithm)
		return 2
	}

	src, err := newSource(&cfg, log)
	if err != nil {
		log.Error("cannot start", "error", err)
		return 1
	}
	if ipamOnly {
		return runIPAMOnly(cfg, log)
	}
	a, err := agent.New(cfg, log, src)
	if err != nil {
		log.Error("cannot start", "error", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	metricsAddr, healthAddr := a.Addrs()
	log.Info("starting", "version", version.Version, "node", cfg.NodeName, "mode", cfg.Mode(),
		"config", cfg.ConfigPath, "stateDir", cfg.StateDir, "metrics", addrString(metricsAddr), "health", addrString(healthAddr))
	if err := a.Run(ctx); err != nil {
		log.Error("stopped", "error", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

func newSource(cfg *agent.Config, log *slog.Logger) (source.Source, error) {
	if cfg.ConfigPath != "" {
		if cfg.Kubeconfig != "" {
			return nil, errors.New("--config and --kubeconfig exclude each other: standalone mode reads no API")
		}
		return source.NewFile(cfg.ConfigPath), nil
	}
	var rc *rest.Config
	var err error
	if cfg.Kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
		if err != nil {
			err = fmt.Errorf("%w (outside a cluster, pass --kubeconfig, or --config for standalone mode)", err)
		}
	}
	if err != nil {
		return nil, err
	}
	cfg.Rest = rc
	return &source.Kube{Config: rc, Namespace: cfg.Namespace, Log: log.With("component", "source")}, nil
}

// runIPAMOnly runs the LB-IPAM controller alone until SIGTERM or SIGINT.
func runIPAMOnly(cfg agent.Config, log *slog.Logger) int {
	if cfg.Mode() != "kubernetes" {
		log.Error("cannot start", "error", "--ipam-only needs Kubernetes mode: standalone agents allocate for themselves")
		return 1
	}
	ctl, err := agent.NewIPAMController(cfg, log, true)
	if err != nil {
		log.Error("cannot start", "error", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log.Info("starting the LB-IPAM controller alone", "version", version.Version, "lease", cfg.Namespace+"/sluice-ipam")
	if err := ctl.Start(ctx); err != nil {
		log.Error("stopped", "error", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %q is not debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: %q is not text or json", format)
}

// uintFlag parses a positive 32-bit number into p.
func uintFlag(p *uint32) func(string) error {
	return func(s string) error {
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil || n == 0 {
			return fmt.Errorf("%q is not a positive 32-bit number", s)
		}
		*p = uint32(n)
		return nil
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func addrString(a fmt.Stringer) string {
	if a == nil {
		return "off"
	}
	return a.String()
}

// portRangeFlag parses FIRST-LAST into r; with off, "off" is the empty range.
func portRangeFlag(r *bpf.PortRange, off bool) func(string) error {
	return func(v string) error {
		if off && v == "off" {
			*r = bpf.PortRange{}
			return nil
		}
		var p bpf.PortRange
		if n, err := fmt.Sscanf(v, "%d-%d", &p.First, &p.Last); err != nil || n != 2 || p.First == 0 || p.Last < p.First || p.String() != v {
			if off {
				return fmt.Errorf("%q is not a port range FIRST-LAST (1-65535) or off", v)
			}
			return fmt.Errorf("%q is not a port range FIRST-LAST (1-65535)", v)
		}
		*r = p
		return nil
	}
}
